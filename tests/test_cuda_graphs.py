"""CUDA graphs of the training step (``cuda_graphs``): the split step computes what the step
computed before, the exact warm-up and the in-place checkpoint load it relies on, how the setting
resolves; and, on a CUDA device, that the captured step trains as the eager one and resumes."""

from __future__ import annotations

import io
import signal

import pytest
import torch
from mlflow import MlflowClient

from conftest import run_cli
from cgbench.bench.gpu import busy_seconds
from cgbench.config import resolve
from cgbench.errors import ConfigError, Interrupted
from cgbench.graphs import CapturedSteps, warm_up_exactly
from cgbench.methods import METHODS, get_method
from cgbench.methods.base import set_requires_grad
from cgbench.methods.cyclegan import ABLATIONS
from cgbench.methods.bigan import joint
from cgbench.speed import GRAPH_SAFE_STEP, accelerate, resolve_speed
from cgbench.training import train
from cgbench.training.loop import lr_factor

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device: CUDA graphs capture GPU kernels "
                                       "(scripts/gpu_check.sh runs these on a lent GPU)")
GRAPH_SAFE = [("cyclegan", a) for a in ABLATIONS] + [("simgan", "cyclegan"), ("feature-gan", "cyclegan"),
                                                      ("bigan", "cyclegan")]


def _method(config, device=CPU):
    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, device)
    accelerate(method)
    return method


def _batches(size: int, n: int, device=CPU, seed: int = 7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(1, 3, size, size, generator=g).to(device) * 2 - 1,
             torch.rand(1, 3, size, size, generator=g).to(device) * 2 - 1) for _ in range(n)]


def _train(method, batches, first: int = 0, total: int | None = None) -> dict[str, torch.Tensor]:
    """Steps on ``batches`` with the loop's learning-rate schedule (lr set as a float every step,
    decaying over the second half of ``total``); every step's loss terms, by step and term."""
    total = total or len(batches)
    losses = {}
    for i, (x, y) in enumerate(batches, first):
        _set_learning_rate(method, i, total)
        for term, value in method.train_step(x, y).items():
            losses[f"{i}/{term}"] = value.detach().float().cpu()
    return losses


def _set_learning_rate(method, iteration: int, total: int) -> None:
    """As the training loop does: a float in every param group, every iteration."""
    for opt in method.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = method.config.lr * lr_factor(iteration, total, 0.5)


def _weights(method) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().float().cpu().clone() for name, net in method.networks.items()
            for k, v in net.state_dict().items()}


def _optimiser_state(method) -> dict[str, torch.Tensor]:
    return {f"{name}.{i}.{k}": v.detach().float().cpu().clone() for name, opt in method.optimizers.items()
            for i, state in enumerate(opt.state.values()) for k, v in state.items()}


def _assert_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


# --- the step before the split, verbatim (dd33abd): the reference of the split step ------------


def _cyclegan_step_before(m, x, y):
    D_X, D_Y = m.D_X, m.D_Y
    set_requires_grad([D_X, D_Y], False)
    m.optimizers["G"].zero_grad(set_to_none=True)
    from_x, from_y = m.halves.backward_sum(lambda: m.loss_from_x(x), lambda: m.loss_from_y(y))
    m.optimizers["G"].step()
    loss = {**from_x.terms, **from_y.terms}
    if m.ablation.gan:
        set_requires_grad([D_X, D_Y], True)
        m.optimizers["D"].zero_grad(set_to_none=True)
        fake_y, fake_x = m.pools["fake_y"].query(from_x.fake), m.pools["fake_x"].query(from_y.fake)
        judged_y, judged_x = m.halves.backward_sum(lambda: m.judge(D_Y, y, fake_y), lambda: m.judge(D_X, x, fake_x))
        m.optimizers["D"].step()
        loss["D_Y"], loss["D_X"] = judged_y.loss, judged_x.loss
    else:
        loss["D_Y"] = loss["D_X"] = x.new_zeros(())
    return {term: loss[term].detach() for term in m.terms}


def _simgan_step_before(m, x, y):
    c = m.config
    G, F, D_X, D_Y = m.G, m.F, m.D_X, m.D_Y
    set_requires_grad([D_X, D_Y], False)
    with m.autocast():
        fake_y, fake_x = G(x), F(y)
        loss = {"G_gan": m.gan_loss(D_Y(fake_y), True), "F_gan": m.gan_loss(D_X(fake_x), True),
                "self_G": m.self_distance(x, fake_y), "self_F": m.self_distance(y, fake_x)}
    loss_G = loss["G_gan"] + loss["F_gan"] + c.lambda_self * (loss["self_G"] + loss["self_F"])
    m.optimizers["G"].zero_grad(set_to_none=True)
    loss_G.backward()
    m.optimizers["G"].step()
    set_requires_grad([D_X, D_Y], True)
    with m.autocast():
        loss["D_Y"] = m.discriminator_loss(D_Y, y, m.pools["fake_y"].query(fake_y))
        loss["D_X"] = m.discriminator_loss(D_X, x, m.pools["fake_x"].query(fake_x))
    m.optimizers["D"].zero_grad(set_to_none=True)
    (loss["D_Y"] + loss["D_X"]).backward()
    m.optimizers["D"].step()
    return {k: v.detach() for k, v in loss.items()}


def _bigan_step_before(m, x, y):
    G, E, D = m.G, m.E, m.D
    set_requires_grad([D], False)
    with m.autocast():
        generated, encoded = joint(x, G(x)), joint(E(y), y)
        loss = {"G_gan": m.gan_loss(D(generated), True), "E_gan": m.gan_loss(D(encoded), False)}
    m.optimizers["G"].zero_grad(set_to_none=True)
    (loss["G_gan"] + loss["E_gan"]).backward()
    m.optimizers["G"].step()
    set_requires_grad([D], True)
    real = m.pools["encoded"].query(encoded)
    fake = m.pools["generated"].query(generated)
    with m.autocast():
        loss["D"] = 0.5 * (m.gan_loss(D(real.detach()), True) + m.gan_loss(D(fake.detach()), False))
    m.optimizers["D"].zero_grad(set_to_none=True)
    loss["D"].backward()
    m.optimizers["D"].step()
    return {k: v.detach() for k, v in loss.items()}


STEP_BEFORE = {"cyclegan": _cyclegan_step_before, "simgan": _simgan_step_before, "bigan": _bigan_step_before}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-for-bit comparisons: one thread, no concurrent halves
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name, ablation", [("cyclegan", a) for a in ABLATIONS] + [("simgan", "cyclegan"),
                                                                                   ("bigan", "cyclegan")])
def test_the_split_step_computes_what_the_step_computed_before(name, ablation, one_thread):
    """G step, the pools' query, D step: the same losses, weights, optimiser state and pools, bit
    for bit, as the step before the split, over steps where the pools return stored fakes."""
    config = resolve("tiny", method=name, ablation=ablation, sets={"pool_size": 2, "threads": 1})
    split, before = _method(config), _method(config)
    batches = _batches(config.image_size, 6)
    got = _train(split, batches)
    want = {}
    for i, (x, y) in enumerate(batches):
        _set_learning_rate(before, i, len(batches))
        want.update({f"{i}/{k}": v.float() for k, v in STEP_BEFORE[name](before, x, y).items()})
    _assert_equal(got, want)
    _assert_equal(_weights(split), _weights(before))
    _assert_equal(_optimiser_state(split), _optimiser_state(before))
    for pool in split.pools:
        _assert_equal(split.pools[pool].state_dict(), before.pools[pool].state_dict())


@pytest.mark.parametrize("ablation, first_steps", [("cyclegan", 0), ("cyclegan", 2), ("cycle-only", 2)])
def test_the_warm_up_before_capture_leaves_training_as_it_was(ablation, first_steps, one_thread):
    """The warm-up that precedes a capture puts every weight and optimiser state back into the
    same tensors, fresh Adam state included: training goes on as if it had not happened."""
    config = resolve("tiny", ablation=ablation, sets={"threads": 1})
    warmed, untouched = _method(config), _method(config)
    batches = _batches(config.image_size, first_steps + 3)
    _train(warmed, batches[:first_steps]), _train(untouched, batches[:first_steps])
    held = [t for opt in warmed.optimizers.values() for s in opt.state.values() for t in s.values()]
    warm_up_exactly(warmed, warmed.generator_step, warmed.discriminator_step, *_batches(config.image_size, 1, seed=1)[0])
    assert all(any(t is u for opt in warmed.optimizers.values() for s in opt.state.values() for u in s.values())
               for t in held)
    _assert_equal(_weights(warmed), _weights(untouched))
    _assert_equal(_train(warmed, batches[first_steps:], first_steps), _train(untouched, batches[first_steps:], first_steps))
    _assert_equal(_weights(warmed), _weights(untouched))
    _assert_equal(_optimiser_state(warmed), _optimiser_state(untouched))


def _round_trip(state: dict) -> dict:
    """A state through torch.save and torch.load, as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_a_checkpoint_loads_into_the_optimisers_tensors_and_keeps_how_they_run(one_thread):
    """Loading copies into the state tensors an optimiser holds (a captured step updates those), and
    the speed settings of the loading process decide how Adam runs (here: not fused), whatever the
    checkpoint was written with; the run then goes on as the one it was saved from."""
    config = resolve("tiny", sets={"threads": 1})
    saved, batches = _method(config.replace(fused_adam="on")), _batches(config.image_size, 5)
    _train(saved, batches[:3])
    state = _round_trip(saved.state_dict())
    loading = _method(config.replace(fused_adam="off"))
    _train(loading, batches[:1])
    held = {id(t) for opt in loading.optimizers.values() for s in opt.state.values() for t in s.values()}
    loading.load_state_dict(state)
    assert held == {id(t) for opt in loading.optimizers.values() for s in opt.state.values() for t in s.values()}
    assert not any(g["fused"] for opt in loading.optimizers.values() for g in opt.param_groups)
    _assert_equal(_optimiser_state(loading), _optimiser_state(saved))

    resumed = _method(config.replace(fused_adam="on"))
    _train(resumed, batches[:1])
    resumed.load_state_dict(state)
    _assert_equal(_train(resumed, batches[3:], 3), _train(saved, batches[3:], 3))
    _assert_equal(_weights(resumed), _weights(saved))


def test_cuda_graphs_resolve_on_for_cuda_where_the_step_is_graph_safe():
    cuda = torch.device("cuda")  # resolving needs no device: channels_last off keeps it from probing one
    base = resolve("tiny", sets={"channels_last": "off"})
    for name, method in METHODS.items():
        graph_safe = GRAPH_SAFE_STEP in method.capabilities
        assert resolve_speed(base, cuda, method.capabilities).cuda_graphs == graph_safe, name
    assert {n for n, m in METHODS.items() if GRAPH_SAFE_STEP in m.capabilities} == {n for n, _ in GRAPH_SAFE}
    cyclegan = METHODS["cyclegan"].capabilities
    assert not resolve_speed(base.replace(cuda_graphs="off"), cuda, cyclegan).cuda_graphs
    assert not resolve_speed(base.replace(compile_mode="reduce-overhead"), cuda, cyclegan).cuda_graphs
    with pytest.raises(ConfigError, match="cuda_graphs=on captures the step that compile_mode=default compiles"):
        resolve_speed(base.replace(cuda_graphs="on", compile_mode="default"), cuda, cyclegan)
    assert not resolve_speed(base, CPU, cyclegan).cuda_graphs
    assert resolve_speed(base, CPU, cyclegan).tags()["speed.cuda_graphs"] == "false"
    with pytest.raises(ConfigError, match="cuda_graphs=on needs a CUDA device, and this run is on cpu"):
        resolve_speed(base.replace(cuda_graphs="on"), CPU, cyclegan)


def test_cuda_graphs_on_a_cpu_is_refused_in_one_line(synth_dir, tracking_uri):
    out = run_cli("run", "--data", str(synth_dir), "--preset", "tiny", "--set", "device=cpu", "--set",
                  "cuda_graphs=on", "--tracking-uri", tracking_uri, "--no-progress")
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "cuda_graphs=on needs a CUDA device" in out.stderr


def test_busy_seconds_count_overlapping_device_work_once():
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "ts": 0.0, "dur": 10.0}, {"ph": "X", "cat": "gpu_memcpy", "ts": 5.0, "dur": 10.0},
        {"ph": "X", "cat": "kernel", "ts": 20.0, "dur": 5.0}, {"ph": "X", "cat": "cpu_op", "ts": 0.0, "dur": 100.0},
        {"ph": "i", "cat": "kernel", "ts": 50.0},
    ]}
    seconds, events = busy_seconds(trace)
    assert events == 3 and seconds == pytest.approx(20e-6)


# --- on a CUDA device ----------------------------------------------------------------------------


def _assert_as_close_as_eager_runs(captured, eager, again, what: str) -> None:
    """``captured`` matches ``eager`` as closely as a second eager run ``again`` does (some GPU
    kernels, such as reflection padding's backward, add in a varying order), give or take fp32
    rounding where the eager runs agree exactly."""
    assert captured.keys() == eager.keys()
    for key, want in eager.items():
        noise = (again[key] - want).abs().max().item()
        diff = (captured[key] - want).abs().max().item()
        allowed = 10 * noise + 1e-5 * want.abs().max().item() + 1e-7
        assert diff <= allowed, f"{what} {key}: {diff:.3g} from the eager run, whose second run differs by {noise:.3g}"


@needs_cuda
@pytest.mark.parametrize("name, ablation", GRAPH_SAFE)
def test_the_captured_step_trains_as_the_eager_step(name, ablation):
    """50 steps (pools full, the learning rate decaying): per-step losses and the weights after."""
    config = resolve("tiny", method=name, ablation=ablation, sets={"device": "cuda"})
    cuda = torch.device("cuda")
    captured, eager, again = (_method(config.replace(cuda_graphs=v), cuda) for v in ("on", "off", "off"))
    assert captured.speed.cuda_graphs and isinstance(captured.generator_step.__self__, CapturedSteps)
    batches = _batches(config.image_size, 50, cuda)
    runs = [_train(m, batches) for m in (captured, eager, again)]
    _assert_as_close_as_eager_runs(*runs, "loss")
    _assert_as_close_as_eager_runs(*(_weights(m) for m in (captured, eager, again)), "weight")
    assert all(isinstance(g["lr"], float) for opt in captured.optimizers.values() for g in opt.param_groups)


@needs_cuda
def test_a_checkpoint_of_a_captured_step_resumes_as_the_run_goes_on():
    """Saved at step 10 with graphs on and loaded before the capture (a resumed run) or after it
    (into the captured tensors), the run continues as the one that was never stopped."""
    config = resolve("tiny", sets={"device": "cuda", "cuda_graphs": "on"})
    cuda, batches = torch.device("cuda"), _batches(config.image_size, 20, torch.device("cuda"))
    straight, again = _method(config, cuda), _method(config, cuda)
    ends = [_train(m, batches, total=20) for m in (straight, again)]
    stopped = _method(config, cuda)
    _train(stopped, batches[:10], total=20)
    state = _round_trip(stopped.state_dict())
    for captured_first in (False, True):
        resumed = _method(config, cuda)
        if captured_first:
            _train(resumed, batches[:3], total=20)
        resumed.load_state_dict(state)
        rest = _train(resumed, batches[10:], 10, total=20)
        _assert_as_close_as_eager_runs(rest, *({k: v for k, v in e.items() if int(k.split("/")[0]) >= 10} for e in ends),
                                       f"loss (loaded {'after' if captured_first else 'before'} capture)")
        _assert_as_close_as_eager_runs(_weights(resumed), _weights(straight), _weights(again), "weight")


@needs_cuda
def test_an_interrupted_run_with_cuda_graphs_resumes_to_the_uninterrupted_run(synth_dir, tracking_uri, monkeypatch):
    """The real loop, with graphs on: tagged, checkpointed, interrupted, resumed, and recording the
    losses of the run that was never interrupted."""
    config = resolve("tiny", data=str(synth_dir), iters=4, sets={"device": "cuda", "checkpoint_every": 2})
    quiet = dict(experiment="t", progress=False, echo=lambda *_: None)
    reference = train(config, tracking_uri=tracking_uri, **quiet)
    client = MlflowClient(tracking_uri)
    assert client.get_run(reference.run_id).data.tags["cgbench.speed.cuda_graphs"] == "true"
    cls, calls = get_method("cyclegan"), {"n": 0}
    step = cls.train_step

    def interrupt_third(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)
        return step(self, x, y)

    monkeypatch.setattr(cls, "train_step", interrupt_third)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(Interrupted) as info:
            train(config, tracking_uri=tracking_uri, **quiet)
    finally:
        signal.signal(signal.SIGINT, handler)
    monkeypatch.setattr(cls, "train_step", step)
    train(config, tracking_uri=tracking_uri, resume_run_id=info.value.run_id, **quiet)
    for term in cls.terms:
        history = lambda run_id: [(m.step, m.value) for m in client.get_metric_history(run_id, f"loss/{term}")]  # noqa: E731
        resumed, want = sorted(history(info.value.run_id)), sorted(history(reference.run_id))
        assert [s for s, _ in resumed] == [1, 2, 3, 4]
        assert [v for _, v in resumed] == pytest.approx([v for _, v in want], rel=1e-4, abs=1e-6), term
