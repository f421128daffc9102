"""Several processes training one run with DistributedDataParallel.

Two ways in, one process group:

* ``cgbench run --nproc N`` on one machine: :func:`launch` starts N local processes (spawned,
  not forked) and sets in each the variables torchrun would set (``MASTER_ADDR``,
  ``MASTER_PORT``, ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``).
* ``torchrun --nproc-per-node N [--nnodes ...] -m cgbench run ...``: torchrun sets them.

Either way the trainer calls :func:`process_group`, which joins the group described by the
environment (``init_method="env://"``): NCCL on CUDA, gloo on CPU. Rank 0 alone writes to MLflow;
the trainer (:mod:`cgbench.training`) uses the small collectives below to share what it must.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

#: Seconds the launcher waits for the other processes once one of them failed, before it stops
#: them (they may be blocked in a collective that will never complete).
FAILURE_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Context:
    """Where this process stands: a plain single process, or rank ``rank`` of a process group
    (``in_group``; a group may hold one process: ``cgbench run --nproc 1`` trains under DDP)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    in_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.in_group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, str(default)))
    except ValueError:
        return default


def env_world_size() -> int:
    """The world size the environment asks for (torchrun's or our launcher's ``WORLD_SIZE``)."""
    return _env_int("WORLD_SIZE", 1)


def env_describes_group() -> bool:
    """torchrun (or our launcher) set this process up as a rank of a group, of any size."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def requested_world_size() -> int:
    """The size of the group this process is in, or will join (:func:`from_env`)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(1, env_world_size())


def env_rank() -> int:
    """This process's rank as the environment gives it (0 outside a process group)."""
    return _env_int("RANK", 0)


def current() -> Context:
    """The context of the process group this process is in (single process when none)."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)
    return Context()


def backend_for(device_name: str) -> str:
    """NCCL when the run trains on CUDA, else gloo."""
    on_cuda = torch.cuda.is_available() and not device_name.startswith("cpu")
    return "nccl" if on_cuda and dist.is_nccl_available() else "gloo"


def from_env(device_name: str) -> Context:
    """Join the process group the environment describes (:func:`env_describes_group`), else stay
    single.

    On CUDA each process uses the GPU of its ``LOCAL_RANK``. Returns this process's context."""
    if dist.is_initialized() or not env_describes_group():
        return current()
    backend = backend_for(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    # torch.distributed.nn.functional binds the default group as the default argument of its
    # functions when it is first imported. DistributedDataParallel imports it (through
    # torch._dynamo); imported after the group exists, it would hold the group for the life of
    # the process, so destroy_process_group could never free it (see teardown).
    import torch.distributed.nn as _binds_default_group  # noqa: F401  (as: keeps `torch` global here)

    dist.init_process_group(backend, init_method="env://")
    return current()


def teardown() -> None:
    """Destroy the process group and free it now, while the interpreter is whole.

    A process group owns native threads (gloo's worker threads and its TCP loop; on rank 0, the
    rendezvous store's server thread). They end only when the last reference to the group goes:
    the default-group registry (``destroy_process_group``) and every DistributedDataParallel
    wrapper, which networks in reference cycles keep until the cyclic garbage collector runs. A
    group not freed here was never freed: its threads ran on through interpreter shutdown and
    the C++ runtime's exit, and ``cgbench run --nproc 2`` intermittently aborted after finishing
    (``terminate called without an active exception``, status 134)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[Context]:
    """:func:`from_env` for the duration of a block; the group is destroyed at its end if this
    block created it (always, also after an error or an interrupt: the error's traceback is
    cleared of the block's finished frames first, since their locals, the DDP-wrapped networks,
    would keep the group alive; the error itself, its type, message and lines, is unchanged)."""
    owned = not dist.is_initialized() and env_describes_group()
    try:
        yield from_env(device_name)
    except BaseException as exc:
        if owned:
            traceback.clear_frames(exc.__traceback__)
        raise
    finally:
        if owned:
            teardown()


# --- collectives the trainer uses ----------------------------------------------------------


def comm_device(ctx: Context) -> torch.device:
    """Where collective tensors live: the process's GPU under NCCL, else the CPU."""
    if ctx.distributed and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast(ctx: Context, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects; tensors travel by pickling)."""
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(ctx: Context, obj: Any) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (None elsewhere)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(ctx: Context, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def mean(ctx: Context, values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over the ranks."""
    if not ctx.distributed:
        return values
    total = values.detach().float().to(comm_device(ctx)).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ctx.world_size


def any_rank(ctx: Context, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (agreeing on a stop request)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([int(flag)], device=comm_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


@contextlib.contextmanager
def rank_zero_first(ctx: Context) -> Iterator[None]:
    """Rank 0 runs the block before the others do (e.g. generating a dataset on first use)."""
    if not ctx.is_main:
        barrier(ctx)
    yield
    if ctx.is_main:
        barrier(ctx)


def weights_digest(networks: dict[str, torch.nn.Module]) -> str:
    """sha256 of every network's state (names and bytes), in a fixed order."""
    h = hashlib.sha256()
    for name in sorted(networks):
        for key, value in networks[name].state_dict().items():
            h.update(f"{name}.{key}".encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- wrapping a method's networks ------------------------------------------------------------


def _no_forward_buffer_sync() -> dict[str, bool]:
    """DistributedDataParallel's switch for "do not broadcast buffers before every forward"
    (the networks' norms keep no running statistics): ``forward_sync_buffers`` in the torch
    versions that deprecate ``broadcast_buffers``."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def wrap_networks(method, compile_mode: str = "off") -> None:
    """Point the attributes a method's step calls (``method.G``, ``method.D_X``, ...) at its
    networks wrapped in DistributedDataParallel when a process group is up (trainable networks
    only), then in ``torch.compile`` unless ``compile_mode`` is ``off``.

    ``method.networks`` keeps the plain modules: checkpoints hold their state dicts. A method
    whose step calls views of its networks rather than the networks themselves cannot be wrapped
    (``supports_ddp = False``) and is refused under DDP."""
    from cgbench.errors import ConfigError

    in_group = dist.is_available() and dist.is_initialized()
    refusal = f"method {method.name!r} cannot train under DistributedDataParallel; drop --nproc"
    if in_group and not method.supports_ddp:
        raise ConfigError(refusal)
    for name, net in method.networks.items():
        if getattr(method, name, None) is not net:
            if in_group:
                raise ConfigError(refusal)
            continue
        wrapped = net
        if in_group and any(p.requires_grad for p in net.parameters()):
            from torch.nn.parallel import DistributedDataParallel

            ids = [method.device.index] if method.device.type == "cuda" else None
            wrapped = DistributedDataParallel(net, device_ids=ids, **_no_forward_buffer_sync())
        if compile_mode != "off":
            wrapped = torch.compile(wrapped, mode=compile_mode)
        setattr(method, name, wrapped)


# --- the local launcher: cgbench run --nproc N ---------------------------------------------


def free_port() -> int:
    """A TCP port free on localhost now (the rendezvous of the local processes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank: int, nproc: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    """Entry point of a spawned process: the torchrun environment for ``rank``, then ``fn``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    fn(*args)


def launch(nproc: int, fn: Callable[..., Any], args: tuple = ()) -> int:
    """Run ``fn(*args)`` in ``nproc`` spawned local processes forming one process group; wait for
    all of them and return the exit status the command should have.

    ``fn`` must be picklable (a module-level function) and report its own errors (only rank 0
    prints). The status is the first non-zero exit status of a process, in the order they ended
    (a signal death reads as 128 + signal), else 0.

    Signals: a terminal's Ctrl-C reaches every process of the foreground group, so this process
    does not forward SIGINT (the children checkpoint and exit 130) and keeps waiting for them;
    SIGTERM, which reaches only this process, is forwarded to every child. When one process
    fails, the others get :data:`FAILURE_GRACE_SECONDS` to end (rank 0 may be writing a
    checkpoint), then are stopped: they may be blocked in a collective that will never finish.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [context.Process(target=_child, args=(rank, nproc, port, fn, args), name=f"cgbench-rank{rank}")
             for rank in range(nproc)]
    for p in procs:
        p.start()

    def forward_sigterm(signum, frame) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None),
                signal.SIGTERM: signal.signal(signal.SIGTERM, forward_sigterm)}
    try:
        return _wait(procs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_status(exitcode: int) -> int:
    return 128 - exitcode if exitcode < 0 else exitcode


def _wait(procs: list) -> int:
    from multiprocessing.connection import wait

    failures: list[int] = []
    failed_at: float | None = None
    seen: set[int] = set()
    while any(p.is_alive() for p in procs):
        wait([p.sentinel for p in procs if p.is_alive()], timeout=1.0)
        for i, p in enumerate(procs):
            if p.exitcode is not None and i not in seen:
                seen.add(i)
                if p.exitcode != 0:
                    failures.append(_exit_status(p.exitcode))
                    failed_at = failed_at if failed_at is not None else time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_SECONDS:
            _stop(procs)
    for i, p in enumerate(procs):
        p.join()
        if i not in seen and p.exitcode != 0:
            failures.append(_exit_status(p.exitcode))
    return failures[0] if failures else 0


def _stop(procs: list) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 10
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
