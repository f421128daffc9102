"""FID, KID and FD-FCN: the Fréchet formula and KID's estimator against direct SciPy/NumPy
computations on known features, FD(real, real) = 0, FID and KID end to end on Inception weights
the test writes from a RANDOMLY INITIALISED InceptionV3 of torch-fidelity's architecture (their
numbers are meaningless; what is shown is that the named file is read and used, exactly as
torchmetrics uses it), the missing-file error through the CLI, and ``cgbench eval --metric fd-fcn``
into a run."""

from __future__ import annotations

import hashlib
import io
import json
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient
from scipy import linalg
from torch import nn

from conftest import assert_one_line_error, run_cli
from cgbench.cli import main
from cgbench.config import resolve
from cgbench.models.segmenter import FCN8s
from cgbench.scoring import Source, load_val_split, score, select_evaluators
from cgbench.plugins import EvalContext, Segmenter
from evaluators.frechet import features_distance, frechet_distance, gaussian_stats
from evaluators.inception import ENV, WEIGHTS_FILE, WEIGHTS_URL, _Given, kernel_inception_distance

QUIET = dict(progress=False, echo=lambda *_: None)
L2P = "eval/labels2photo"


# --- the Fréchet distance --------------------------------------------------------------------------------


def _scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula, straight: ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 sqrtm(Σ1 Σ2)), real part."""
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * linalg.sqrtm(sigma1 @ sigma2).real))


def _random_covariance(rng, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_of_known_gaussians_matches_scipy_sqrtm():
    # Diagonal covariances have the closed form ‖μ1 − μ2‖² + Σ (√a − √b)².
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(5 + 1 + 1 + 4, abs=1e-12)
    # General covariances that do not commute: against scipy's sqrtm of the product.
    rng = np.random.default_rng(0)
    for d in (2, 7, 30):
        s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(_scipy_frechet(m1, s1, m2, s2), rel=1e-9)
    # Features drawn from two known Gaussians: the fitted statistics, then the same formula.
    x = rng.multivariate_normal(np.zeros(4), _random_covariance(rng, 4), size=400)
    y = rng.multivariate_normal(np.ones(4), _random_covariance(rng, 4), size=300)
    mx, sx = gaussian_stats(x)
    assert np.allclose(mx, x.mean(0)) and np.allclose(sx, np.cov(x.T, ddof=1))
    assert features_distance(x, y) == pytest.approx(_scipy_frechet(mx, sx, *gaussian_stats(y)), rel=1e-9)
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(mx, sx, np.zeros(3), np.eye(3))


def test_frechet_distance_of_a_set_to_itself_is_zero_even_with_fewer_images_than_features():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16))
    assert features_distance(x, x) == pytest.approx(0, abs=1e-9)
    few = rng.normal(size=(6, 256)) * 10  # rank 5 covariances, as on a 6-image split
    assert features_distance(few, few) == pytest.approx(0, abs=1e-6)
    assert features_distance(few, few + 1) == pytest.approx(256, rel=1e-6)  # a shift of 1 in every dimension


def test_torchmetrics_fid_on_given_features_is_the_same_formula():
    """FID is torchmetrics' computation; on the same features it agrees with ours (and SciPy's)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(300, 2048 // 64)), rng.normal(0.3, 1.2, size=(200, 2048 // 64))
    given = _Given()
    given.num_features = x.shape[1]
    fid = FrechetInceptionDistance(feature=given)
    fid.update(torch.from_numpy(x), real=True)
    fid.update(torch.from_numpy(y), real=False)
    assert float(fid.compute()) == pytest.approx(features_distance(x, y), rel=1e-6)


# --- KID -----------------------------------------------------------------------------------------------


def _numpy_kid(real: np.ndarray, fake: np.ndarray) -> float:
    """The unbiased MMD² of Binkowski et al. with k(x, y) = (x·y / d + 1)³, computed directly."""
    d, m = real.shape[1], len(real)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(real, real), k(fake, fake), k(real, fake)
    off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off_diagonal - 2 * kxy.sum() / m**2)


def test_kid_is_the_unbiased_mmd_estimator_and_reproducible():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(40, 64)), rng.normal(0.5, 1.0, size=(40, 64))
    r, f = torch.from_numpy(real), torch.from_numpy(fake)
    mean, std = kernel_inception_distance(r, f, subset_size=40, subsets=5)
    assert mean == pytest.approx(_numpy_kid(real, fake), rel=1e-9)  # every subset is the whole set
    assert std == pytest.approx(0, abs=1e-12)
    same = rng.normal(size=(40, 64))
    assert abs(_numpy_kid(real, same)) < 0.1 * _numpy_kid(real, fake)  # one distribution: near 0, either sign
    drawn = kernel_inception_distance(r, f, subset_size=10)
    assert drawn == kernel_inception_distance(r, f, subset_size=10)  # the seed fixes the subsets
    assert drawn != kernel_inception_distance(r, f, subset_size=10, seed=1) and drawn[1] > 0
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    kernel_inception_distance(r, f, subset_size=10)
    assert torch.rand(1) == before  # the caller's random stream is left alone


# --- FID and KID end to end, on random Inception weights the test writes -----------------------------------------


def write_random_inception(path: Path, seed: int) -> Path:
    """A state dict of torch-fidelity's InceptionV3, RANDOMLY INITIALISED (He-normal convolutions,
    so features neither vanish nor explode): the right architecture and keys, meaningless numbers."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random init
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    torch.manual_seed(seed)
    net = Unloaded("random-inception", ["2048"], feature_extractor_weights_path=empty)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    return write_random_inception(tmp_path_factory.mktemp("inception") / "random-inception.pth", 0)


def _flipped_photos(split) -> Source:
    """A source whose "generated" photos are the real ones mirrored: uint8, known to the test."""
    return Source("mirrored", "test", 32, {"labels2photo": lambda inputs, index: split.photos[index].flip(-1)})


def _no_network(*args, **kwargs):
    raise AssertionError("a network connection was attempted")


def test_fid_and_kid_read_the_named_weights_file(synth_dir, random_weights, monkeypatch):
    from torchmetrics.image.fid import FrechetInceptionDistance

    monkeypatch.setattr(socket.socket, "connect", _no_network)  # nothing may be downloaded
    monkeypatch.setattr(socket, "create_connection", _no_network)
    split = load_val_split(synth_dir, 32)
    context = EvalContext(split, 32, torch.device("cpu"), 6, options={"inception_weights": str(random_weights)})
    results = score(_flipped_photos(split), select_evaluators(["fid,kid"], context.options), context,
                    progress=False).results
    fid, kid = results["fid"], results["kid"]
    # torchmetrics by itself, handed the same file and images: the same number.
    reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(random_weights),
                                         antialias=False)
    reference.update(split.photos, real=True)
    reference.update(split.photos.flip(-1), real=False)
    assert fid.metrics["fid"] == pytest.approx(float(reference.compute()), rel=1e-4) and fid.metrics["fid"] > 0
    assert fid.details["inception_weights_sha256"] == hashlib.sha256(random_weights.read_bytes()).hexdigest()
    # 6 images: KID's subsets are no larger than the split, so each is the whole split.
    assert kid.details["subset_size"] == 6 and kid.metrics["kid_std"] == pytest.approx(0, abs=1e-12)
    assert kid.metrics["kid_mean"] != 0


def test_the_weights_come_from_set_else_from_the_variable(tmp_path, monkeypatch):
    from evaluators.inception import weights_path

    given, in_variable = tmp_path / "given.pth", tmp_path / "variable.pth"
    given.touch()
    in_variable.touch()
    monkeypatch.setenv(ENV, str(in_variable))
    assert weights_path({}) == in_variable
    assert weights_path({"inception_weights": str(given)}) == given


def test_a_file_that_is_not_the_inception_fails_in_one_line(synth_dir, tmp_path):
    from cgbench.errors import CgbenchError

    split = load_val_split(synth_dir, 32)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    for name, message in (("other.pth", "does not hold the FID Inception's weights"), ("junk.pth", "cannot read")):
        context = EvalContext(split, 32, torch.device("cpu"), 4, options={"inception_weights": str(tmp_path / name)})
        with pytest.raises(CgbenchError, match=message):
            score(_flipped_photos(split), select_evaluators(["fid"], context.options), context, progress=False)


def test_fid_without_the_weights_file_exits_2_with_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    runner = CliRunner()
    # Checked when the evaluators are chosen: before the run is even looked up.
    out = runner.invoke(main, ["eval", "--run", "0" * 32, "--metric", "fid", "--tracking-uri",
                               f"sqlite:///{tmp_path}/mlflow.db"])
    assert_one_line_error(out, WEIGHTS_FILE, "--set inception_weights=PATH", ENV, WEIGHTS_URL)
    out = runner.invoke(main, ["eval", "--run", "0" * 32, "--metric", "kid", "--set", "inception_weights=nowhere.pth"])
    assert_one_line_error(out, "nowhere.pth does not exist", WEIGHTS_FILE)
    monkeypatch.setenv(ENV, str(tmp_path / "gone.pth"))
    out = runner.invoke(main, ["eval", "--run", "0" * 32, "--metric", "fid"])
    assert_one_line_error(out, "gone.pth does not exist")
    out = runner.invoke(main, ["eval", "--run", "0" * 32, "--set", "inception_weight=x.pth"])
    assert_one_line_error(out, "unknown evaluator option 'inception_weight'", "inception_weights (fid/kid)")


def test_the_named_url_is_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert WEIGHTS_URL == URL_INCEPTION_V3 and URL_INCEPTION_V3.endswith(WEIGHTS_FILE)


def test_list_says_fid_and_kid_are_labels_to_photo_only():
    out = CliRunner().invoke(main, ["eval", "--list"])
    lines = {line.split()[0]: line for line in out.output.splitlines()[1:] if line.strip()}
    for name in ("fid", "kid"):
        assert "labels2photo" in lines[name] and "photo→labels is not meaningful" in lines[name]
    assert "not FID" in lines["fd-fcn"]
    assert "inception_weights (fid, kid)" in out.output


# --- FD-FCN ---------------------------------------------------------------------------------------------


def _tiny_segmenter(kind: str) -> Segmenter:
    """Randomly initialised evaluator FCNs of the three kinds fd-fcn reads (any weights will do:
    the same photos give the same features)."""
    from cgbench.models.published_fcn import PublishedFCN8s
    from cgbench.models.segmenter import build_segmenter

    torch.manual_seed(0)
    if kind == "published":  # no batch norm: He-normal weights, or the features vanish
        model = PublishedFCN8s((4, 4, 8, 8, 8), 16)
        for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        return Segmenter(model.eval(), "random published FCN-8s", published=True)
    model = FCN8s(width=4) if kind == "fcn8s" else build_segmenter("fcn_resnet50")
    return Segmenter(model.eval(), f"random {kind}")


@pytest.mark.parametrize("kind", ["fcn8s", "fcn_resnet50", "published"])
def test_fd_fcn_of_the_real_photos_is_zero(synth_dir, kind):
    split = load_val_split(synth_dir, 32)
    segmenter = _tiny_segmenter(kind)
    context = EvalContext(split, 32, torch.device("cpu"), 4, loaders={"fcn": lambda: segmenter})
    real = Source("real", "real", 32, {"labels2photo": lambda inputs, index: split.photos[index]})
    result = score(real, select_evaluators(["fd-fcn"]), context, progress=False).results["fd-fcn"]
    assert result.metrics["fd_fcn"] == pytest.approx(0, abs=1e-6)
    width = {"fcn8s": 32, "fcn_resnet50": 2048, "published": 16}[kind]  # the layer before the score heads
    assert f"({width}-d)" in result.details["features"]
    label_maps = Source("labels", "null", 32, {"labels2photo": lambda inputs, index: inputs})
    assert score(label_maps, select_evaluators(["fd-fcn"]), context, progress=False).results["fd-fcn"].metrics[
        "fd_fcn"] > 1e-6


def test_fd_fcn_refuses_an_fcn_whose_features_it_cannot_find(synth_dir):
    from cgbench.errors import CgbenchError

    split = load_val_split(synth_dir, 32)
    segmenter = Segmenter(nn.Conv2d(3, 19, 1), "a bare convolution")
    context = EvalContext(split, 32, torch.device("cpu"), 4, loaders={"fcn": lambda: segmenter})
    with pytest.raises(CgbenchError, match="fd-fcn does not know which layer"):
        score(_flipped_photos(split), select_evaluators(["fd-fcn"]), context, progress=False)


@pytest.fixture(scope="module")
def run_and_fcn(synth_dir, tmp_path_factory):
    """A tiny trained run scored with the FCN score, and a tiny FCN on the same data, in one store."""
    from cgbench.evaluate import evaluate
    from cgbench.fcn import train_fcn
    from cgbench.training import train

    folder = tmp_path_factory.mktemp("fid-run")
    uri = f"sqlite:///{folder}/mlflow.db"
    config = resolve("tiny", data=str(synth_dir))
    run = train(config, tracking_uri=uri, experiment="runs", **QUIET)
    train_fcn(config, tracking_uri=uri, experiment="fcns", **QUIET)
    evaluate(run.run_id, ["fcn"], tracking_uri=uri, **QUIET)
    return SimpleNamespace(uri=uri, run_id=run.run_id, folder=folder)


def test_cgbench_eval_writes_fd_fcn_fid_and_kid_into_the_run(run_and_fcn, random_weights):
    proc = run_cli("eval", "--run", run_and_fcn.run_id, "--metric", "fd-fcn,fid,kid", "--set",
                   f"inception_weights={random_weights}", "--tracking-uri", run_and_fcn.uri, "--no-progress",
                   cwd=run_and_fcn.folder)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(run_and_fcn.uri)
    metrics = client.get_run(run_and_fcn.run_id).data.metrics
    assert metrics[f"{L2P}/fd_fcn"] > 0 and metrics[f"{L2P}/fid"] > 0
    assert {f"{L2P}/kid_mean", f"{L2P}/kid_std", f"{L2P}/per_pixel_acc"} <= set(metrics)
    # Each evaluator has its own folder: the FCN score's files are still there.
    files = {a.path for folder in ("eval/labels2photo", "eval/fd-fcn", "eval/fid", "eval/kid")
             for a in client.list_artifacts(run_and_fcn.run_id, folder)}
    assert {"eval/labels2photo/scores.json", "eval/fd-fcn/scores.json", "eval/fid/scores.json",
            "eval/kid/scores.json"} <= files
    fid = json.loads(Path(client.download_artifacts(run_and_fcn.run_id, "eval/fid/scores.json",
                                                    str(run_and_fcn.folder))).read_text())
    assert fid["inception_weights"] == str(random_weights) and fid["metrics"]["fid"] == metrics[f"{L2P}/fid"]

    from cgbench.report import build_report

    report = build_report(run_and_fcn.uri, experiment="runs", tables="2", out_dir=None, log_to_mlflow=False,
                          figures=False)
    assert "FID ↓" in report.markdown and "FD-FCN ↓" in report.markdown and "not FID" in report.markdown
