"""The paper's baselines (Tables 2 and 3): each trains with the suite's trainer, records exactly
the loss terms of its definition, resumes like CycleGAN, and is scored by ``fcn`` and ``seg``;
unit tests check each definition (SimGAN: self-regularisation, no cycle; pix2pix: pairs;
BiGAN: a joint discriminator on pairs; CoGAN: shared layers, latent search; feature-gan: VGG)."""

from __future__ import annotations

import math
import signal
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient

from cgbench.cli import main
from cgbench.config import resolve
from cgbench.data.sampler import PairedSampler, UnpairedSampler
from cgbench.errors import CgbenchError, ConfigError, Interrupted, NonFiniteLoss
from cgbench.evaluate import evaluate
from cgbench.fcn import train_fcn
from cgbench.methods import METHODS, get_method
from cgbench.methods.bigan import BiGAN
from cgbench.methods.cogan import CoGAN
from cgbench.methods.feature_gan import FeatureGAN
from cgbench.methods.pix2pix import Pix2Pix
from cgbench.methods.simgan import SimGAN
from cgbench.training import load_training_data, train

BASELINES = ("pix2pix", "simgan", "feature-gan", "bigan", "cogan")
SCORES = ("per_pixel_acc", "per_class_acc", "class_iou")
QUIET = dict(progress=False, echo=lambda *_: None)
CPU = torch.device("cpu")


def _method(cls, **sets):
    torch.manual_seed(0)
    return cls(resolve("tiny", sets=sets), CPU)


def _batch(n: int = 2, size: int = 32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _record_inputs(net: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


# --- every baseline through the trainer, the tracking and the evaluators -----------------------


@pytest.fixture(scope="module")
def store(synth_dir, tmp_path_factory):
    """One sqlite store holding a tiny FCN for the tiny SynthCity set (the fcn evaluator needs it)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('baselines')}/mlflow.db"
    fcn = train_fcn(resolve("tiny", data=str(synth_dir)), tracking_uri=uri, experiment="fcns", **QUIET)
    return SimpleNamespace(uri=uri, fcn_id=fcn.run_id)


def _history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_records_its_terms_and_is_scored_by_fcn_and_seg(name, synth_dir, store):
    config = resolve("tiny", data=str(synth_dir), method=name, iters=2)
    result = train(config, tracking_uri=store.uri, experiment="baselines", preset="tiny", **QUIET)
    client = MlflowClient(store.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    terms = get_method(name).terms
    assert {k for k in run.data.metrics if k.startswith("loss/")} == {f"loss/{t}" for t in terms}
    for term in terms:
        assert [s for s, _ in _history(client, result.run_id, f"loss/{term}")] == [1, 2], term
    tags = run.data.tags
    assert tags["cgbench.method"] == name == tags["cgbench.row"]
    assert tags.get("cgbench.feature_weights") == ("random" if name == "feature-gan" else None)

    report = evaluate(result.run_id, ["fcn", "seg"], tracking_uri=store.uri, **QUIET)
    assert set(report.results) == {"fcn", "seg"}
    metrics = client.get_run(result.run_id).data.metrics
    for direction in ("labels2photo", "photo2labels", "ground_truth"):
        for key in SCORES:
            assert 0.0 <= metrics[f"eval/{direction}/{key}"] <= 1.0, (direction, key)


def test_trained_baselines_fill_tables_2_and_3_in_the_papers_order(synth_dir, store):
    """Every method, trained and scored, is a row of both tables (reusing the runs above when present)."""
    from cgbench.report import build_report

    client = MlflowClient(store.uri)
    experiment = client.get_experiment_by_name("baselines")
    done = {r.data.tags["cgbench.row"] for r in client.search_runs([experiment.experiment_id])} if experiment else set()
    for name in ("cyclegan", *BASELINES):
        if name not in done:
            run = train(resolve("tiny", data=str(synth_dir), method=name, iters=2), tracking_uri=store.uri,
                        experiment="baselines", preset="tiny", **QUIET)
            evaluate(run.run_id, ["fcn", "seg"], tracking_uri=store.uri, **QUIET)
    report = build_report(tracking_uri=store.uri, experiment="baselines", tables=(2, 3), out_dir=None,
                          log_to_mlflow=False, figures=False)
    for table in report.tables:
        assert [r.name for r in table.rows] == [
            "CoGAN", "BiGAN/ALI", "SimGAN", "Feature loss + GAN", "CycleGAN", "pix2pix"]
        assert all(r.n == 1 for r in table.rows), [(r.name, r.n) for r in table.rows]
        feature = next(r for r in table.rows if r.key == "feature-gan")
        assert feature.random_features  # footnoted: VGG-16 from random weights
    assert "Feature loss + GAN" in report.markdown and "random" in report.markdown


@pytest.mark.parametrize("name", ["pix2pix", "bigan", "cogan"])
def test_interrupted_baseline_resumes_to_the_uninterrupted_run(name, synth_dir, tracking_uri, monkeypatch):
    """Paired batches, pair pools and CoGAN's latent draws all come back exactly after a resume."""
    config = resolve("tiny", data=str(synth_dir), method=name, iters=4, sets={"checkpoint_every": 2})
    cls = get_method(name)
    reference = train(config, tracking_uri=tracking_uri, experiment="t", **QUIET)

    step = cls.train_step
    calls = {"n": 0}

    def interrupt_third(self, x, y):  # Ctrl-C during the third step: honoured once it is done
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)
        return step(self, x, y)

    monkeypatch.setattr(cls, "train_step", interrupt_third)
    pytest_handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(Interrupted) as info:
            train(config, tracking_uri=tracking_uri, experiment="t", **QUIET)
    finally:  # a process that was asked to stop ignores further Ctrl-C; pytest goes on
        signal.signal(signal.SIGINT, pytest_handler)
    monkeypatch.setattr(cls, "train_step", step)
    client = MlflowClient(tracking_uri)
    run_id = info.value.run_id
    assert client.get_run(run_id).info.status == "KILLED"
    train(config, tracking_uri=tracking_uri, resume_run_id=run_id, **QUIET)
    assert client.get_run(run_id).info.status == "FINISHED"
    for term in cls.terms:
        resumed = _history(client, run_id, f"loss/{term}")
        assert [s for s, _ in resumed] == [1, 2, 3, 4]
        assert resumed == _history(client, reference.run_id, f"loss/{term}"), term


def test_non_finite_baseline_loss_fails_the_run(synth_dir, tracking_uri, monkeypatch):
    step = BiGAN.train_step
    monkeypatch.setattr(BiGAN, "train_step", lambda self, x, y: {**step(self, x, y), "D": torch.tensor(math.nan)})
    config = resolve("tiny", data=str(synth_dir), method="bigan", iters=2)
    with pytest.raises(NonFiniteLoss, match="loss term 'D' is nan at iteration 1"):
        train(config, tracking_uri=tracking_uri, experiment="t", **QUIET)
    client = MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("t").experiment_id])[0]
    assert run.info.status == "FAILED" and "at iteration 1" in run.data.tags["cgbench.failure"]


def test_list_methods_prints_every_method():
    out = CliRunner().invoke(main, ["run", "--list-methods"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["cyclegan", *BASELINES]
    assert all(len(line.split()) > 1 for line in lines[1:])  # each with its one-line description
    assert set(METHODS) == {"cyclegan", *BASELINES}


# --- SimGAN and Feature loss + GAN -------------------------------------------------------------


def test_simgan_has_self_regularisation_and_no_cycle_term():
    method = _method(SimGAN)
    assert {"self_G", "self_F"} <= set(SimGAN.terms)
    assert not any("cycle" in t or "idt" in t for t in SimGAN.terms)
    x, y = _batch()
    g_inputs, f_inputs = _record_inputs(method.G), _record_inputs(method.F)
    with torch.no_grad():
        expected_self_G = (x - method.G(x)).abs().mean()
        expected_self_F = (y - method.F(y)).abs().mean()
    g_inputs.clear(), f_inputs.clear()
    losses = method.train_step(x, y)
    assert set(losses) == set(SimGAN.terms) and all(float(v) > 0 for v in losses.values())
    assert torch.allclose(losses["self_G"], expected_self_G) and torch.allclose(losses["self_F"], expected_self_F)
    # No cycle: G only ever sees label maps and F only photos, never each other's outputs.
    assert g_inputs and all(torch.equal(i, x) for i in g_inputs)
    assert f_inputs and all(torch.equal(i, y) for i in f_inputs)


def _gradients_at_steps(method, x, y) -> dict[str, list[torch.Tensor]]:
    """Every parameter's gradient as each optimiser step sees it, during one train_step."""
    seen: dict[str, list[torch.Tensor]] = {}
    for name, optimizer in method.optimizers.items():
        step = optimizer.step

        def recorded(*a, _step=step, _name=name, _opt=optimizer, **k):
            seen[_name] = [p.grad.clone() for group in _opt.param_groups for p in group["params"]]
            return _step(*a, **k)
        optimizer.step = recorded
    method.train_step(x, y)
    return seen


def test_simgan_self_weight_enters_the_generator_objective_and_nothing_else():
    """λ_self adds exactly λ_self·∇‖x − G(x)‖₁ to G's gradient (and F's likewise); the
    discriminators' gradients do not depend on it."""
    x, y = _batch()
    without, with_ = (_gradients_at_steps(_method(SimGAN, lambda_self=w), x, y) for w in (0.0, 10.0))
    reference = _method(SimGAN, lambda_self=0.0)  # the same initial weights
    self_terms = (x - reference.G(x)).abs().mean() + (y - reference.F(y)).abs().mean()
    params = [p for group in reference.optimizers["G"].param_groups for p in group["params"]]
    expected = torch.autograd.grad(self_terms, params, allow_unused=True)
    scale = max(g.abs().max().item() for g in with_["G"])  # float32 sums: tolerance from the gradients' size
    for a, b, e in zip(without["G"], with_["G"], expected):
        torch.testing.assert_close(b - a, 10.0 * (e if e is not None else torch.zeros_like(a)), rtol=1e-3,
                                   atol=1e-4 * scale)
    assert any(not torch.equal(a, b) for a, b in zip(without["G"], with_["G"]))
    for a, b in zip(without["D"], with_["D"]):
        torch.testing.assert_close(a, b)


def test_feature_gan_uses_fixed_random_vgg_relu4_2_features_and_tags_them():
    method = _method(FeatureGAN)
    assert method.extra_tags() == {"norm": "instance", "feature_weights": "random"}
    phi = method.features
    assert len(phi.features) == 21 and isinstance(phi.features[-1], torch.nn.ReLU)  # ends at relu4_2
    assert phi.features[19].out_channels == 512 and not phi.training
    assert not any(p.requires_grad for p in phi.parameters())
    again = _method(FeatureGAN, seed=0).features  # fixed: the same seed gives the same network
    assert all(torch.equal(a, b) for a, b in zip(phi.parameters(), again.parameters()))
    x, y = _batch()
    with torch.no_grad():
        expected = (phi(x) - phi(method.G(x))).abs().mean()
    before = [p.clone() for p in phi.parameters()]
    losses = method.train_step(x, y)
    assert set(losses) == set(FeatureGAN.terms) and not any("cycle" in t for t in losses)
    assert torch.allclose(losses["self_G"], expected)
    assert all(torch.equal(a, b) for a, b in zip(before, phi.parameters()))  # φ never trains


def test_feature_gan_loads_a_vgg16_state_dict_file(tmp_path):
    from cgbench.models.vgg import vgg16_features

    torch.manual_seed(123)
    features = vgg16_features()  # torchvision's vgg16().features[:21], without the classifier
    path = tmp_path / "vgg16.pt"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)  # as in a vgg16 state dict
    method = _method(FeatureGAN, feature_weights=str(path))
    tag = method.extra_tags()["feature_weights"]
    assert tag.startswith("sha256:") and tag != "random"
    assert all(torch.equal(a, b) for a, b in zip(features.state_dict().values(),
                                                 method.features.features.state_dict().values()))

    with pytest.raises(CgbenchError, match="does not exist"):
        _method(FeatureGAN, feature_weights=str(tmp_path / "missing.pt")).extra_tags()
    bad = tmp_path / "bad.pt"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(CgbenchError, match="does not fit VGG-16"):
        _method(FeatureGAN, feature_weights=str(bad)).extra_tags()


def test_feature_gan_with_a_missing_weights_file_fails_before_the_run_is_recorded(synth_dir, tracking_uri):
    config = resolve("tiny", data=str(synth_dir), method="feature-gan", iters=1,
                     sets={"feature_weights": "/nonexistent/vgg16.pt"})
    with pytest.raises(CgbenchError, match="feature_weights file '/nonexistent/vgg16.pt' does not exist"):
        train(config, tracking_uri=tracking_uri, experiment="t", **QUIET)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("t")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


# --- pix2pix: pairs ----------------------------------------------------------------------------


def test_paired_sampler_gives_the_same_scene_crop_and_flip():
    n, load, crop = 6, 40, 32
    scenes = torch.randint(0, 256, (n, 3, load, load), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sampler = PairedSampler(scenes, scenes.clone(), crop, batch_size=2, seed=3)
    flips = set()
    for step in range(12):
        x, y = sampler.batch(step, CPU)
        assert torch.equal(x, y)  # same scene, same window, same flip
        x_index, y_index = sampler.indices(step)
        assert list(x_index) == list(y_index)
        for k, (i, top, left, flipped) in enumerate(sampler.windows(step)):
            window = scenes[i, :, top : top + crop, left : left + crop].float() / 127.5 - 1
            assert torch.allclose(x[k], window.flip(-1) if flipped else window)
            flips.add(flipped)
        assert torch.equal(sampler.batch(step, CPU)[0], x)  # a pure function of (seed, step)
    assert flips == {True, False}
    epoch = sorted(int(i) for s in range(3) for i in sampler.indices(s)[0])
    assert epoch == list(range(n))  # each scene once per epoch
    with pytest.raises(ConfigError, match="disjoint"):
        PairedSampler(scenes, scenes, crop, 2, 0, disjoint=True)


def test_pix2pix_is_trained_on_pairs_by_the_trainer(synth_dir, tracking_uri, monkeypatch):
    assert Pix2Pix.paired and not SimGAN.paired
    seen = []
    step = Pix2Pix.train_step
    monkeypatch.setattr(Pix2Pix, "train_step", lambda self, x, y: (seen.append((x, y)), step(self, x, y))[1])
    config = resolve("tiny", data=str(synth_dir), method="pix2pix", iters=3)
    train(config, tracking_uri=tracking_uri, experiment="t", **QUIET)
    data = load_training_data(config, echo=lambda *_: None)
    paired = PairedSampler(data.labels_rgb, data.photos, config.image_size, 1, config.seed, config.flip)
    for i, (x, y) in enumerate(seen):
        px, py = paired.batch(i, CPU)
        assert torch.equal(x, px) and torch.equal(y, py)
        index, top, left, flipped = paired.windows(i)[0]
        photo = data.photos[index, :, top : top + 32, left : left + 32]
        assert torch.equal(y[0], (photo.flip(-1) if flipped else photo).float() / 127.5 - 1)  # x's own photo
    unpaired = UnpairedSampler(data.labels_rgb, data.photos, config.image_size, 1, config.seed, config.flip)
    assert any(not torch.equal(seen[i][1], unpaired.batch(i, CPU)[1]) for i in range(3))


def test_pix2pix_discriminators_see_input_output_pairs_and_l1_to_the_target():
    method = _method(Pix2Pix)
    assert method.D_Y.model[0].in_channels == 6 and method.D_X.model[0].in_channels == 6
    x, y = _batch()
    seen_Y, seen_X = _record_inputs(method.D_Y), _record_inputs(method.D_X)
    method.train(True)
    losses = method.train_step(x, y)
    assert set(losses) == set(Pix2Pix.terms)
    assert all(s.shape[1] == 6 for s in seen_Y + seen_X)
    images = lambda seen: [image for batch in seen for image in batch]  # noqa: E731 (real and fake may share a batch)
    one_of = lambda image, batch: any(torch.equal(image, b) for b in batch)  # noqa: E731
    assert all(one_of(s[:3], x) for s in images(seen_Y))  # D_Y is conditioned on the label map
    assert all(one_of(s[:3], y) for s in images(seen_X))  # D_X on the photo
    assert any(one_of(s[3:], y) for s in images(seen_Y)) and any(one_of(s[3:], x) for s in images(seen_X))
    assert float(losses["G_L1"]) > 0 and float(losses["F_L1"]) > 0


def test_pix2pix_unet_is_sized_to_the_image_with_skips():
    from cgbench.models.unet import UnetGenerator, unet_depth

    assert (unet_depth(32), unet_depth(64), unet_depth(128), unet_depth(256)) == (5, 6, 7, 8)
    net = UnetGenerator(3, 3, 32, ngf=4)
    bottleneck = []
    innermost = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    innermost.register_forward_hook(lambda _m, _i, out: bottleneck.append(out.shape))
    out = net(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32) and bottleneck[0][-2:] == (1, 1)
    ups = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [u.in_channels for u in ups] == [32, 64, 32, 16, 8]  # innermost first; skip connections double the decoder's input
    assert sum(isinstance(m, torch.nn.Dropout) for m in UnetGenerator(3, 3, 256).modules()) == 3  # as unet_256


# --- BiGAN: one joint discriminator on pairs ---------------------------------------------------


def test_bigan_discriminator_sees_generator_and_encoder_pairs():
    method = _method(BiGAN, pool_size=0)
    assert method.D.model[0].in_channels == 6 and set(method.networks) == {"G", "E", "D"}
    x, y = _batch()
    with torch.no_grad():
        gx, ey = method.G(x), method.E(y)
    seen = _record_inputs(method.D)
    losses = method.train_step(x, y)
    assert set(losses) == {"G_gan", "E_gan", "D"}
    assert all(s.shape[1] == 6 for s in seen)
    # The generator/encoder step: D sees (x, G(x)) then (E(y), y).
    assert torch.equal(seen[0][:, :3], x) and torch.allclose(seen[0][:, 3:], gx)
    assert torch.allclose(seen[1][:, :3], ey) and torch.equal(seen[1][:, 3:], y)
    # The discriminator step judges the same two kinds of pairs.
    assert torch.allclose(seen[2], torch.cat([ey, y], 1)) and torch.allclose(seen[3], torch.cat([x, gx], 1))
    assert torch.allclose(method.photo_to_labels(y), method.E(y))


# --- CoGAN: coupled networks, translation by latent search -------------------------------------


def test_cogan_generators_share_early_layers_and_discriminators_late_layers():
    method = _method(CoGAN)
    gx, gy = dict(method.G_X.named_parameters()), dict(method.G_Y.named_parameters())
    shared = [k for k in gx if k.startswith("0.")]  # the trunk: the projection of z and the upsamplings
    assert shared and all(gx[k].data_ptr() == gy[k].data_ptr() for k in shared)
    heads = [k for k in gx if k.startswith("1.")]
    assert heads and all(gx[k].data_ptr() != gy[k].data_ptr() for k in heads)
    dx, dy = dict(method.D_X.named_parameters()), dict(method.D_Y.named_parameters())
    assert all(dx[k].data_ptr() != dy[k].data_ptr() for k in dx if k.startswith("0."))  # own first layer
    late = [k for k in dx if k.startswith("1.")]
    assert late and all(dx[k].data_ptr() == dy[k].data_ptr() for k in late)
    # Shared tensors are optimised once, with the gradients of both domains.
    assert sum(len(g["params"]) for g in method.optimizers["G"].param_groups) == len(list(method.G.parameters()))
    x, y = _batch()
    z = torch.randn(2, method.config.latent_dim)
    assert method.G_X(z[:, :, None, None]).shape == x.shape == method.G_Y(z[:, :, None, None]).shape
    trunk_before = [p.clone() for p in method.G.trunk.parameters()]
    losses = method.train_step(x, y)
    assert set(losses) == {"gen_X", "gen_Y", "D_X", "D_Y"}
    assert any(not torch.equal(a, b) for a, b in zip(trunk_before, method.G.trunk.parameters()))


def test_cogan_translates_by_a_seeded_latent_search_under_inference_mode():
    method = _method(CoGAN, cogan_search_steps=30, cogan_search_lr=0.1)
    method.train(False)
    x, _ = _batch()
    rng = torch.get_rng_state()
    with torch.inference_mode():
        out = method.labels_to_photo(x)
        again = method.labels_to_photo(x)
    assert torch.equal(out, again) and out.shape == x.shape  # deterministic
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert all(p.requires_grad for p in method.G.parameters())  # frozen only during the search

    def error(steps: int) -> float:
        m = _method(CoGAN, cogan_search_steps=steps, cogan_search_lr=0.1)
        z = m.find_codes(x, "X")
        with torch.no_grad():
            return float((m.G.render(z, "X") - x).pow(2).mean())

    assert error(30) < error(0)  # the search finds codes that reproduce the input better
    with torch.no_grad():
        assert method.photo_to_labels(x).shape == x.shape


def test_pix2pix_runs_as_its_authors_run_it():
    """Batch norm on the batch's own statistics, D updated before G, test-time dropout as noise (seeded).
    (At 128 px the U-Net has the 8·ngf-wide levels that carry dropout.)"""
    method = _method(Pix2Pix, image_size=128, load_size=143)
    norms = [m for net in method.networks.values() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert method.norm == "batch" and norms and not any(m.track_running_stats for m in norms)
    assert method.extra_tags()["norm"] == "batch"
    order = []
    for name, optimizer in method.optimizers.items():
        step = optimizer.step
        optimizer.step = lambda *a, _step=step, _name=name, **k: (order.append(_name), _step(*a, **k))[1]
    x, y = _batch(size=128)
    method.train_step(x, y)
    assert order == ["D", "G"]

    method.train(False)
    with torch.no_grad():
        first, second = method.labels_to_photo(x), method.labels_to_photo(x)
        again = _method(Pix2Pix, image_size=128, load_size=143)
        again.load_translators({k: v.state_dict() for k, v in method.networks.items()})
        again.train(False)
        replay = again.labels_to_photo(x)
        deterministic = method.G(x)  # eval mode: no dropout
    assert not torch.equal(first, second)  # dropout draws differ from call to call ...
    assert torch.equal(replay, first)  # ... from a seeded stream, so a score is reproducible
    assert not torch.equal(first, deterministic)
    assert not method.G.training  # the networks are left in evaluation mode


def test_norm_is_each_methods_own_unless_asked():
    assert _method(Pix2Pix, norm="instance").norm == "instance"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in _method(Pix2Pix, norm="instance").G.modules())
    assert _method(SimGAN).norm == "instance"
    with pytest.raises(ConfigError, match="builds instance norm only"):
        _method(SimGAN, norm="batch")
