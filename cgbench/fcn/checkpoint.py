"""The FCN's checkpoint: what ``cgbench fcn train`` saves, and reading it back (or a bare state
dict of either architecture) into a segmenter."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cgbench.config import Config
from cgbench.data.labels import NUM_CLASSES
from cgbench.errors import CgbenchError
from cgbench.models.segmenter import SEGMENTER_ARCHS, build_segmenter

CHECKPOINT_FORMAT = 1


def checkpoint_state(model: nn.Module, config: Config, iteration: int, ground_truth: dict[str, float]) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "segmenter": model.state_dict(),
        "arch": config.fcn_arch,
        "width": config.fcn_width,
        "num_classes": NUM_CLASSES,
        "image_size": config.image_size,
        "iteration": iteration,
        "ground_truth": dict(ground_truth),
    }


def _infer_bare(state: dict[str, torch.Tensor], arch: str) -> tuple[dict[str, torch.Tensor], int, int]:
    """(state dict keyed for build_segmenter(arch), width, num_classes) of a bare state dict."""
    if arch == "fcn8s":
        try:
            width, classes = state["to_pool3.0.0.weight"].shape[0], state["score_fr.weight"].shape[0]
        except KeyError:
            raise CgbenchError("these weights are not an fcn8s state dict (no to_pool3/score_fr weights); "
                               "pass the right --fcn-arch") from None
        return state, int(width), int(classes)
    if not any(k.startswith("model.") for k in state):  # torchvision's own keys
        state = {f"model.{k}": v for k, v in state.items()}
    if "model.classifier.4.weight" not in state:
        raise CgbenchError("these weights are not an fcn_resnet50 state dict (no classifier.4 weights); "
                           "pass the right --fcn-arch")
    state = {k: v for k, v in state.items() if not k.startswith("model.aux_classifier.")}
    return state, 32, int(state["model.classifier.4.weight"].shape[0])


def segmenter_from_checkpoint(obj: Any, source: str, arch: str | None, device: torch.device) -> tuple[nn.Module, dict]:
    """Build and load the segmenter from our checkpoint dict or a bare state dict."""
    if not isinstance(obj, dict):
        raise CgbenchError(f"{source} holds a {type(obj).__name__}, not a state dict or a cgbench FCN checkpoint")
    if "segmenter" in obj:
        meta = {k: obj.get(k) for k in ("arch", "width", "num_classes", "image_size", "ground_truth", "iteration")}
        state, arch_, width, classes = obj["segmenter"], obj["arch"], int(obj["width"]), int(obj["num_classes"])
        if arch and arch != arch_:
            raise CgbenchError(f"{source} is an {arch_} checkpoint, but --fcn-arch {arch} was given; drop --fcn-arch")
    else:
        arch_ = arch or "fcn8s"
        if arch_ not in SEGMENTER_ARCHS:
            raise CgbenchError(f"unknown --fcn-arch {arch_!r}; choose one of: {', '.join(SEGMENTER_ARCHS)}")
        state, width, classes = _infer_bare(obj, arch_)
        meta = {"arch": arch_, "width": width, "num_classes": classes}
    if classes != NUM_CLASSES:
        raise CgbenchError(f"the segmenter in {source} has {classes} output classes; the FCN score needs exactly the "
                           f"{NUM_CLASSES} Cityscapes train classes (an extra channel would leak into the histogram)")
    model = build_segmenter(arch_, NUM_CLASSES, width)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CgbenchError(f"the weights in {source} do not fit a {arch_} segmenter ({first}); "
                           "pass the right --fcn-arch") from None
    return model.to(device).eval(), meta
