"""``cgbench eval``: score with the paper's protocol, and record the scores in MLflow.

Four modes, each chosen by its source option (:data:`MODES`): a trained run, a folder of images, an
authors' checkpoint, or the null translators. The table also says which other options a mode needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import click

from cgbench.cli.common import data_options, handle_errors, options


def _score_run(a: SimpleNamespace) -> None:
    from cgbench.evaluate import evaluate

    report = evaluate(a.run_id, a.metrics, tracking_uri=a.tracking_uri, fcn=a.fcn, fcn_arch=a.fcn_arch,
                      data=a.data_dir, batch_size=a.batch_size, device=a.device, save_images=a.save_images,
                      n_samples=a.n_samples, progress=a.progress, echo=click.echo, fcn_strict=a.fcn_strict,
                      allow_other_val=a.allow_other_val, options=a.options)
    _echo_report(report, a.tracking_uri)


def _score_images(a: SimpleNamespace) -> None:
    from cgbench.evaluate import evaluate_images

    _echo_report(evaluate_images(a.images_dir, _external_request(a), echo=click.echo), a.tracking_uri)


def _score_checkpoint(a: SimpleNamespace) -> None:
    from cgbench.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(a.checkpoint, a.arch, a.norm, _external_request(a), echo=click.echo)
    _echo_report(report, a.tracking_uri)


def _score_nulls(a: SimpleNamespace) -> None:
    from cgbench.nulls import ensure_nulls

    found = ensure_nulls(a.data or "synthcity", a.image_size or 128, a.metrics, fcn=a.fcn,
                         tracking_uri=a.tracking_uri, experiment=a.experiment, device=a.device,
                         progress=a.progress, echo=click.echo, prep=a.prep, options=a.options)
    client_rows = ", ".join(f"{row} (run {run_id[:8]})" for row, run_id in found.items())
    click.echo(f"Null rows recorded: {client_rows}.")


def _external_request(a: SimpleNamespace):
    """What ``--images`` and ``--checkpoint`` score, and where the result goes."""
    from cgbench.evaluate import ExternalRequest

    return ExternalRequest(a.direction, data=a.data, name=a.name, experiment=a.experiment, metrics=a.metrics,
                           image_size=a.image_size, fcn=a.fcn, fcn_arch=a.fcn_arch, batch_size=a.batch_size,
                           device=a.device, n_samples=a.n_samples, allow_partial=a.allow_partial,
                           tracking_uri=a.tracking_uri, progress=a.progress, fcn_strict=a.fcn_strict,
                           options=a.options)


def _echo_report(report, tracking_uri: str | None) -> None:
    from cgbench.evaluate import format_report
    from cgbench.tracking import client_for, ui_link

    for line in format_report(report):
        click.echo(line)
    click.echo(f"Recorded in run {report.run_id} at step {report.step}. See it with: "
               f"{ui_link(client_for(tracking_uri), report.run_id, tracking_uri)}")


@dataclass(frozen=True)
class Mode:
    """One way to call ``cgbench eval``: the source option that selects it (``param``: its
    parameter; ``usage``: how the error asking for one names it), the options it cannot do
    without (each a parameter and how the error naming it reads), and what it does."""

    option: str
    param: str
    usage: str
    score: Callable[[SimpleNamespace], None]
    needs: tuple[tuple[str, str], ...] = ()


_DIRECTION = ("direction", "--direction labels2photo or photo2labels")
_ARCH = ("arch", "--arch (resnet_6blocks, resnet_9blocks, unet_128 or unet_256)")

MODES = (
    Mode("--run", "run_id", "--run RUN_ID", _score_run),
    Mode("--images", "images_dir", "--images DIR", _score_images, needs=(_DIRECTION,)),
    Mode("--checkpoint", "checkpoint", "--checkpoint FILE", _score_checkpoint, needs=(_DIRECTION, _ARCH)),
    Mode("--nulls", "nulls", "--nulls", _score_nulls),
)


def _mode(given: dict[str, Any]) -> Mode:
    """The one mode whose source option is given."""
    from cgbench.errors import CgbenchError

    chosen = [mode for mode in MODES if given[mode.param]]
    if len(chosen) != 1:
        usages = [mode.usage for mode in MODES]
        raise CgbenchError(f"give exactly one of {', '.join(usages[:-1])} or {usages[-1]} "
                           "(or --list to show the evaluators)"
                           + (f"; got {', '.join(mode.option for mode in chosen)}" if chosen else ""))
    return chosen[0]


def _checked(mode: Mode, given: dict[str, Any]) -> SimpleNamespace:
    """The options, checked (those every mode shares, then what ``mode`` needs), with the dataset
    (``data``) and the evaluator settings (``options``, from ``--set``) resolved."""
    from cgbench.errors import CgbenchError
    from cgbench.scoring import evaluator_options

    a = SimpleNamespace(**given)
    if a.batch_size < 1:
        raise CgbenchError(f"--batch-size must be >= 1, got {a.batch_size}")
    if a.data_dir and a.dataset:
        raise CgbenchError("give either --data DIR or --dataset synthcity, not both")
    a.data = a.data_dir or a.dataset
    a.options = evaluator_options(a.sets)
    for param, usage in mode.needs:
        if getattr(a, param) is None:
            raise CgbenchError(f"{mode.option} needs {usage}")
    return a


source_options = options(
    click.option("--run", "run_id", default=None, metavar="RUN_ID", help="Score a run made by cgbench run."),
    click.option("--images", "images_dir", default=None, metavar="DIR",
                 help="Score a folder of generated images (needs --direction). Names: <frame>_leftImg8bit.png / "
                      "<frame>_gtFine_color.png (Cityscapes, and what --save-images writes); the authors' test.py "
                      "names <stem>_fake_A.png (a generated photo: their G_B) / <stem>_fake_B.png (a generated "
                      "label map: their G_A), their <stem>_real_* / _rec_* ignored; a bare index <i> is the i-th "
                      "validation frame in the sorted order of the frames' paths, from 0 (the authors' prepared "
                      "Cityscapes). Found recursively; PNG or JPEG."),
    click.option("--checkpoint", "checkpoint", default=None, metavar="FILE",
                 help="Score a generator state dict of the authors' code (latest_net_G_A.pth, ...; needs --arch and "
                      "--direction). On their Cityscapes folders G_A is photo→labels and G_B labels→photo."),
    click.option("--nulls", is_flag=True, help="Score and record the null translators (the floor) of a dataset, "
                 "once per dataset, image size and FCN (sweeps do this themselves)."),
)

mode_options = options(  # each applies to some modes only (its help says which)
    click.option("--direction", type=click.Choice(["labels2photo", "photo2labels"]), default=None,
                 help="What the images or the checkpoint translate."),
    click.option("--arch", type=click.Choice(["resnet_6blocks", "resnet_9blocks", "unet_128", "unet_256"]),
                 default=None, help="The authors' generator architecture of --checkpoint."),
    click.option("--norm", type=click.Choice(["instance", "batch"]), default="instance", show_default=True,
                 help="The normalisation of --checkpoint (the authors': instance for CycleGAN, batch for pix2pix)."),
    click.option("--image-size", type=int, default=None, metavar="S",
                 help="The generator's resolution S (picks the evaluator FCN trained at S). Default: read from "
                      "square images; 128 (the paper's) for --checkpoint and --nulls."),
    click.option("--name", default=None, help="The table row of --images / --checkpoint (default: its name)."),
    click.option("--experiment", default="cgbench", show_default=True,
                 help="MLflow experiment of the new run (--images, --checkpoint, --nulls)."),
    click.option("--allow-partial", is_flag=True, help="--images: score the frames that have an image; the "
                 "coverage is recorded."),
    click.option("--prep", type=click.Choice(["clean", "authors"]), default="clean", show_default=True,
                 help="--nulls: the data preparation of the runs the floor is for (the cpu preset's clean, the paper "
                      "preset's authors)."),
    click.option("--allow-other-val", is_flag=True,
                 help="--run with --data DIR: score on a val split other than the one the run recorded at training "
                      "time (recorded with the scores)."),
)

scoring_options = options(
    click.option("--metric", "metrics", multiple=True, metavar="NAME",
                 help="Evaluator to run (repeatable, or comma-separated). Default: fcn and seg (one direction: its "
                      "own). See --list."),
    click.option("--list", "list_evaluators", is_flag=True, help="Show every installed evaluator and exit."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                 help="An evaluator option (repeatable), e.g. --set inception_weights=PATH for fid and kid. "
                      "See --list."),
    click.option("--fcn", "fcn", default=None, metavar="RUN_ID|PATH",
                 help="The evaluator FCN: an FCN run id, a .pt file (checkpoint or bare state dict), or the "
                      "published FCN-8s as caffe:PATH (any PATH ending in .caffemodel). Default: the latest "
                      "finished FCN trained on the same data at the same image size."),
    click.option("--fcn-arch", type=click.Choice(["fcn8s", "fcn_resnet50"]), default=None,
                 help="Architecture of a bare state dict given with --fcn (default fcn8s)."),
    click.option("--fcn-strict", is_flag=True,
                 help="With the published FCN-8s (--fcn caffe:PATH): count its 20th output as a miss and drop no "
                      "image, instead of the public script's arithmetic (which the published numbers contain)."),
    click.option("--batch-size", type=int, default=8, show_default=True),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
    click.option("--samples", "n_samples", type=int, default=4, show_default=True, help="Images in the sample grid."),
    click.option("--save-images", is_flag=True,
                 help="--run: also store the translated images as lossless PNGs under the ground truth's file names "
                      "(artifacts eval/<direction>/images/)."),
    click.option("--tracking-uri", default=None,
                 help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default."),
    click.option("--progress/--no-progress", default=True, help="Show a progress bar."),
)


@click.command("eval")
@source_options
@mode_options
@data_options
@scoring_options
@handle_errors
def eval_(list_evaluators: bool, **given: Any) -> None:
    """Score with the paper's protocol: a trained run, a folder of images, an authors' checkpoint, or
    the null translators; results are recorded in MLflow."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own bar is enough
    if list_evaluators:
        _list_evaluators()
        return
    mode = _mode(given)
    mode.score(_checked(mode, given))


def _list_evaluators() -> None:
    """Every installed evaluator (and any that failed to load), with the settings they take."""
    from cgbench.plugins import discover

    errors: dict[str, str] = {}
    installed = discover(errors)
    click.echo(f"{'name':12s} {'direction':13s} {'needs':6s} {'metrics':40s} description")
    for name, cls in installed.items():
        click.echo(f"{name:12s} {cls.direction:13s} {','.join(cls.needs) or '-':6s} "
                   f"{','.join(cls.metrics):40s} {cls.description}")
    for name, error in errors.items():
        click.echo(f"{name:12s} BROKEN: {error}")
    settings: dict[str, tuple[list[str], str]] = {}
    for name, cls in installed.items():
        for key, text in cls.options.items():
            settings.setdefault(key, ([], text))[0].append(name)
    if settings:
        click.echo("options (--set KEY=VALUE):")
    for key, (names, text) in sorted(settings.items()):
        click.echo(f"  {key} ({', '.join(names)}): {text}")
