"""Run tags: every name cgbench writes comes from the Tags vocabulary of cgbench.protocol.

Statically, no module but protocol.py spells a tag name; on a real store, every tag of every kind
of run cgbench records (a trained and scored run, the FCN, the null rows, a folder of images, a
report) is in the vocabulary or one of its declared families."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from cgbench.config import resolve
from cgbench.data.layouts import load_split
from cgbench.evaluate import ExternalRequest, evaluate, evaluate_images
from cgbench.fcn import train_fcn
from cgbench.nulls import ensure_nulls
from cgbench.plugins import GROUP, discover
from cgbench.protocol import EXTERNAL_METHOD, TAG_PREFIX, Tags
from cgbench.report import build_report
from cgbench.training import train

ROOT = Path(__file__).resolve().parent.parent
QUIET = dict(progress=False, echo=lambda *_: None)
TAG_NAME = re.compile(r"cgbench\.[\w.]*")


def _modules() -> dict[str, Path]:
    out = {}
    for package in ("cgbench", "evaluators"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _spelled_tag_names(path: Path, modules: set[str]) -> list[str]:
    """Where ``path`` spells a tag name: TAG_PREFIX, a string that is a ``cgbench.`` name (not a
    module's, not the entry-point group), or a search filter on one. Docstrings and prose are fine."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "TAG_PREFIX":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} TAG_PREFIX")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.strip()
            named = TAG_NAME.fullmatch(text) and (text.endswith(".") or text not in modules and text != GROUP)
            if named or "tags.`cgbench." in text:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {text!r}")
    return found


def test_no_module_but_the_protocol_spells_a_tag_name():
    modules = _modules()
    spelled = [hit for module, path in sorted(modules.items()) if module != "cgbench.protocol"
               for hit in _spelled_tag_names(path, set(modules))]
    assert spelled == []


def _allowed(run) -> set[str] | tuple[str, ...]:
    """The vocabulary, plus the families whose member names come from elsewhere."""
    vocabulary = {name for key, name in vars(Tags).items() if key.isupper()}
    scorers = [*discover(), "ground_truth"]  # the installed evaluators, and the FCN run's own ceiling
    vocabulary |= {f(name) for name in scorers for f in (Tags.eval_classes, Tags.eval_fcn)}
    if run.data.tags.get(Tags.METHOD) == EXTERNAL_METHOD:  # an outside source's details, as its params
        vocabulary |= {Tags.named(key) for key in run.data.params}
    return vocabulary


@pytest.fixture(scope="module")
def store(synth_dir, tmp_path_factory) -> str:
    """One of each kind of run cgbench records, in one sqlite store."""
    folder = tmp_path_factory.mktemp("tags")
    uri = f"sqlite:///{folder}/mlflow.db"
    config = resolve("tiny", data=str(synth_dir), iters=2)
    run = train(config, tracking_uri=uri, experiment="runs", preset="tiny", **QUIET)
    fcn = train_fcn(config, tracking_uri=uri, experiment="fcns", **QUIET)
    evaluate(run.run_id, ["fcn", "seg"], tracking_uri=uri, fcn=fcn.run_id, n_samples=1, **QUIET)
    ensure_nulls(str(synth_dir), config.image_size, ["fcn", "seg"], fcn=fcn.run_id, tracking_uri=uri,
                 experiment="runs", **QUIET)
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in load_split(synth_dir, "val").names:
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{Path(name).name}.png")
    evaluate_images(images, ExternalRequest("labels2photo", data=str(synth_dir), experiment="runs", fcn=fcn.run_id,
                                            tracking_uri=uri, progress=False), echo=lambda *_: None)
    build_report(tracking_uri=uri, experiment="runs", out_dir=None, figures=False)
    return uri


def test_every_tag_of_every_kind_of_run_is_in_the_vocabulary(store):
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    kinds = {r.data.tags.get(Tags.METHOD) for r in runs}
    assert {"cyclegan", "fcn", "null", "external", "report"} <= kinds
    families = (Tags.package(""), Tags.named("speed."))
    outside = {(r.data.tags.get(Tags.METHOD), k) for r in runs for k in r.data.tags
               if k.startswith(TAG_PREFIX) and not k.startswith(families) and k not in _allowed(r)}
    assert outside == set()
