"""The compute floor of a training step: every distinct convolution the step runs (forward and
backward, as aten runs them), each timed alone at its best (memory format, thread count), weighted
by how often the step runs it. No step can beat it. A large matmul's throughput is kept beside it
as a reference figure only: convolutions can run faster than it."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch

from cgbench.timing import median_seconds, ms, seconds


def matmul_throughput(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 5,
                      sizes: tuple[int, ...] | None = None) -> float:
    """FLOP/s of square matmuls: the best, over a few sizes, of the median of ``repeats`` runs
    (a reference figure: the step's convolutions may run faster or slower than a large matmul)."""
    sizes = sizes or ((1024, 2048, 3072) if device.type == "cpu" else (4096, 8192))
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        best = max(best, 2 * n**3 / median_seconds(lambda: torch.mm(a, b, out=out), repeats, device=device))
    return best


@dataclass(frozen=True)
class Convolution:
    """One convolution kernel call of a step as aten runs it: the forward pass, or the backward
    pass with the gradients it computes (``mask``: input, weight, bias)."""

    backward: bool
    input: tuple[int, ...]
    weight: tuple[int, ...]
    output: tuple[int, ...]
    bias: tuple[int, ...] | None  # the forward's bias shape; the backward's bias_sizes
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool
    output_padding: tuple[int, ...]
    groups: int
    mask: tuple[bool, bool, bool]
    dtype: torch.dtype

    def run(self, tensors: dict[str, torch.Tensor]) -> None:
        geometry = (self.stride, self.padding, self.dilation, self.transposed, self.output_padding, self.groups)
        if self.backward:
            bias_sizes = list(self.bias) if self.bias is not None else None
            torch.ops.aten.convolution_backward(tensors["grad_output"], tensors["input"], tensors["weight"],
                                                bias_sizes, *geometry, list(self.mask))
        else:
            torch.ops.aten.convolution(tensors["input"], tensors["weight"], tensors.get("bias"), *geometry)


def record_convolutions(method, x: torch.Tensor, y: torch.Tensor) -> Counter[Convolution]:
    """Every convolution kernel call of one training step of ``method`` (forward and backward),
    counted by shape. (Torch's dispatch modes are per thread: record a step that runs on one.)"""
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    calls: Counter[Convolution] = Counter()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is aten.convolution.default:
                inp, weight, bias, *geometry = args
                bias = tuple(bias.shape) if bias is not None else None
                calls[_convolution(False, inp, weight, out.shape, bias, geometry, (False,) * 3)] += 1
            elif func is aten.convolution_backward.default:
                grad_output, inp, weight, bias_sizes, *geometry, mask = args
                bias = tuple(bias_sizes) if bias_sizes is not None else None
                calls[_convolution(True, inp, weight, grad_output.shape, bias, geometry, mask)] += 1
            return out

    with Recorder():
        method.train_step(x, y)
    return calls


def _convolution(backward, inp, weight, output, bias, geometry, mask) -> Convolution:
    stride, padding, dilation, transposed, output_padding, groups = geometry
    return Convolution(backward, tuple(inp.shape), tuple(weight.shape), tuple(output), bias, tuple(stride),
                       tuple(padding), tuple(dilation), bool(transposed), tuple(output_padding), int(groups),
                       tuple(bool(m) for m in mask), inp.dtype)


def convolution_seconds(conv: Convolution, device: torch.device, rounds: int = 3) -> float:
    """The least machine time ``conv`` takes alone: the best, over memory formats (NCHW, NHWC)
    and, on a CPU, over thread counts (all, half, one), of its fastest call, in seconds of the
    whole machine (a call on t of n threads leaves the rest free: it counts t/n of its time)."""
    threads = torch.get_num_threads()
    counts = sorted({threads, max(1, threads // 2), 1}) if device.type == "cpu" else [threads]
    calls = 1 if device.type == "cpu" else 10  # on a GPU, calls queue back to back as in a step
    g = torch.Generator().manual_seed(0)
    make = lambda shape: torch.randn(shape, generator=g).to(device, conv.dtype)  # noqa: E731
    base = {"input": make(conv.input), "weight": make(conv.weight), "grad_output": make(conv.output)}
    if conv.bias is not None and not conv.backward:
        base["bias"] = make(conv.bias)
    formats = [torch.contiguous_format] + ([torch.channels_last] if len(conv.input) == 4 else [])
    best = math.inf
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # cudnn's fastest algorithm for the shape
    try:
        for fmt in formats:
            tensors = {k: v.contiguous(memory_format=fmt) if v.dim() == 4 else v for k, v in base.items()}
            for n in counts:
                torch.set_num_threads(n)
                conv.run(tensors)  # oneDNN primitive creation, cudnn autotuning
                fastest = min(seconds(lambda: [conv.run(tensors) for _ in range(calls)], device)
                              for _ in range(rounds)) / calls
                best = min(best, fastest * n / threads)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.set_num_threads(threads)
    return best


def convolution_floor(calls: Counter[Convolution], device: torch.device,
                      cache: dict[Convolution, float] | None = None) -> float:
    """Seconds the step's convolutions need at least: each distinct call's least machine time
    (:func:`convolution_seconds`, shared through ``cache``) times how often the step makes it."""
    cache = {} if cache is None else cache
    for conv in calls:
        if conv not in cache:
            cache[conv] = convolution_seconds(conv, device)
    return sum(count * cache[conv] for conv, count in calls.items())


def compute_floor(fast_eager, plain, device: torch.device, x: torch.Tensor, y: torch.Tensor,
                  fastest_step: float, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The least time a step can take: its convolutions, each timed alone at its best
    (:func:`convolution_floor`), for the fast path and the plain one (they may run different
    kernels: the fast path decomposes the last layers, batches the discriminator, may use bf16);
    the floor is the lower of the two, so it bounds both. ``fast_eager``: the fast path built in
    eager mode on one thread (no compilation, no parallel halves), as its convolutions are
    recorded there (dispatch modes are per thread).

    Every convolution of a step runs at best as fast as it does alone, and a step does more than
    its convolutions, so no step can beat the floor. A measured step faster than the floor
    (``fastest_step``) means the machine was slower while the floor was measured than during
    that step: the floor is then capped at that step, marked ``capped``, and a warning printed."""
    calls = {"fast": record_convolutions(fast_eager, x, y), "plain": record_convolutions(plain, x, y)}
    cache: dict[Convolution, float] = {}
    by_path = {path: convolution_floor(c, device, cache) for path, c in calls.items()}
    floor_s = min(by_path.values())
    capped = floor_s > fastest_step
    if capped:
        echo(f"  warning: the convolutions timed alone ({ms(floor_s)}) were slower than the fastest step "
             f"({ms(fastest_step)}): the machine's speed changed while measuring; the floor is capped at that step")
        floor_s = fastest_step
    return {"seconds": floor_s, "by_path": by_path, "capped": capped, "distinct_convolutions": len(cache),
            "convolution_calls": {path: sum(c.values()) for path, c in calls.items()}}

