"""The FCN's own scores: on the real validation photos (the ceiling, the tables' "ground truth"
row) and along the degradation ladder, which a usable FCN's score must fall down."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from cgbench.protocol import LADDER_PREFIX, SCORE_METRICS, Tags
from cgbench.scoring import evaluator, score
from cgbench.scoring.sources import real_photos
from cgbench.tracking import RunTracker
from cgbench.plugins import EvalContext, Result, Segmenter


def ground_truth_scores(model: nn.Module, split, image_size: int, device: torch.device, batch_size: int,
                        progress: bool = False, n_samples: int = 4) -> tuple[Result, Any]:
    """The FCN score of the real validation photos (at the generator resolution, upsampled to the
    label resolution): the ceiling of the FCN score, the tables' "ground truth" row."""
    segmenter = Segmenter(model.eval(), source="training")
    context = EvalContext(split, image_size, device, batch_size, n_samples, loaders={"fcn": lambda: segmenter})
    scored = score(real_photos(split, image_size), [evaluator("fcn")], context, progress=progress,
                   desc="ground truth")
    return scored.results["fcn"], scored.stats


def degradation_ladder(model: nn.Module, split, image_size: int, device: torch.device,
                       batch_size: int) -> dict[str, dict[str, float]]:
    """The FCN score of the real val photos under each rung of :data:`cgbench.scoring.ladder.LADDER`."""
    from cgbench.scoring.ladder import LADDER, rung_source

    segmenter = Segmenter(model.eval(), source="training")
    context = EvalContext(split, image_size, device, batch_size, 0, loaders={"fcn": lambda: segmenter})
    fcn = [evaluator("fcn")]
    return {source.name: score(source, fcn, context, progress=False).results["fcn"].metrics
            for damage, levels in LADDER.items() for level in levels
            if (source := rung_source(split, image_size, damage, level))}


def record_ladder(tracker: RunTracker, clean: dict[str, float], rungs: dict[str, dict[str, float]], step: int,
                  echo: Callable[[str], None]) -> bool:
    """The ladder as metrics ``eval/ladder/<rung>/<metric>``, a plot and a JSON artifact, and the
    tag ``cgbench.fcn.ladder_falls``; a ladder that does not fall is reported. Returns whether all fall."""
    from cgbench.scoring.ladder import LADDER, falls, ladder_figure, rung_name

    tracker.log_result_metrics({f"{LADDER_PREFIX}/{rung}/{k}": v for rung, m in rungs.items() for k, v in m.items()},
                               step)
    flat = []
    for damage, levels in LADDER.items():
        for metric in SCORE_METRICS:
            if not falls([clean[metric]] + [rungs[rung_name(damage, level)][metric] for level in levels]):
                flat.append(f"{damage} ({metric})")
    tracker.set_tags({Tags.FCN_LADDER_FALLS: str(not flat).lower(),
                      Tags.FCN_LADDER_FLAT: ", ".join(flat)})
    tracker.log_json({"clean": clean, "rungs": rungs, "does_not_fall": flat}, f"{LADDER_PREFIX}/ladder.json")
    tracker.log_figure(ladder_figure(clean, rungs, SCORE_METRICS), f"{LADDER_PREFIX}/ladder.png")
    if flat:
        echo(f"error in the FCN: its score does not fall along the degradation ladder for {', '.join(flat)}; it "
             "cannot tell damaged photos from clean ones there (train it longer, e.g. --epochs, or check the data)")
    return not flat
