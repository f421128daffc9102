"""How a training step runs fast: the speed settings, resolved per method and device, applied to
its networks, and the two-halves runner.

A method declares what its step can do (:attr:`cgbench.methods.base.Method.capabilities`: its
generator objective has two independent halves; its discriminators judge real and fake through
one shared loss); this layer decides, per method and device, which speed settings run, applies
them (:func:`accelerate`) and records only what ran (:meth:`Speed.tags`). The speed keys of
:class:`~cgbench.config.Config` change how a step is computed, never what it computes (a test
runs the fast and the plain step from one seed and compares their losses):

``parallel_halves``
    CycleGAN's objective splits into two halves that share no activation: everything that
    starts from x (G(x), D_Y(G(x)), F(G(x)), F(x)) and everything that starts from y. Each
    parameter's gradient is the sum of its two halves' gradients, so the halves may run their
    forward and backward passes at the same time, on half the CPU threads each. On a CPU with
    few cores that beats splitting every small convolution across all threads; on a GPU, and
    under DistributedDataParallel (which needs one backward per step), the halves run one
    after the other and share one backward.
``group_norm_kernel``
    instance norm computed by torch's group-norm kernel (the same statistics, one channel per
    group), which is 2.5-3.6x faster than its instance-norm kernel on CPU
    (:class:`cgbench.models.networks.InstanceNorm`).
``batched_discriminator``
    the discriminator judges the real and the fake images as one batch of two (instance norm
    keeps them independent): half the kernel launches of two passes.
``tap_decomposition``
    the networks' last layers (3 or 1 output channels), which oneDNN runs slowly, as one 1x1
    convolution per kernel tap and a fold (:class:`cgbench.models.networks.FewOutputConv2d`).
``channels_last``
    NHWC memory format for the networks' weights and activations. Used only where instance
    norm's backward pass is right in NHWC: on CPU, torch 2.14.1 returns wrong input gradients
    for an NHWC input with an NHWC upstream gradient (:func:`channels_last_is_exact` checks the
    device at start-up; ``on`` where it fails is an error).
``amp``
    bf16 autocast around every method's forward passes (each method marks them with
    ``with self.autocast():``; the losses are computed in fp32 by autocast's own rules; bf16
    needs no gradient scaler). Off unless asked for, on every device and for every method: the
    paper's numbers are fp32, and a table must not mix precisions. The precision that ran is
    recorded as the tag ``cgbench.precision``.
``fused_adam``
    torch's fused Adam kernel instead of the per-parameter loop.
``compile_mode``
    torch.compile of every network with that mode (``reduce-overhead`` brings CUDA graphs).
``cuda_graphs``
    the generator step and the discriminator step captured as two CUDA graphs and replayed
    (:class:`cgbench.graphs.CapturedSteps`): a step's kernels launched as two graphs. CUDA only,
    for a method that declares its step graph-safe, in one process, without torch.compile.
``cudnn_benchmark``
    cudnn's autotuner (CUDA only).

``auto`` picks what measured fastest with ``cgbench bench`` on the device kind (see
docs/speed.md#the-speed-settings), among what the method declared; the resolved values are recorded with
every run.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from cgbench.errors import ConfigError

SWITCH = ("auto", "on", "off")
AMP_MODES = ("auto", "bf16", "off")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Speed:
    parallel_halves: bool = False
    group_norm_kernel: bool = False
    batched_discriminator: bool = False
    tap_decomposition: bool = False
    channels_last: bool = False
    amp: str = "off"  # "bf16" or "off"
    fused_adam: bool = False
    compile_mode: str = "off"
    cudnn_benchmark: bool = False
    cuda_graphs: bool = False

    def tags(self) -> dict[str, str]:
        """What ran, as run tags (without the ``cgbench.`` prefix)."""
        return {**{f"speed.{k}": str(v).lower() for k, v in asdict(self).items()}, "precision": self.precision}

    @property
    def precision(self) -> str:
        """The precision of the forward passes: ``fp32`` or ``bf16``."""
        return "bf16" if self.amp == "bf16" else "fp32"

    def describe(self) -> str:
        on = [k if isinstance(v, bool) else f"{k}={v}" for k, v in asdict(self).items()
              if v is True or (isinstance(v, str) and v != "off")]
        return ", ".join(on) or "plain eager fp32"


#: The settings that make a step "plain": eager fp32, NCHW, per-parameter Adam, one backward.
PLAIN_SETTINGS = dict(parallel_halves="off", group_norm_kernel="off", batched_discriminator="off",
                      tap_decomposition="off", channels_last="off", amp="off", fused_adam="off",
                      compile_mode="off", cudnn_benchmark=False, cuda_graphs="off")


def validate_speed(config) -> None:
    for key in ("parallel_halves", "group_norm_kernel", "batched_discriminator", "tap_decomposition",
                "channels_last", "fused_adam", "cuda_graphs"):
        if getattr(config, key) not in SWITCH:
            raise ConfigError(f"{key} takes one of {', '.join(SWITCH)}, not {getattr(config, key)!r}")
    if config.amp not in AMP_MODES:
        raise ConfigError(f"amp takes one of {', '.join(AMP_MODES)}, not {config.amp!r}")
    if config.compile_mode not in COMPILE_MODES:
        raise ConfigError(f"compile_mode takes one of {', '.join(COMPILE_MODES)}, not {config.compile_mode!r}")


def _switch(value: str, auto: bool) -> bool:
    return auto if value == "auto" else value == "on"


_CHANNELS_LAST_EXACT: dict[str, bool] = {}


def channels_last_is_exact(device: torch.device) -> bool:
    """Whether instance norm's gradient in NHWC equals the NCHW one on ``device`` (a few ms, once)."""
    key = str(device)
    if key not in _CHANNELS_LAST_EXACT:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 12, 12, generator=g).to(device)
        upstream = torch.randn(1, 8, 12, 12, generator=g).to(device)
        grads = []
        for fmt in (torch.contiguous_format, torch.channels_last):
            xi = x.detach().contiguous(memory_format=fmt).requires_grad_()
            torch.nn.functional.instance_norm(xi).backward(upstream.contiguous(memory_format=fmt))
            grads.append(xi.grad.float().cpu())
        _CHANNELS_LAST_EXACT[key] = torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-4)
    return _CHANNELS_LAST_EXACT[key]


#: What a method may declare it can do (:attr:`cgbench.methods.base.Method.capabilities`).
INDEPENDENT_HALVES = "independent_halves"  # its generator objective splits into two halves sharing no activation
SHARED_DISCRIMINATOR_LOSS = "shared_discriminator_loss"  # its Ds judge real and fake through one loss function
# Its train_step is generator_step, query_pools, discriminator_step (cgbench.methods.base.Method), and
# the two steps can be captured as CUDA graphs: fixed shapes, no random draws, no host syncs, no
# tensor created outside the step that a later step needs (cgbench.graphs).
GRAPH_SAFE_STEP = "graph_safe_step"
CAPABILITIES = (INDEPENDENT_HALVES, SHARED_DISCRIMINATOR_LOSS, GRAPH_SAFE_STEP)


def in_process_group() -> bool:
    """This process trains as a rank of a DDP group (of any size, one included)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def resolve_speed(config, device: torch.device, capabilities: frozenset[str] = frozenset()) -> Speed:
    """The settings a method with ``capabilities`` uses on ``device``: each ``auto`` by device kind
    (by measurement), and a setting the method cannot use is off whatever the config says."""
    cuda = device.type == "cuda"
    single = not in_process_group()
    halves = INDEPENDENT_HALVES in capabilities and not cuda and single
    return Speed(
        # CPU: concurrent halves were 1.4-1.7x faster at the cpu preset and 1.1x at paper. On a GPU
        # and under DDP (one backward per step) the halves run one after the other.
        parallel_halves=halves and _switch(config.parallel_halves, torch.get_num_threads() >= 2),
        # CPU: measured 2.5-3.6x faster per norm; GPU: not measured, so torch's instance norm.
        group_norm_kernel=_switch(config.group_norm_kernel, not cuda),
        batched_discriminator=SHARED_DISCRIMINATOR_LOSS in capabilities and _switch(config.batched_discriminator, True),
        # CPU: 1.8x (generator) and 4x (PatchGAN) faster fwd+bwd at 128 px; GPU: not measured.
        tap_decomposition=_switch(config.tap_decomposition, not cuda),
        channels_last=_channels_last(config.channels_last, device),
        amp="bf16" if config.amp == "bf16" else "off",  # auto is fp32: the paper's precision, on every device
        fused_adam=_switch(config.fused_adam, True),
        compile_mode=config.compile_mode,
        cudnn_benchmark=bool(config.cudnn_benchmark) and cuda,
        cuda_graphs=_cuda_graphs(config, device, GRAPH_SAFE_STEP in capabilities and single),
    )


def _cuda_graphs(config, device: torch.device, graph_safe: bool) -> bool:
    """On (auto) for CUDA where the method's step is graph-safe, in one process (DDP's all-reduce is
    not captured), unless torch.compile already compiles the networks. Not measured yet: the
    figures of ``scripts/gpu_check.sh`` are to set this (docs/speed.md)."""
    value = config.cuda_graphs
    if value == "on" and device.type != "cuda":
        raise ConfigError(f"cuda_graphs=on needs a CUDA device, and this run is on {device.type}; "
                          "use cuda_graphs=auto or off")
    if value == "on" and config.compile_mode != "off":
        raise ConfigError(f"cuda_graphs=on captures the step that compile_mode={config.compile_mode} compiles; "
                          "choose one (cuda_graphs=off or compile_mode=off)")
    return value != "off" and device.type == "cuda" and graph_safe and config.compile_mode == "off"


def _channels_last(value: str, device: torch.device) -> bool:
    if value == "off":
        return False
    exact = channels_last_is_exact(device)
    if value == "on" and not exact:
        raise ConfigError(f"channels_last=on gives wrong instance-norm gradients on {device.type} with torch "
                          f"{torch.__version__}; use channels_last=off (or auto)")
    return exact and device.type == "cuda"  # CPU: NHWC is wrong there today; GPU: tensor cores want NHWC


@dataclass
class Half:
    """One half of an objective: the scalar ``loss`` it adds, the loss ``terms`` it records, and
    the image it generated (``fake``, detached), if any."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    fake: torch.Tensor | None = None


_worker: ThreadPoolExecutor | None = None
_worker_lock = threading.Lock()


def _shared_worker() -> ThreadPoolExecutor:
    """One background thread for the second half, shared by every method in the process."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = ThreadPoolExecutor(1, thread_name_prefix="cgbench-half")
        return _worker


class Halves:
    """Computes the two halves of an objective and backpropagates their sum.

    :meth:`backward_sum` means ``a, b = first(), second(); (a.loss + b.loss).backward()``. When
    ``concurrent``, each half runs its forward and backward pass at the same time as the other,
    on ``threads_each`` threads (half the threads there were at construction): the second half on
    a background thread, the first on the calling thread, which :meth:`pinned_threads` sets to
    ``threads_each`` for a whole training loop. The gradients add up the same. (Changing torch's
    thread count costs more than it saves when done every step: oneDNN re-creates its kernels
    for the new count.)
    """

    def __init__(self, concurrent: bool):
        self.concurrent = concurrent
        self.threads_each = max(1, torch.get_num_threads() // 2)

    @contextlib.contextmanager
    def pinned_threads(self):
        """While inside, the calling thread runs torch ops on ``threads_each`` threads (when concurrent)."""
        before = torch.get_num_threads()
        if self.concurrent:
            torch.set_num_threads(self.threads_each)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def backward_sum(self, first: Callable[[], Half], second: Callable[[], Half]) -> tuple[Half, Half]:
        if not self.concurrent:
            a, b = first(), second()
            (a.loss + b.loss).backward()
            return a, b

        def run(half: Callable[[], Half]) -> Half:
            result = half()
            result.loss.backward()
            return result

        def run_in_background(half: Callable[[], Half]) -> Half:
            if torch.get_num_threads() != self.threads_each:  # once per background thread and count
                torch.set_num_threads(self.threads_each)
            return run(half)

        pending = _shared_worker().submit(run_in_background, second)
        try:
            a = run(first)
        finally:
            b = pending.result()
        return a, b


# --- applying the settings to a method's networks ----------------------------------------------


def apply_kernels(networks, speed: Speed, device: torch.device) -> None:
    """The settings that swap kernels or layouts inside the networks (never their maths): the
    norm and last-layer kernels, the memory format, and cudnn's autotuner."""
    from cgbench.models.networks import FewOutputConv2d, InstanceNorm

    for net in networks:
        for module in net.modules():
            if isinstance(module, InstanceNorm):
                module.group_norm_kernel = speed.group_norm_kernel
            if isinstance(module, FewOutputConv2d):
                module.tap_decomposition = speed.tap_decomposition
        if speed.channels_last:
            net.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = speed.cudnn_benchmark


def accelerate(method) -> None:
    """Apply ``method.speed`` to the method's built networks: the kernels (:func:`apply_kernels`),
    then DistributedDataParallel when a process group is up and torch.compile
    (:func:`cgbench.distributed.wrap_networks`); with ``cuda_graphs`` the method's generator and
    discriminator steps become CUDA graph replays (:class:`cgbench.graphs.CapturedSteps`,
    captured on the first step)."""
    from cgbench.distributed import wrap_networks

    apply_kernels(method.networks.values(), method.speed, method.device)
    wrap_networks(method, method.speed.compile_mode)
    if method.speed.cuda_graphs:
        from cgbench.graphs import CapturedSteps

        CapturedSteps(method).install()
