"""The evaluator interface, the evaluation context, and plugin discovery: what cgbench offers a
plugin and how it finds one.

An evaluator scores one translation direction of a trained run, in the style of a torchmetrics
metric: it is built on an :class:`EvalContext`, receives the validation split batch by batch in
:meth:`Evaluator.update` (already translated by the run's generator), and returns its numbers in
:meth:`Evaluator.compute`. It never sees the training code or the method: only "a run with two
translators and a dataset".

Evaluators are found through the entry-point group ``cgbench.evaluators``; the built-ins (the
``evaluators`` package: fcn, seg, fid, kid, fd-fcn) are registered the same way in cgbench's
``pyproject.toml``, and cgbench reaches them only through it. A third-party package registers its
own with, e.g.::

    [project.entry-points."cgbench.evaluators"]
    edges = "my_package.edges:EdgeScore"

where ``EdgeScore`` subclasses :class:`Evaluator` (or ``evaluators.base.ConfusionEvaluator``) and
declares ``name``, ``direction``, ``needs``, ``metrics`` and ``description``; optionally ``prefix``
(where its metrics go), ``artifact_dir`` (where its files go) and ``options`` (the ``--set
key=value`` settings it reads from :attr:`EvalContext.options`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from cgbench.confusion import Scores
from cgbench.data.labels import CLASS_NAMES, NUM_CLASSES
from cgbench.protocol import DIRECTIONS, SCORE_METRICS

GROUP = "cgbench.evaluators"
RESOURCES = ("fcn",)
"""What an evaluator may declare in ``needs``: ``fcn`` = the evaluator segmenter (context.fcn)."""
__all__ = ["GROUP", "RESOURCES", "Batch", "Segmenter", "EvalContext", "Result", "Evaluator", "PluginError",
           "check_evaluator_class", "discover", "per_class_rows"]


@dataclass
class Batch:
    """A batch of the validation split, translated in one direction.

    All tensors are on the evaluation device. ``labels`` are the ground-truth train ids at their
    native resolution (255 = ignored) and are never resized. ``inputs`` is what the translator
    was given: (B, 3, S, S) in [-1, 1] at the generator's resolution S; None where only the
    translations are known (:mod:`cgbench.metrics`, which keeps no samples). ``outputs`` is the
    translator's result as the uint8 image (B, 3, S, S) that ``--save-images`` writes losslessly,
    so scoring the saved PNGs gives the same numbers.
    """

    index: torch.Tensor  # (B,) positions in the split
    names: list[str]
    labels: torch.Tensor  # (B, H, W) uint8 train ids
    inputs: torch.Tensor | None  # (B, 3, S, S) float in [-1, 1]
    outputs: torch.Tensor  # (B, 3, S, S) uint8


@dataclass
class Segmenter:
    """The evaluator segmenter behind the FCN score, as the evaluators receive it."""

    model: torch.nn.Module  # (N, 3, H, W) in [-1, 1] -> (N, 19, H, W) logits; in eval mode
    source: str  # what it is, for messages and records (run id or file path)
    run_id: str | None = None
    image_size: int | None = None  # the generator resolution its training photos were resized to
    ground_truth: dict[str, float] = field(default_factory=dict)  # its own scores on real photos
    published: bool = False  # the published Caffe FCN-8s: scored the public script's way
    strict: bool = False  # with ``published``: its 20th output counted as a miss, no image dropped


class EvalContext:
    """What an evaluator may use: the split, the device, batch size, and lazily loaded resources.

    ``split`` is the validation :class:`cgbench.data.layouts.Split` (labels at native
    resolution; photos may already be at the generator resolution), and ``image_size`` the
    generator resolution; both None where batches come from a training loop of the user's own
    (:mod:`cgbench.metrics`). Resources such as the FCN are loaded on first access, once, through
    the loaders the driver registers; ``n_samples`` images are kept for the sample grid.
    """

    def __init__(
        self,
        split: Any,
        image_size: int | None,
        device: torch.device,
        batch_size: int = 8,
        n_samples: int = 4,
        run_id: str | None = None,
        loaders: dict[str, Callable[[], Any]] | None = None,
        options: dict[str, str] | None = None,
    ):
        self.split = split
        self.image_size = image_size
        self.device = device
        self.batch_size = batch_size
        self.n_samples = n_samples
        self.run_id = run_id
        self.options = dict(options or {})  # evaluator settings (cgbench eval --set key=value)
        self._loaders = dict(loaders or {})
        self._resources: dict[str, Any] = {}
        self._shared: dict[str, Any] = {}

    def resource(self, name: str) -> Any:
        if name not in self._resources:
            if name not in self._loaders:
                raise KeyError(f"no loader for resource {name!r}; known: {', '.join(self._loaders) or 'none'}")
            self._resources[name] = self._loaders[name]()
        return self._resources[name]

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per context and shared by every evaluator that asks for ``key``
        (e.g. a feature network and the real photos' features, used by two evaluators)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    @property
    def fcn(self) -> Segmenter:
        """The evaluator segmenter (loaded on first use)."""
        return self.resource("fcn")


@dataclass
class Result:
    """What :meth:`Evaluator.compute` returns.

    ``metrics`` must hold exactly the evaluator's declared ``metrics``. ``scores`` and
    ``confusion`` (C×C counts, rows = ground truth) give the per-class table and the confusion
    plot; ``samples`` are named rows of uint8 (n, 3, H, W) images for the sample grid; ``details``
    is anything JSON-serialisable recorded in ``scores.json``.
    """

    metrics: dict[str, float]
    scores: Scores | None = None
    confusion: torch.Tensor | None = None
    samples: dict[str, torch.Tensor] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Base class of every evaluator (built-in or plugin)."""

    name: ClassVar[str]
    direction: ClassVar[str]  # one of DIRECTIONS
    needs: ClassVar[tuple[str, ...]] = ()  # subset of RESOURCES
    metrics: ClassVar[tuple[str, ...]] = SCORE_METRICS
    description: ClassVar[str] = ""
    #: Where its metrics go in the run: ``<prefix>/<metric>``; default ``eval/<name>``.
    prefix: ClassVar[str | None] = None
    #: Where its files (scores.json, ...) go; replaced whole on re-scoring. Default: the prefix.
    artifact_dir: ClassVar[str | None] = None
    #: The settings it reads from ``context.options`` (``cgbench eval --set key=value``): key → help.
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, context: EvalContext):
        self.context = context
        self.seconds: dict[str, float] = {}  # optional timing breakdown, reported by the driver

    @classmethod
    def key_prefix(cls) -> str:
        return cls.prefix or f"eval/{cls.name}"

    @classmethod
    def artifact_folder(cls) -> str:
        return cls.artifact_dir or cls.key_prefix()

    @classmethod
    def check(cls, options: dict[str, str]) -> None:
        """Called when the evaluator is selected, before anything is loaded: raise a one-line
        :class:`cgbench.errors.CgbenchError` for what would make it fail (a missing file, ...)."""

    def update(self, batch: Batch) -> None:
        raise NotImplementedError

    def compute(self) -> Result:
        raise NotImplementedError

    def _tick(self, what: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[what] = self.seconds.get(what, 0.0) + now - since
        return now


class PluginError(Exception):
    """An installed evaluator entry point that cannot be used."""


def check_evaluator_class(obj: Any, entry_name: str) -> type[Evaluator]:
    """Validate a loaded entry point: an Evaluator subclass that declares what it must."""
    if not (isinstance(obj, type) and issubclass(obj, Evaluator)):
        raise PluginError(f"entry point {entry_name!r} is {obj!r}, not a subclass of cgbench.plugins.Evaluator")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"evaluator {obj.__qualname__} declares no name")
    if getattr(obj, "direction", None) not in DIRECTIONS:
        raise PluginError(f"evaluator {name!r} declares direction {getattr(obj, 'direction', None)!r}; "
                          f"use one of {', '.join(DIRECTIONS)}")
    unknown = [n for n in obj.needs if n not in RESOURCES]
    if unknown:
        raise PluginError(f"evaluator {name!r} needs {', '.join(unknown)}, which cgbench does not provide "
                          f"(it provides: {', '.join(RESOURCES)})")
    if not obj.metrics or not all(isinstance(m, str) and m for m in obj.metrics):
        raise PluginError(f"evaluator {name!r} declares no metrics")
    if not (isinstance(obj.options, dict) and all(isinstance(k, str) and k for k in obj.options)):
        raise PluginError(f"evaluator {name!r} declares options that are not a dict of names to descriptions")
    return obj


def discover(errors: dict[str, str] | None = None) -> dict[str, type[Evaluator]]:
    """Every installed evaluator, by its declared name, sorted by name.

    Entry points that fail to import or validate are left out; when ``errors`` is given, it
    receives ``{entry point name: reason}`` for each of them.
    """
    found: dict[str, type[Evaluator]] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        try:
            cls = check_evaluator_class(ep.load(), ep.name)
        except Exception as exc:  # a broken plugin must not break the others
            if errors is not None:
                errors[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        if cls.name in found and found[cls.name] is not cls:
            if errors is not None:
                errors[ep.name] = f"duplicate evaluator name {cls.name!r} ({ep.value}); the first one is used"
            continue
        found[cls.name] = cls
    return dict(sorted(found.items()))


def per_class_rows(scores: Scores, confusion: torch.Tensor | None) -> list[dict[str, Any]]:
    """One row per train class: id, name, ground-truth pixels, accuracy, IoU (NaN when absent)."""
    rows_sum = confusion.sum(1).tolist() if confusion is not None else [None] * NUM_CLASSES
    out = []
    for i, name in enumerate(CLASS_NAMES):
        acc, iou = float(scores.per_class_acc_vec[i]), float(scores.iou_vec[i])
        out.append({
            "train_id": i, "class": name, "gt_pixels": rows_sum[i],
            "evaluated": i in scores.evaluated_classes,
            "acc": None if np.isnan(acc) else acc, "iou": None if np.isnan(iou) else iou,
        })
    return out
