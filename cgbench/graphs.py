"""A method's training step as two CUDA graphs (the speed setting ``cuda_graphs``).

At batch 1 and 128 px a step is bound by kernel launches, not arithmetic: the GPU waits for the
host to issue hundreds of small kernels. A CUDA graph records a step's kernels once and replays
them with one launch. A method whose step is graph-safe (:data:`cgbench.speed.GRAPH_SAFE_STEP`)
runs its ``train_step`` as ``generator_step(x, y)``, ``query_pools(fakes)`` and
``discriminator_step(x, y, pooled)``. :class:`CapturedSteps` puts a replay in place of each of
the two steps on the method (``train_step``, the method's own, stays as it is):

* the generator step copies the batch into the static inputs ``x`` and ``y`` the graphs read, and
  each optimiser group's learning rate (a float, which the training loop sets every iteration)
  into the device tensor the captured Adam reads; replays the generator graph (forward, losses,
  backward, Adam, as the method's maths says); and returns a copy of its loss terms and clones of
  its fakes: the pools keep what they are given, and the next replay overwrites the graph's
  outputs. The pools' random choice stays on the host, between the two steps, as in the eager step;
* the discriminator step copies the batch and the pooled fakes into its static inputs, replays
  the discriminator graph and returns a copy of its loss terms.

Capture happens on the first step, so a resumed run loads its checkpoint first. Before capture
the eager steps run a few times on a side stream (cudnn's autotuning, the optimisers' lazy state
and autograd's first-call set-up must not happen under capture), and every parameter, buffer and
optimiser state is then put back in place (:func:`warm_up_exactly`): the run trains as if the
warm-up had not happened, with the very tensors the graphs were captured with. Adam is built
``capturable`` (its step count on the device); the gradients are None when capture starts, so the
captured backward writes them rather than adding to them; the ``set_requires_grad`` toggles inside
the steps act at capture. A checkpoint loaded later is copied into these same tensors
(:func:`cgbench.methods.base.load_optimizer_state`), so the graphs go on from the loaded state.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

WARM_UP_STEPS = 3  # torch's whole-network capture example warms up for 3 iterations


def warm_up_exactly(method, generator_step, discriminator_step, x: torch.Tensor, y: torch.Tensor,
                    steps: int = WARM_UP_STEPS) -> None:
    """Run ``steps`` times ``generator_step`` and ``discriminator_step`` (the method's eager steps)
    on (x, y), then put every parameter, buffer and optimiser state of ``method`` back as it was,
    in place (the same tensors). Each discriminator step judges its generator step's own fakes, so
    the pools are never queried. Optimiser state the warm-up created is zeroed, which is Adam's
    fresh state (zero moments, step 0)."""
    saved = _snapshot(method)
    for _ in range(steps):
        _, fakes = generator_step(x, y)
        discriminator_step(x, y, fakes)
    _restore(method, saved)


def _snapshot(method) -> dict[str, Any]:
    with torch.no_grad():
        networks = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in method.networks.items()}
        optimizers = {name: {p: {k: v.clone() for k, v in state.items() if torch.is_tensor(v)}
                             for p, state in opt.state.items()} for name, opt in method.optimizers.items()}
    return {"networks": networks, "optimizers": optimizers}


def _restore(method, saved: dict[str, Any]) -> None:
    with torch.no_grad():
        for name, net in method.networks.items():
            for key, value in net.state_dict().items():  # views of the parameters and buffers
                value.copy_(saved["networks"][name][key])
        for name, opt in method.optimizers.items():
            before = saved["optimizers"][name]
            for p, state in opt.state.items():
                for key, value in state.items():
                    if not torch.is_tensor(value):
                        continue
                    if key in before.get(p, {}):
                        value.copy_(before[p][key])
                    else:
                        value.zero_()


class CapturedSteps:
    """The method's generator and discriminator steps as CUDA graph replays (see the module's
    docstring); put in place by :func:`cgbench.speed.accelerate` when ``cuda_graphs`` is on."""

    def __init__(self, method):
        self.method = method
        self.eager = (method.generator_step, method.discriminator_step)
        self.x: torch.Tensor | None = None  # the static inputs, allocated at capture
        self.y: torch.Tensor | None = None

    def install(self) -> None:
        self.method.generator_step = self.generator_step
        self.method.discriminator_step = self.discriminator_step

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                         dict[str, torch.Tensor]]:
        self._feed(x, y)
        self.generator.replay()
        return _copied(self.generator_terms), {name: fake.clone() for name, fake in self.fakes.items()}

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor,
                           pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._feed(x, y)
        for name, image in pooled.items():
            self.pooled[name].copy_(image)
        self.discriminator.replay()
        return _copied(self.discriminator_terms)

    def _feed(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The batch and the learning rates into the graphs' static inputs (captured first, once)."""
        if self.x is None or x.shape != self.x.shape or y.shape != self.y.shape:
            self.capture(x, y)
        self.x.copy_(x)
        self.y.copy_(y)
        for rate, group in zip(self.learning_rates, self._groups()):
            rate.fill_(group["lr"])

    def capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Warm up exactly on a side stream, then capture the generator and the discriminator step
        (on the method's device, whichever device is current: a sweep's child may run on cuda:1)."""
        (generator_step, discriminator_step), device = self.eager, self.method.device
        with torch.cuda.device(device):
            self.x, self.y = x.detach().clone(), y.detach().clone()
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable=True.*")  # the warm-up runs Adam uncaptured
                warm_up_exactly(self.method, generator_step, discriminator_step, self.x, self.y)
            torch.cuda.current_stream(device).wait_stream(side)
            for net in self.method.networks.values():
                for p in net.parameters():
                    p.grad = None  # so the captured backward allocates the gradients in the graph's pool
            with self._learning_rates_as_tensors():
                self.generator, self.discriminator = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.generator, stream=side):
                    terms, self.fakes = generator_step(self.x, self.y)
                self.generator_terms = _detached(terms)  # the graph's outputs, rewritten by every replay
                self.pooled = {name: torch.empty_like(fake) for name, fake in self.fakes.items()}
                with torch.cuda.graph(self.discriminator, stream=side):
                    terms = discriminator_step(self.x, self.y, self.pooled)
                self.discriminator_terms = _detached(terms)

    def _groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.method.optimizers.values() for group in opt.param_groups]

    @contextlib.contextmanager
    def _learning_rates_as_tensors(self):
        """While capturing, each group's learning rate is a device tensor, which the captured Adam
        reads on every replay (a float would be frozen into the graph); afterwards the floats the
        training loop sets (and checkpoints save) are back, and each step copies them in."""
        groups = self._groups()
        floats = [group["lr"] for group in groups]
        self.learning_rates = [torch.tensor(float(lr), dtype=torch.float32, device=self.method.device)
                               for lr in floats]
        for group, rate in zip(groups, self.learning_rates):
            group["lr"] = rate
        try:
            yield
        finally:
            for group, lr in zip(groups, floats):
                group["lr"] = lr


def _detached(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {term: value.detach() for term, value in terms.items()}


def _copied(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loss terms, copied out of the graph's outputs (one kernel for all of them)."""
    return dict(zip(terms, torch.stack(list(terms.values())).unbind())) if terms else {}
