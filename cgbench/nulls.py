"""The floor under every table: the null translators, scored once and found again.

Each null translator (:func:`cgbench.scoring.sources.null_sources`) is scored through the same
evaluators, resizing and confusion code as a trained run, and recorded as an MLflow run of its
own (tag ``cgbench.method=null``, its row in ``cgbench.row``) once per dataset digest, image size
and — for labels→photo — evaluator FCN. Later sweeps and reports find it again by those tags, as
the FCN is found again.
"""

from __future__ import annotations

from typing import Callable

from cgbench.config import Config
from cgbench.data import datasets
from cgbench.data.layouts import load_split
from cgbench.devices import resolve_device
from cgbench.errors import CgbenchError
from cgbench.evaluate import needs_fcn, score_into_run
from cgbench.fcn import load_fcn
from cgbench.protocol import NULL_METHOD, NULL_ROWS, Tags
from cgbench.scoring import load_val_split, select_evaluators
from cgbench.scoring.sources import null_sources
from cgbench.tracking import Lease, client_for, search_runs, start_run
from cgbench.plugins import EvalContext

DERANGEMENT_SEED = 0  # "another scene": one fixed derangement, so every report shows the same floor


def find_null_run(client, row: str, digest: str, image_size: int, prep: str, fcn_source: str | None):
    """The newest finished run of null ``row`` for these data, size, preparation and FCN (None if
    there is none)."""
    query = (f"tags.`{Tags.METHOD}` = '{NULL_METHOD}' and tags.`{Tags.ROW}` = '{row}' and "
             f"tags.`{Tags.DATASET_DIGEST}` = '{digest}' and tags.`{Tags.IMAGE_SIZE}` = '{image_size}' "
             f"and tags.`{Tags.PREP}` = '{prep}' and attributes.status = 'FINISHED'")
    if fcn_source is not None:
        query += f" and tags.`{Tags.eval_fcn('fcn')}` = '{fcn_source}'"
    runs = search_runs(client, None, query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def ensure_nulls(
    data: str,
    image_size: int,
    metrics: list[str] | tuple[str, ...] | None = None,
    fcn: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "cgbench",
    device: str = "auto",
    batch_size: int = 16,
    progress: bool = False,
    echo: Callable[[str], None] = print,
    prep: str = "clean",
    options: dict[str, str] | None = None,
) -> dict[str, str]:
    """Every null row that the evaluators ``metrics`` can score, for dataset ``data`` at
    ``image_size``: found again, or scored and recorded now. Returns {row: run id}. ``options``:
    evaluator settings (``--set key=value``)."""
    client = client_for(tracking_uri)
    classes = select_evaluators(metrics, options)
    dev = resolve_device(device)
    ref = datasets.resolve(data, image_size, echo=echo)
    train_split = load_split(ref.root, "train", photo_size=image_size, prep=prep)
    if len(train_split.labels) < 1:
        raise CgbenchError(f"the training split of {ref.root} has no label maps; the null rows need them")
    digest = train_split.digest
    segmenter = (load_fcn(fcn, client, dev, digest=digest, image_size=image_size, data_root=ref.root, echo=echo,
                          prep=prep) if needs_fcn(classes) else None)
    val_split = load_val_split(ref.root, image_size, prep)
    sources = null_sources(train_split, val_split, image_size, DERANGEMENT_SEED)
    context = EvalContext(val_split, image_size, dev, batch_size, 4, loaders={"fcn": lambda: segmenter},
                          options=options)
    found: dict[str, str] = {}
    with Lease(client, f"nulls/{digest}/{image_size}/{prep}").hold(echo):  # scored once, also by sweeps at once
        for direction, rows in NULL_ROWS.items():
            scorers = [c for c in classes if c.direction == direction]
            if not scorers:
                continue
            fcn_source = segmenter.source if needs_fcn(scorers) else None
            for row in rows:
                run = find_null_run(client, row, digest, image_size, prep, fcn_source)
                if run is None:
                    run_id = _record_null(client, sources[row], scorers, context, ref, train_split, val_split,
                                          segmenter, tracking_uri, experiment, progress)
                    echo(f"Null row {row}: scored and recorded as run {run_id}.")
                else:
                    run_id = run.info.run_id
                found[row] = run_id
    return found


def prepare_floor(config: Config, evaluators: tuple[str, ...], fcn: str | None, tracking_uri: str | None,
                  experiment: str, echo: Callable[[str], None]) -> dict[str, str]:
    """The null rows (the floor) for a sweep's data, image size and preparation, scored with its
    evaluators and FCN: found again, else scored now; says how many there are."""
    nulls = ensure_nulls(config.data, config.image_size, evaluators, fcn=fcn, tracking_uri=tracking_uri,
                         experiment=experiment, device=config.device, prep=config.prep, echo=echo)
    echo(f"Floor: {len(nulls)} null rows recorded for these data ({', '.join(nulls)}).")
    return nulls


def _record_null(client, source, scorers, context, ref, train_split, val_split, segmenter, tracking_uri,
                 experiment, progress) -> str:
    row, size = source.name, source.image_size
    tags = {Tags.METHOD: NULL_METHOD, Tags.ROW: row, Tags.DATASET: ref.name,
            Tags.DATASET_DIGEST: train_split.digest, Tags.IMAGE_SIZE: str(size),
            Tags.PREP: train_split.prep, Tags.PRECISION: "fp32"}
    definition = {"row": row, "data": str(ref.root), "image_size": size, **source.details}
    root = str(ref.root.resolve())
    tracker = start_run(tracking_uri, experiment, row, tags, definition, definition,
                        datasets=[(ref.name, root, train_split.digest, "training"),
                                  (ref.name + "-val", root, val_split.digest, "evaluation")])
    with tracker.ending():
        score_into_run(tracker, source, scorers, context, 0,
                       {"run_id": tracker.run_id, "data_root": root, "val_digest": val_split.digest,
                        "label_resolution": list(val_split.labels.shape[-2:])},
                       segmenter, progress=progress)
    return tracker.run_id
