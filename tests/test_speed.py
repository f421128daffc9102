"""The fast step computes what the plain step computes; the speed settings resolve and record as documented;
``cgbench bench`` measures and reports what it says."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow import MlflowClient

from conftest import run_cli
from cgbench.bench.floor import record_convolutions
from cgbench.bench.step import step_flops
from cgbench.config import resolve
from cgbench.errors import ConfigError
from cgbench.methods import get_method
from cgbench.methods.cyclegan import ABLATIONS
from cgbench.speed import PLAIN_SETTINGS, accelerate, resolve_speed
from cgbench.timing import Spread
from cgbench.training import train

CPU = torch.device("cpu")
FAST = dict(parallel_halves="on", fused_adam="on")


def _method(config):
    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, CPU)
    accelerate(method)
    return method


def _batches(size: int, n: int, seed: int = 7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(1, 3, size, size, generator=g) * 2 - 1, torch.rand(1, 3, size, size, generator=g) * 2 - 1)
            for _ in range(n)]


def _losses(method, batches) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in method.train_step(x, y).items()} for x, y in batches]


def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def _grads(method) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": p.grad.clone() for name, net in method.networks.items()
            for key, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("ablation, upsample", [(a, "deconv") for a in ABLATIONS] + [("cyclegan", "resize")])
def test_fast_step_matches_plain_step(ablation, upsample):
    """Concurrent halves and fused Adam against eager fp32 with one backward, from one seed."""
    before = _threads(2)
    try:
        base = resolve("tiny", ablation=ablation, sets={"threads": 2, "ngf": 8, "ndf": 8, "upsample": upsample})
        fast, plain = _method(base.replace(**FAST)), _method(base.replace(**PLAIN_SETTINGS))
        assert fast.speed.parallel_halves and fast.speed.fused_adam
        assert not (plain.speed.parallel_halves or plain.speed.fused_adam)
        batches = _batches(base.image_size, 4)

        # The first step: the same losses and the same gradients, to float rounding.
        (got,), (want,) = _losses(fast, batches[:1]), _losses(plain, batches[:1])
        assert got.keys() == want.keys()
        for term in want:
            assert got[term] == pytest.approx(want[term], rel=1e-5, abs=1e-7), term
        grads_fast, grads_plain = _grads(fast), _grads(plain)
        assert grads_fast.keys() == grads_plain.keys() and grads_plain
        scale = max(g.abs().max().item() for g in grads_plain.values())
        for key, g in grads_plain.items():  # (biases before an instance norm have zero gradient, up to noise)
            torch.testing.assert_close(grads_fast[key], g, rtol=1e-3, atol=1e-5 * scale, msg=key)

        # Later steps stay close. Not closer: Adam's first steps move every weight by about lr whatever
        # the gradient's size, so rounding noise in near-zero gradients becomes a ±lr difference.
        for got, want in zip(_losses(fast, batches[1:]), _losses(plain, batches[1:])):
            for term in want:
                assert got[term] == pytest.approx(want[term], rel=3e-2, abs=1e-3), term
    finally:
        torch.set_num_threads(before)


def test_concurrent_halves_are_deterministic_and_restore_threads():
    """A seed fixes the fast path too (resume after a kill replays it), and the step leaves the thread count alone."""
    before = _threads(2)
    try:
        config = resolve("tiny", sets={"threads": 2, "parallel_halves": "on"})
        batches = _batches(config.image_size, 3)
        first, second = _losses(_method(config), batches), _losses(_method(config), batches)
        assert first == second
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_instance_norm_by_either_kernel_is_torchs_instance_norm():
    from cgbench.models.networks import InstanceNorm

    x = torch.randn(2, 16, 9, 7, dtype=torch.float64)
    upstream = torch.randn(2, 16, 9, 7, dtype=torch.float64)
    reference = torch.nn.InstanceNorm2d(16, affine=False, track_running_stats=False)
    by_group_norm = InstanceNorm(16)
    by_group_norm.group_norm_kernel = True
    results = []
    for module in (reference, InstanceNorm(16), by_group_norm):
        xi = x.clone().requires_grad_()
        out = module(xi)
        out.backward(upstream)
        results.append((out.detach(), xi.grad))
    for out, grad in results[1:]:
        torch.testing.assert_close(out, results[0][0])
        torch.testing.assert_close(grad, results[0][1])
    assert InstanceNorm(16).state_dict() == {}  # checkpoints do not depend on the kernel


def test_channels_last_is_refused_where_instance_norm_gradients_are_wrong():
    """torch 2.14.1 on CPU: instance norm's backward in NHWC returns wrong gradients, so NHWC stays off there."""
    x = torch.randn(1, 8, 12, 12)
    upstream = torch.randn(1, 8, 12, 12)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xi = x.detach().contiguous(memory_format=fmt).requires_grad_()
        torch.nn.functional.instance_norm(xi).backward(upstream.contiguous(memory_format=fmt))
        grads.append(xi.grad)
    if torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-4):
        pytest.skip("this torch computes NHWC instance norm gradients right on CPU")
    assert not resolve_speed(resolve("tiny"), CPU).channels_last
    with pytest.raises(ConfigError, match="channels_last=on gives wrong instance-norm gradients"):
        resolve_speed(resolve("tiny", sets={"channels_last": "on"}), CPU)


def test_bf16_autocast_trains_close_to_fp32():
    config = resolve("tiny", sets={"amp": "bf16"})
    fast, plain = _method(config), _method(config.replace(amp="off"))
    assert fast.speed.amp == "bf16"
    batches = _batches(config.image_size, 2)
    for got, want in zip(_losses(fast, batches), _losses(plain, batches)):
        for term in want:
            assert got[term] == pytest.approx(want[term], rel=5e-2, abs=1e-2), term


def test_compiled_step_matches_eager_step():
    """torch.compile (inductor) of the networks: the first step's losses and gradients as in eager.
    (Cycle alone: D is never called, so only G and F pay the minute of compilation.)"""
    config = resolve("tiny", ablation="cycle-only", sets={"compile_mode": "default"})
    compiled, eager = _method(config), _method(config.replace(compile_mode="off"))
    assert compiled.speed.compile_mode == "default" and type(compiled.G).__name__ == "OptimizedModule"
    batch = _batches(config.image_size, 1)
    (got,), (want,) = _losses(compiled, batch), _losses(eager, batch)
    for term in want:
        assert got[term] == pytest.approx(want[term], rel=1e-4, abs=1e-6), term
    scale = max(g.abs().max().item() for g in _grads(eager).values())
    for key, g in _grads(eager).items():
        torch.testing.assert_close(_grads(compiled)[key], g, rtol=1e-3, atol=1e-4 * scale, msg=key)


def test_auto_resolves_by_device_threads_and_what_the_method_declares():
    cyclegan = get_method("cyclegan").capabilities
    before = _threads(2)
    try:
        auto = resolve_speed(resolve("cpu"), CPU, cyclegan)
        assert auto.parallel_halves and auto.fused_adam and auto.group_norm_kernel and auto.batched_discriminator
        assert not auto.channels_last and auto.amp == "off" and auto.precision == "fp32"
        assert auto.compile_mode == "off" and not auto.cudnn_benchmark  # cudnn: CUDA only
        torch.set_num_threads(1)
        assert not resolve_speed(resolve("cpu"), CPU, cyclegan).parallel_halves  # nothing to split on one thread
        assert resolve_speed(resolve("cpu", sets=PLAIN_SETTINGS), CPU, cyclegan) == resolve_speed(
            resolve("cpu", sets={**PLAIN_SETTINGS, "cudnn_benchmark": True}), CPU, cyclegan)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["pix2pix", "simgan", "feature-gan", "bigan", "cogan"])
def test_a_setting_runs_only_where_the_method_declared_it(name):
    """Only CycleGAN's objective has independent halves; asking for them elsewhere changes nothing,
    and the thread count stays whole."""
    before = _threads(2)
    try:
        method = _method(resolve("tiny", method=name, sets={"parallel_halves": "on", "threads": 2}))
        assert not method.speed.parallel_halves and method.halves.threads_each == 1
        with method.halves.pinned_threads():
            assert torch.get_num_threads() == 2
        shared_d_loss = name in ("pix2pix", "simgan", "feature-gan")
        assert method.speed.batched_discriminator == shared_d_loss
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["cyclegan", "pix2pix", "simgan", "bigan", "cogan"])
def test_every_method_is_fp32_by_default_and_bf16_when_asked(name):
    """One precision per table: auto is fp32 for every method; bf16, when asked for, reaches the
    forward passes of every method, not only CycleGAN's."""
    assert _method(resolve("tiny", method=name)).speed.precision == "fp32"
    assert _method(resolve("tiny", method=name, sets={"amp": "auto"})).speed.precision == "fp32"
    method = _method(resolve("tiny", method=name, sets={"amp": "bf16"}))
    seen = []
    handles = [m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
               for net in method.networks.values() for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    x, y = _batches(32, 1)[0]
    method.train_step(x, y)
    for h in handles:
        h.remove()
    assert torch.bfloat16 in seen


@pytest.mark.parametrize("key, value", [("parallel_halves", "yes"), ("amp", "fp16"), ("compile_mode", "fast")])
def test_bad_speed_values_name_the_valid_ones(key, value):
    with pytest.raises(ConfigError, match=f"{key} takes one of"):
        resolve("tiny", sets={key: value})


def test_resolved_speed_is_recorded_with_the_run(synth_dir, tracking_uri):
    config = resolve("tiny", data=str(synth_dir), iters=2, sets={"fused_adam": "off"})
    result = train(config, tracking_uri=tracking_uri, experiment="t", progress=False, echo=lambda *_: None)
    run = MlflowClient(tracking_uri).get_run(result.run_id)
    assert run.data.tags["cgbench.speed.fused_adam"] == "false"
    assert run.data.tags["cgbench.speed.parallel_halves"] == "false"  # tiny runs on one thread
    assert run.data.tags["cgbench.speed.cuda_graphs"] == ("true" if torch.cuda.is_available() else "false")
    assert run.data.tags["cgbench.precision"] == "fp32"
    assert run.data.params["fused_adam"] == "off" and run.data.params["amp"] == "off"


def test_spread_percentiles():
    s = Spread.of([float(i) for i in range(11)])
    assert (s.median, s.p10, s.p90, s.n) == (5.0, 1.0, 9.0, 11)


def test_step_flops_counts_every_convolution():
    """The counted FLOPs of one step are at least those of the convolutions it must run."""
    config = resolve("tiny")
    method = _method(config)
    x, y = _batches(config.image_size, 1)[0]
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as forward_only, torch.no_grad():
        method.G(x), method.F(y)
    flops = step_flops(method, x, y)
    # G and F run twice each (translation and cycle), and their backward costs about twice the forward.
    assert flops > 4 * forward_only.get_total_flops()
    assert step_flops(method, x, y) == flops


def test_recorded_convolutions_are_all_the_step_computes():
    """The floor times every convolution of a step: the FLOPs of the recorded calls (forward and
    backward) are the step's FLOPs as torch counts them, at the plain and the fast path's kernels."""
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    config = resolve("tiny", sets={"ngf": 8, "ndf": 8})
    x, y = _batches(config.image_size, 1)[0]
    for settings in (PLAIN_SETTINGS, dict(parallel_halves="off", tap_decomposition="on")):
        method = _method(config.replace(**settings))
        calls = record_convolutions(method, x, y)
        assert any(c.backward for c in calls) and any(not c.backward for c in calls)
        recorded = 0
        for c, n in calls.items():
            geometry = (c.stride, c.padding, c.dilation, c.transposed, c.output_padding, c.groups)
            if c.backward:
                recorded += n * flop_registry[aten.convolution_backward](
                    c.output, c.input, c.weight, c.bias, *geometry, list(c.mask), out_val=(c.input, c.weight, c.bias))
            else:
                recorded += n * flop_registry[aten.convolution](c.input, c.weight, c.bias, *geometry, out_val=c.output)
        assert recorded == step_flops(method, x, y)


def test_bench_cli_reports_json_and_mlflow(synth_dir, tracking_uri, tmp_path):
    out = run_cli("bench", "--data", str(synth_dir), "--preset", "tiny", "--iters", "2", "--warmup", "1",
                  "--tracking-iters", "3", "--json", str(tmp_path / "bench.json"), "--log-mlflow",
                  "--tracking-uri", tracking_uri)
    assert out.returncode == 0, out.stderr
    assert "ratio" in out.stdout and "GFLOP/step" in out.stdout and "images/s" in out.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    r = report["presets"]["tiny"]
    assert r["fast"]["n"] == r["plain"]["n"] == 2
    assert r["ratio_of_medians"] == pytest.approx(r["plain"]["median"] / r["fast"]["median"])
    assert r["ratio"] == pytest.approx(r["ratio_of_medians"])  # 2 steps: one block pair
    assert set(r["breakdown"]) == {"data wait", "forward + backward", "optimizer", "image pool", "tracking"}
    floor = r["floor"]
    assert r["flops"] > 0 and r["matmul_flops_per_s"] > 0 and floor["distinct_convolutions"] > 0
    # the floor bounds both steps: the lower of the two paths' convolutions, capped at the fastest step
    assert 0 < r["floor_s"] <= min(floor["by_path"].values())
    assert r["floor_s"] == min(floor["by_path"].values()) or floor["capped"]
    assert 0 < r["floor_share"] <= 1 and 0 < r["floor_share_plain"] <= 1
    assert 0 < r["tracking"]["share"] < 1 and r["peak_rss_bytes"] > 0 and r["eval"]["images_per_s"] > 0
    if not torch.cuda.is_available():  # a CPU's JSON: what it always held, the graphs recorded as off
        assert r["speed"]["cuda_graphs"] is False and "gpu" not in r and "share" not in report
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("cgbench-bench").experiment_id],
                              "tags.`cgbench.method` = 'bench'")
    assert len(runs) == 1 and runs[0].data.metrics["bench/tiny/ratio"] == pytest.approx(r["ratio"])


def test_bench_share_measures_runs_stepping_side_by_side(synth_dir, tmp_path):
    """--share N: N processes, each timing its own steps; every member's rate and their sum."""
    out = run_cli("bench", "--data", str(synth_dir), "--preset", "tiny", "--share", "1", "--share", "2",
                  "--share-seconds", "1", "--json", str(tmp_path / "bench.json"))
    assert out.returncode == 0, out.stderr
    assert "2 runs sharing the device" in out.stdout and "member-steps/s" in out.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    share = report["share"]["tiny"]
    assert report["presets"] == {} and share["seconds"] == 1.0
    assert set(share["variants"]) == ({"graphs", "eager"} if torch.cuda.is_available() else {"eager"})
    for n in (1, 2):
        run = share["runs"][str(n)]
        for way in share["variants"]:
            rates = run[way]["per_member"]
            assert len(rates) == n and all(rate > 0 for rate in rates)
            assert run[way]["member_steps_per_s"] == pytest.approx(sum(rates))


def test_bench_bad_input_is_one_line(synth_dir):
    out = run_cli("bench", "--data", str(synth_dir), "--preset", "tiny", "--set", "amp=fp8")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "amp takes one of" in out.stderr


@pytest.mark.parametrize("in_channels, out_channels, kernel, padding", [(32, 3, 7, 0), (64, 1, 4, 1), (48, 3, 7, 3)])
def test_tap_decomposition_computes_the_plain_convolution(in_channels, out_channels, kernel, padding):
    """FewOutputConv2d with its taps and fold against torch's convolution: outputs and every gradient."""
    from cgbench.models.networks import FewOutputConv2d

    torch.manual_seed(0)
    fast = FewOutputConv2d(in_channels, out_channels, kernel, padding=padding)
    fast.tap_decomposition = True
    plain = torch.nn.Conv2d(in_channels, out_channels, kernel, padding=padding)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, in_channels, 21, 26)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [fast(xs[0]), plain(xs[1])]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    upstream = torch.randn_like(outs[1])
    for out in outs:
        out.backward(upstream)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-4)


def test_tap_decomposition_stays_off_below_32_inputs():
    from cgbench.models.networks import FewOutputConv2d

    conv = FewOutputConv2d(16, 3, 7)
    conv.tap_decomposition = True
    x = torch.randn(1, 16, 12, 12)
    assert torch.equal(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias))
