"""The FCN a sweep scores with: the one trained on the same data at the same size and preparation,
found by tag, else trained once, under a lease so that sweeps started at once train it once."""

from __future__ import annotations

from typing import Callable

from cgbench.config import Config
from cgbench.durations import fmt_seconds
from cgbench.fcn.lookup import find_fcn_run
from cgbench.fcn.training import train_fcn
from cgbench.tracking import Lease


def ensure_fcn(config: Config, tracking_uri: str | None, experiment: str, preset: str, progress: bool,
               echo: Callable[[str], None]) -> str:
    """The FCN evaluator for this dataset and image size: found by tag, else trained once."""
    from cgbench.data import datasets
    from cgbench.data.layouts import split_digest
    from cgbench.tracking import client_for

    ref = datasets.resolve(config.data, config.image_size, echo=echo)
    digest = split_digest(ref.root, "train")
    client = client_for(tracking_uri)
    lease = Lease(client, f"fcn/{digest}/{config.image_size}/{config.prep}")
    with lease.hold(echo):  # trained once, also by sweeps started at once
        run = find_fcn_run(client, digest, config.image_size, config.prep)
        if run is not None:
            echo(f"FCN evaluator: reusing run {run.info.run_id} (same dataset digest, {config.image_size} px).")
            return run.info.run_id
        return _train_fcn(config, tracking_uri, experiment, preset, progress, echo)


def _train_fcn(config: Config, tracking_uri: str | None, experiment: str, preset: str, progress: bool,
               echo: Callable[[str], None]) -> str:
    echo(f"FCN evaluator: none for this dataset at {config.image_size} px yet; training one.")
    result = train_fcn(config, tracking_uri=tracking_uri, experiment=experiment, preset=preset, progress=progress,
                       echo=echo)
    m = result.ground_truth.metrics
    echo(f"FCN evaluator: run {result.run_id} trained in {fmt_seconds(result.seconds)}; on real val photos "
         f"(the ceiling): per-pixel {m['per_pixel_acc']:.3f}, per-class {m['per_class_acc']:.3f}, "
         f"IoU {m['class_iou']:.3f}.")
    return result.run_id
