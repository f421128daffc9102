"""The ``cgbench`` command line. Thin: parse, call the library, turn known errors into one line.

Exit status: 0 done, 1 a run failed (e.g. a non-finite loss), 2 a usage or input error,
130 interrupted (the run was checkpointed and can be resumed).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

PRESET_NAMES = ("tiny", "cpu", "paper")


def _fail(message: str, code: int) -> None:
    """Exit with ``code``; the message is printed once: by rank 0 when several processes train."""
    from cgbench.distributed import env_rank

    if env_rank() == 0:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Known errors become one line on stderr and an exit status; never a traceback.
    Among several training processes only rank 0 prints it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cgbench.errors import CgbenchError

        try:
            return fn(*args, **kwargs)
        except CgbenchError as exc:
            _fail(str(exc), 2)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # classified below; anything else is a bug and keeps its traceback
            from cgbench.errors import Interrupted, LeaseLost, NonFiniteLoss, RanksDiverged, StoreUnavailable
            from cgbench.sweep import SweepInterrupted

            if isinstance(exc, (Interrupted, SweepInterrupted)):
                _fail(str(exc), 130)
            if isinstance(exc, (NonFiniteLoss, RanksDiverged, LeaseLost, StoreUnavailable)):
                _fail(str(exc), 1)
            raise

    return wrapper


def _quiet() -> None:
    """Keep MLflow's INFO chatter (store migrations) out of the user's terminal."""
    import logging

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # in case it already was


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cgbench")
def main() -> None:
    """Train, ablate and score CycleGAN with the paper's protocol; every number in MLflow."""
    _quiet()


# --- shared options ------------------------------------------------------------------


def data_options(fn: Callable) -> Callable:
    fn = click.option("--dataset", type=click.Choice(["synthcity"]), default=None,
                      help="The embedded dataset (generated on first use). The default.")(fn)
    fn = click.option("--data", "data_dir", type=str, default=None, metavar="DIR",
                      help="A dataset folder: Cityscapes, pix2pix aligned or CycleGAN unaligned layout.")(fn)
    return fn


def config_options(fn: Callable) -> Callable:
    for decorator in reversed([
        click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
                     help="Starting configuration. Default: paper on a CUDA machine, cpu otherwise."),
        click.option("--config", "config_file", type=str, default=None, metavar="FILE.yaml",
                     help="YAML file of config keys (only existing keys)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config key."),
        click.option("--seed", type=int, default=None, help="Fixes data order, initialisation and sampling."),
        click.option("--experiment", default="cgbench", show_default=True, help="MLflow experiment name."),
        click.option("--tracking-uri", default=None,
                     help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default."),
    ]):
        fn = decorator(fn)
    return fn


def default_preset() -> str:
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def resolve_config(preset, config_file, sets, data_dir, dataset, **explicit):
    from cgbench import config as cfg
    from cgbench.errors import ConfigError

    if data_dir and dataset:
        raise ConfigError("give either --data DIR or --dataset synthcity, not both")
    data = data_dir or dataset
    return cfg.resolve(preset, config_file, cfg.parse_set(sets), data=data, **explicit)


# --- cgbench run -----------------------------------------------------------------------


@main.command()
@data_options
@click.option("--method", default=None, help="Training method (see --list-methods). Default: cyclegan.")
@click.option("--ablation", default=None, help="CycleGAN ablation (see --list-ablations). Default: cyclegan.")
@config_options
@click.option("--iters", type=int, default=None, help="Total iterations (replaces epochs).")
@click.option("--epochs", type=float, default=None, help="Total epochs (replaces iters).")
@click.option("--resume", "resume_run_id", default=None, metavar="RUN_ID",
              help="Continue this run from its last checkpoint, with its recorded config.")
@click.option("--run-name", default=None, help="MLflow run name. Default: <ablation>-seed<N>.")
@click.option("--list-ablations", is_flag=True, help="Print the ablations with the paper's row names.")
@click.option("--list-methods", is_flag=True, help="Print the training methods.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--nproc", type=int, default=None, metavar="N",
              help="Train on N local processes with DistributedDataParallel (one per GPU on CUDA, gloo on CPU); "
                   "the effective batch is N x batch_size. --nproc 1 is one process under DDP; without "
                   "--nproc, one plain process. Several machines: torchrun -m cgbench run ...")
@handle_errors
def run(data_dir, dataset, method, ablation, preset, config_file, sets, seed, experiment, tracking_uri,
        iters, epochs, resume_run_id, run_name, list_ablations, list_methods, progress, nproc):
    """Train CycleGAN, one of its ablations, or a baseline, recording every loss term in MLflow."""
    if list_ablations:
        from cgbench.methods.cyclegan import ABLATIONS

        for a in ABLATIONS.values():
            terms = [t for t, on in (("GAN", a.gan), ("forward cycle", a.cycle_forward),
                                     ("backward cycle", a.cycle_backward), ("identity", a.identity)) if on]
            click.echo(f"{a.name:16s} {a.paper_row:24s} {' + '.join(terms)}")
        return
    if list_methods:
        from cgbench.methods import METHODS

        for name, cls in METHODS.items():
            click.echo(f"{name:14s} {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
        return

    from cgbench.distributed import env_describes_group, env_rank
    from cgbench.errors import ConfigError

    if nproc is not None and nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nproc is not None and env_describes_group():
        raise ConfigError("this process already runs under torchrun (WORLD_SIZE is set); drop --nproc")
    if resume_run_id:
        given = [n for n, v in (("--data", data_dir), ("--dataset", dataset), ("--method", method),
                                ("--ablation", ablation), ("--preset", preset), ("--config", config_file),
                                ("--set", sets), ("--seed", seed), ("--iters", iters), ("--epochs", epochs)) if v]
        if given:
            raise ConfigError(f"--resume continues a run with its recorded config; drop {', '.join(given)}")
        config, preset = None, None
        if nproc is not None:
            _check_resume_on(nproc, resume_run_id, tracking_uri)
    else:
        preset = preset or default_preset()
        config = resolve_config(preset, config_file, sets, data_dir, dataset, method=method, ablation=ablation,
                                seed=seed, iters=iters, epochs=epochs)
        from cgbench.methods import get_method
        from cgbench.methods.cyclegan import get_ablation

        get_method(config.method)
        get_ablation(config.ablation)
        if nproc is not None:
            from cgbench.data import datasets
            from cgbench.training.run import check_method

            check_method(config.method, in_group=True)
            datasets.resolve(config.data, config.image_size, echo=click.echo)  # missing data: one line, no processes
        if env_rank() == 0:  # under torchrun every rank runs this command; one speaks
            click.echo(f"Preset {preset}; method {config.method}, ablation {config.ablation}, seed {config.seed}"
                       + (f"; {nproc} process{'es' if nproc > 1 else ''} (DDP)." if nproc else "."))

    options = dict(config=config, tracking_uri=tracking_uri, experiment=experiment, preset=preset,
                   resume_run_id=resume_run_id, run_name=run_name, progress=progress)
    if nproc is None:  # also each rank under torchrun: train() joins the group from the environment
        _train_and_report(options)
        return
    from cgbench.distributed import launch

    status = launch(nproc, _train_rank, (options,))
    if status:
        sys.exit(status)  # the processes have printed what went wrong (rank 0, one line)


def _check_resume_on(nproc: int, run_id: str, tracking_uri: str | None) -> None:
    """Before starting processes: the run exists, was trained on ``nproc`` processes, and its
    method can train on several."""
    from cgbench.tracking import client_for, get_run, recorded_config
    from cgbench.training.run import check_method, check_resume_world_size, check_training_run

    client = client_for(tracking_uri)
    run = get_run(client, run_id)
    check_training_run(run)
    check_resume_world_size(run, nproc)
    check_method(recorded_config(client, run_id, "resumed").method, in_group=True)


def _train_and_report(options: dict) -> None:
    from cgbench.distributed import env_rank
    from cgbench.training import train

    main_rank = env_rank() == 0
    result = train(**options, echo=click.echo if main_rank else (lambda *_: None))
    if not main_rank:
        return
    from cgbench.tracking import client_for, ui_link

    tracking_uri = options["tracking_uri"]
    click.echo(f"Run {result.run_id} {result.status.lower()} after {result.iterations} iterations "
               f"({result.sec_per_iter:.3f} s/iter median). See it with: "
               f"{ui_link(client_for(tracking_uri), result.run_id, tracking_uri)}")


@handle_errors
def _train_rank(options: dict) -> None:
    """One process of ``cgbench run --nproc N`` (spawned by :func:`cgbench.distributed.launch`)."""
    _quiet()
    _train_and_report(options)


# --- cgbench data ------------------------------------------------------------------------


@main.group()
def data() -> None:
    """Datasets: generate the embedded SynthCity dataset."""


@data.command("synth")
@click.option("--out", required=True, type=str, metavar="DIR", help="Folder to write (Cityscapes layout).")
@click.option("--size", default=128, show_default=True, help="Image height; width is twice that.")
@click.option("--train", "n_train", default=1000, show_default=True, help="Training scenes.")
@click.option("--val", "n_val", default=200, show_default=True, help="Validation scenes.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=None, type=int, help="Processes (default: up to 2).")
@handle_errors
def data_synth(out, size, n_train, n_val, seed, workers):
    """Write SynthCity: procedural street scenes in the Cityscapes label space and layout."""
    import time

    from cgbench.data.synthcity import generate
    from cgbench.paths import check_creatable

    check_creatable(out, "--out")
    t0 = time.perf_counter()
    root = generate(out, size=size, n_train=n_train, n_val=n_val, seed=seed, workers=workers)
    click.echo(f"SynthCity: {n_train} train + {n_val} val scenes at {2 * size}x{size} in {root} "
               f"({time.perf_counter() - t0:.1f} s).")


# --- cgbench bench -----------------------------------------------------------------------


@main.command()
@data_options
@click.option("--preset", "presets", type=click.Choice(PRESET_NAMES), multiple=True,
              help="Presets to time (repeatable). Default: cpu and paper.")
@click.option("--method", default="cyclegan", show_default=True, help="Training method to time.")
@click.option("--ablation", default="cyclegan", show_default=True)
@click.option("--iters", type=int, default=None,
              help="Timed steps per path (fast and plain, in alternating blocks), after --warmup. "
                   "Default: as many as the plain path runs in ~20 s, 10 to 100.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed steps first (compilation, caches).")
@click.option("--tracking-iters", type=int, default=None,
              help="Iterations of the real training loop that measure tracking's share. Default: --iters "
                   "(0: skip).")
@click.option("--eval/--no-eval", "with_eval", default=True, help="Also time evaluation (G + FCN, confusion).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config key.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the full results as JSON (for tracking over time).")
@click.option("--log-mlflow", is_flag=True, help="Also record the results as an MLflow run (cgbench.method=bench).")
@click.option("--experiment", default="cgbench-bench", show_default=True, help="MLflow experiment for --log-mlflow.")
@click.option("--tracking-uri", default=None,
              help="MLflow store for --log-mlflow (default: MLFLOW_TRACKING_URI, else ./mlflow.db).")
@click.option("--tracking-store", default=None, metavar="URI",
              help="The MLflow store the tracking figure's runs write to, e.g. http://HOST:PORT of a server "
                   "(default: a throwaway sqlite file).")
@handle_errors
def bench(data_dir, dataset, presets, method, ablation, iters, warmup, tracking_iters, with_eval, sets, json_path,
          log_mlflow, experiment, tracking_uri, tracking_store):
    """Time the training step (fast vs plain eager fp32), its parts, FLOPs, memory and evaluation."""
    import json

    from cgbench import bench as bench_lib
    from cgbench.errors import ConfigError
    from cgbench.methods import get_method

    if (iters is not None and iters < 1) or warmup < 0:
        raise ConfigError("--iters must be >= 1 and --warmup >= 0")
    get_method(method)
    presets = presets or ("cpu", "paper")
    configs = [(p, resolve_config(p, None, sets, data_dir, dataset, method=method, ablation=ablation))
               for p in presets]  # every config is checked before anything is timed
    report = {"machine": bench_lib.machine(), "iters": iters, "warmup": warmup, "presets": {}}
    click.echo(f"{report['machine']['processor']}, {report['machine']['cpu_threads']} threads, torch "
               f"{report['machine']['torch']}" + (f", {report['machine']['cuda']}" if report["machine"]["cuda"] else ""))
    for preset, config in configs:
        result = bench_lib.bench_preset(config, preset, iters=iters, warmup=warmup,
                                        tracking_iters=tracking_iters, tracking_store=tracking_store,
                                        with_eval=with_eval, echo=click.echo)
        for line in bench_lib.format_result(result):
            click.echo(line)
        report["presets"][preset] = result.to_dict()
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
        click.echo(f"Wrote {json_path}")
    if log_mlflow:
        run_id = bench_lib.log_to_mlflow(report, tracking_uri, experiment)
        click.echo(f"Recorded as MLflow run {run_id} in experiment {experiment!r}.")


# --- cgbench sweep / quickstart --------------------------------------------------------------


def _parse_seeds(text: str | None) -> tuple[int, ...] | None:
    from cgbench.errors import ConfigError

    if not text:
        return None
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers such as 0,1,2, not {text!r}") from None


@main.command()
@click.argument("spec", type=str)
@click.option("--seeds", default=None, help="Comma-separated seeds (default: the spec's).")
@click.option("--jobs", default=1, show_default=True, help="Runs in parallel processes; cores are shared.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, help="Default: the spec's preset.")
@data_options
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key in every run.")
@click.option("--experiment", default=None, help="MLflow experiment (default: the spec's name).")
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else MLflow's default.")
@click.option("--dry-run", is_flag=True, help="Print the plan and an estimated time; run nothing.")
@click.option("--progress/--no-progress", default=True)
@click.option("--executor", "executor_name", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where children run: local processes (--jobs at a time) or Ray tasks on a cluster "
                   '(pip install -e ".[ray]").')
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="The Ray cluster (host:port, or auto for the one this machine joined). Default: a local "
                   "cluster started for the sweep.")
@handle_errors
def sweep(spec, seeds, jobs, preset, data_dir, dataset, sets, experiment, tracking_uri, dry_run, progress,
          executor_name, ray_address):
    """Train and evaluate every (row, seed) of SPEC (e.g. runs/ablations.yaml) under one parent run.

    Re-running the same command skips finished runs and resumes interrupted ones."""
    from cgbench.config import parse_set
    from cgbench.errors import ConfigError
    from cgbench.sweep import run_sweep

    if data_dir and dataset:
        raise ConfigError("give either --data DIR or --dataset synthcity, not both")
    result = run_sweep(spec, seeds=_parse_seeds(seeds), jobs=jobs, preset=preset, data=data_dir or dataset,
                       sets=parse_set(sets), tracking_uri=tracking_uri, experiment=experiment, dry_run=dry_run,
                       progress=progress, echo=click.echo, executor_name=executor_name, ray_address=ray_address)
    if result.failed:
        sys.exit(1)


@main.command()
@click.option("--out", default="reports", show_default=True, help="Folder for the report files.")
@click.option("--jobs", default=2, show_default=True, help="Runs in parallel processes.")
@data_options
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None, help="Default: the spec's (cpu).")
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else MLflow's default.")
@click.option("--progress/--no-progress", default=True)
@handle_errors
def quickstart(out, jobs, data_dir, dataset, preset, tracking_uri, progress):
    """The main job: SynthCity, the FCN evaluator, the ablation sweep, the report — on a CPU, in minutes."""
    from cgbench.quickstart import run_quickstart

    run_quickstart(out=out, jobs=jobs, data=data_dir or dataset, preset=preset, tracking_uri=tracking_uri,
                   progress=progress, echo=click.echo)


# --- cgbench eval ------------------------------------------------------------------------


@main.command("eval")
@click.option("--run", "run_id", default=None, metavar="RUN_ID", help="Score a run made by cgbench run.")
@click.option("--images", "images_dir", default=None, metavar="DIR",
              help="Score a folder of generated images (needs --direction). Names: <frame>_leftImg8bit.png / "
                   "<frame>_gtFine_color.png (Cityscapes, and what --save-images writes); the authors' test.py "
                   "names <stem>_fake_A.png (a generated photo: their G_B) / <stem>_fake_B.png (a generated "
                   "label map: their G_A), their <stem>_real_* / _rec_* ignored; a bare index <i> is the i-th "
                   "validation frame in the sorted order of the frames' paths, from 0 (the authors' prepared "
                   "Cityscapes). Found recursively; PNG or JPEG.")
@click.option("--checkpoint", "checkpoint", default=None, metavar="FILE",
              help="Score a generator state dict of the authors' code (latest_net_G_A.pth, ...; needs --arch and "
                   "--direction). On their Cityscapes folders G_A is photo→labels and G_B labels→photo.")
@click.option("--nulls", is_flag=True, help="Score and record the null translators (the floor) of a dataset, "
              "once per dataset, image size and FCN (sweeps do this themselves).")
@click.option("--direction", type=click.Choice(["labels2photo", "photo2labels"]), default=None,
              help="What the images or the checkpoint translate.")
@click.option("--arch", type=click.Choice(["resnet_6blocks", "resnet_9blocks", "unet_128", "unet_256"]),
              default=None, help="The authors' generator architecture of --checkpoint.")
@click.option("--norm", type=click.Choice(["instance", "batch"]), default="instance", show_default=True,
              help="The normalisation of --checkpoint (the authors': instance for CycleGAN, batch for pix2pix).")
@click.option("--image-size", type=int, default=None, metavar="S",
              help="The generator's resolution S (picks the evaluator FCN trained at S). Default: read from "
                   "square images; 128 (the paper's) for --checkpoint and --nulls.")
@click.option("--name", default=None, help="The table row of --images / --checkpoint (default: its name).")
@click.option("--experiment", default="cgbench", show_default=True,
              help="MLflow experiment of the new run (--images, --checkpoint, --nulls).")
@click.option("--allow-partial", is_flag=True, help="--images: score the frames that have an image; the "
              "coverage is recorded.")
@click.option("--prep", type=click.Choice(["clean", "authors"]), default="clean", show_default=True,
              help="--nulls: the data preparation of the runs the floor is for (the cpu preset's clean, the paper "
                   "preset's authors).")
@click.option("--allow-other-val", is_flag=True, help="--run with --data DIR: score on a val split other than the one "
              "the run recorded at training time (recorded with the scores).")
@data_options
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Evaluator to run (repeatable, or comma-separated). Default: fcn and seg (one direction: its "
                   "own). See --list.")
@click.option("--list", "list_evaluators", is_flag=True, help="Show every installed evaluator and exit.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="An evaluator option (repeatable), e.g. --set inception_weights=PATH for fid and kid. See --list.")
@click.option("--fcn", "fcn", default=None, metavar="RUN_ID|PATH",
              help="The evaluator FCN: an FCN run id, a .pt file (checkpoint or bare state dict), or the "
                   "published FCN-8s as caffe:PATH (any PATH ending in .caffemodel). Default: the latest "
                   "finished FCN trained on the same data at the same image size.")
@click.option("--fcn-arch", type=click.Choice(["fcn8s", "fcn_resnet50"]), default=None,
              help="Architecture of a bare state dict given with --fcn (default fcn8s).")
@click.option("--fcn-strict", is_flag=True,
              help="With the published FCN-8s (--fcn caffe:PATH): count its 20th output as a miss and drop no "
                   "image, instead of the public script's arithmetic (which the published numbers contain).")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--samples", "n_samples", type=int, default=4, show_default=True, help="Images in the sample grid.")
@click.option("--save-images", is_flag=True,
              help="--run: also store the translated images as lossless PNGs under the ground truth's file names "
                   "(artifacts eval/<direction>/images/).")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@handle_errors
def eval_(run_id, images_dir, checkpoint, nulls, direction, arch, norm, image_size, name, experiment, allow_partial,
          prep, allow_other_val, data_dir, dataset, metrics, list_evaluators, sets, fcn, fcn_arch, fcn_strict,
          batch_size, device, n_samples, save_images, tracking_uri, progress):
    """Score with the paper's protocol: a trained run, a folder of images, an authors' checkpoint, or
    the null translators; results are recorded in MLflow."""
    from cgbench.errors import CgbenchError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own bar is enough
    if list_evaluators:
        _list_evaluators()
        return
    modes = [m for m, v in (("--run", run_id), ("--images", images_dir), ("--checkpoint", checkpoint),
                            ("--nulls", nulls)) if v]
    if len(modes) != 1:
        raise CgbenchError("give exactly one of --run RUN_ID, --images DIR, --checkpoint FILE or --nulls "
                           "(or --list to show the evaluators)" + (f"; got {', '.join(modes)}" if modes else ""))
    if batch_size < 1:
        raise CgbenchError(f"--batch-size must be >= 1, got {batch_size}")
    if data_dir and dataset:
        raise CgbenchError("give either --data DIR or --dataset synthcity, not both")
    data = data_dir or dataset
    from cgbench.scoring import evaluator_options

    options = evaluator_options(sets)
    if nulls:
        _eval_nulls(data, image_size or 128, prep, metrics, fcn, tracking_uri, experiment, device, progress, options)
        return
    from cgbench import evaluate as ev

    if run_id:
        report = ev.evaluate(run_id, metrics, tracking_uri=tracking_uri, fcn=fcn, fcn_arch=fcn_arch, data=data_dir,
                             batch_size=batch_size, device=device, save_images=save_images, n_samples=n_samples,
                             progress=progress, echo=click.echo, fcn_strict=fcn_strict,
                             allow_other_val=allow_other_val, options=options)
    else:
        if direction is None:
            raise CgbenchError(f"{modes[0]} needs --direction labels2photo or photo2labels")
        req = ev.ExternalRequest(direction, data=data, name=name, experiment=experiment, metrics=metrics,
                                 image_size=image_size, fcn=fcn, fcn_arch=fcn_arch, batch_size=batch_size,
                                 device=device, n_samples=n_samples, allow_partial=allow_partial,
                                 tracking_uri=tracking_uri, progress=progress, fcn_strict=fcn_strict,
                                 options=options)
        if images_dir:
            report = ev.evaluate_images(images_dir, req, echo=click.echo)
        else:
            if arch is None:
                raise CgbenchError("--checkpoint needs --arch (resnet_6blocks, resnet_9blocks, unet_128 or unet_256)")
            report = ev.evaluate_checkpoint(checkpoint, arch, norm, req, echo=click.echo)
    for line in ev.format_report(report):
        click.echo(line)
    from cgbench.tracking import client_for, ui_link

    click.echo(f"Recorded in run {report.run_id} at step {report.step}. See it with: "
               f"{ui_link(client_for(tracking_uri), report.run_id, tracking_uri)}")


def _list_evaluators() -> None:
    from evaluators.base import discover

    errors: dict[str, str] = {}
    installed = discover(errors)
    click.echo(f"{'name':12s} {'direction':13s} {'needs':6s} {'metrics':40s} description")
    for name, cls in installed.items():
        click.echo(f"{name:12s} {cls.direction:13s} {','.join(cls.needs) or '-':6s} "
                   f"{','.join(cls.metrics):40s} {cls.description}")
    for name, error in errors.items():
        click.echo(f"{name:12s} BROKEN: {error}")
    options: dict[str, tuple[list[str], str]] = {}
    for name, cls in installed.items():
        for key, text in cls.options.items():
            options.setdefault(key, ([], text))[0].append(name)
    if options:
        click.echo("options (--set KEY=VALUE):")
    for key, (names, text) in sorted(options.items()):
        click.echo(f"  {key} ({', '.join(names)}): {text}")


def _eval_nulls(data, image_size, prep, metrics, fcn, tracking_uri, experiment, device, progress, options) -> None:
    from cgbench.nulls import ensure_nulls

    found = ensure_nulls(data or "synthcity", image_size, metrics, fcn=fcn, tracking_uri=tracking_uri,
                         experiment=experiment, device=device, progress=progress, echo=click.echo, prep=prep,
                         options=options)
    client_rows = ", ".join(f"{row} (run {run_id[:8]})" for row, run_id in found.items())
    click.echo(f"Null rows recorded: {client_rows}.")


# --- cgbench fcn -------------------------------------------------------------------------


@main.group()
def fcn() -> None:
    """The evaluator network behind the FCN score."""


@fcn.command("train")
@data_options
@config_options
@click.option("--arch", type=click.Choice(["fcn8s", "fcn_resnet50"]), default=None,
              help="Segmenter architecture (config key fcn_arch). Default: fcn8s.")
@click.option("--epochs", type=float, default=None, help="Passes over the training photos (fcn_epochs).")
@click.option("--run-name", default=None, help="MLflow run name. Default: fcn-<arch>-<size>px-seed<N>.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@handle_errors
def fcn_train(data_dir, dataset, preset, config_file, sets, seed, experiment, tracking_uri, arch, epochs,
              run_name, progress):
    """Train the FCN on real photos resized to the generator's resolution and back; log its ceiling."""
    from cgbench.fcn import train_fcn

    preset = preset or default_preset()
    config = resolve_config(preset, config_file, sets, data_dir, dataset, seed=seed, fcn_arch=arch,
                            fcn_epochs=epochs)
    click.echo(f"Preset {preset}; {config.fcn_arch} (width {config.fcn_width}) at image size {config.image_size}, "
               f"{config.fcn_epochs:g} epochs, seed {config.seed}.")
    result = train_fcn(config, tracking_uri=tracking_uri, experiment=experiment, preset=preset, run_name=run_name,
                       progress=progress, echo=click.echo)
    m = result.ground_truth.metrics
    click.echo(f"FCN run {result.run_id} finished after {result.iterations} iterations ({result.seconds:.1f} s). "
               f"Ground truth (real val photos): per-pixel {m['per_pixel_acc']:.3f}, per-class "
               f"{m['per_class_acc']:.3f}, IoU {m['class_iou']:.3f}.")


# --- cgbench report ----------------------------------------------------------------------


@main.command()
@click.option("--experiment", default=None, help="Report every finished, evaluated run of this MLflow experiment. "
              "Default: cgbench.")
@click.option("--sweep", "sweep_run_id", default=None, metavar="RUN_ID",
              help="Report the runs of this sweep (the children of its parent run).")
@click.option("--table", "tables", default="all", show_default=True, metavar="1|2|3|4|5|all",
              help="The paper's tables to fill (comma-separated allowed); all: Tables 2-5. Table 1, the "
                   "perceptual study (cgbench study), when named.")
@click.option("--out", default="reports", show_default=True, metavar="DIR",
              help="Folder for <name>.md, .tex, .csv and .html.")
@click.option("--name", default=None, help="File name stem. Default: the experiment or sweep name.")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default.")
@click.option("--log/--no-log", "log_to_mlflow", default=True, show_default=True,
              help="Also log the files as artifacts of a report run in the same experiment.")
@handle_errors
def report(experiment, sweep_run_id, tables, out, name, tracking_uri, log_to_mlflow):
    """The paper's Tables 2-5 from MLflow runs: mean, 95% interval and Welch's test over seeds
    (and Table 1, the perceptual study, with --table 1)."""
    from cgbench.paths import check_creatable
    from cgbench.report import build_report

    check_creatable(out, "--out")  # before any run is read
    result = build_report(tracking_uri=tracking_uri, experiment=experiment, sweep_run_id=sweep_run_id,
                          tables=tables, out_dir=out, name=name, log_to_mlflow=log_to_mlflow)
    click.echo(result.markdown)
    click.echo("Wrote " + ", ".join(str(p) for p in result.files)
               + (f"; logged in MLflow run {result.run_id}." if result.run_id else "."))


# --- cgbench study ------------------------------------------------------------------------

STUDY_DIRECTIONS = ("labels2photo", "photo2labels")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def study_options(fn: Callable) -> Callable:
    fn = click.option("--tracking-uri", default=None,
                      help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default.")(fn)
    fn = click.option("--study-dir", default=None, metavar="DIR",
                      help="The study's database and image cache. Default: study/ beside the MLflow store.")(fn)
    fn = click.option("--direction", type=click.Choice(STUDY_DIRECTIONS), default="labels2photo",
                      show_default=True, help="Which translations are judged.")(fn)
    return fn


@main.group()
def study() -> None:
    """The paper's Table 1: a real-vs-fake perceptual study, served as a local web page."""


@study.command("serve")
@click.option("--run", "run_ids", multiple=True, metavar="RUN_ID",
              help="A method's run (repeatable); each new participant gets the one with the fewest "
                   "completed sessions.")
@study_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than this machine's loopback opens the study to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: a free port.")
@click.option("--device", default="auto", show_default=True, help="Where the images are generated (once per run).")
@handle_errors
def study_serve(run_ids, direction, study_dir, tracking_uri, host, port, device):
    """Serve the study: per participant, 10 practice trials with feedback, then 40 scored ones."""
    from cgbench.study.server import serve

    if host not in LOCAL_HOSTS:
        click.echo(f"warning: serving on {host}: anyone who can reach this machine on port {port} can take part "
                   "and see the study's images", err=True)
    serve(run_ids, direction, host, port, tracking_uri, study_dir, device, echo=click.echo)


@study.command("results")
@study_options
@handle_errors
def study_results(direction, study_dir, tracking_uri):
    """Write each method's fooled rate (completed sessions only) into its run as MLflow metrics."""
    from cgbench.study.results import study_results as compute

    results = compute(direction, tracking_uri, study_dir)
    click.echo(f"{'run':34s} {'participants':>12s}  fooled rate (% of scored trials, mean ± s.e.)")
    for r in results:
        click.echo(f"{r.run_id:34s} {r.n:12d}  {r.fooled_rate:.1f}" + (f" ± {r.sem:.1f}" if r.n > 1 else ""))
    click.echo(f"Recorded as study/{direction}/fooled_rate, _sem and _participants in each run; "
               "tabulate with: cgbench report --table 1")


if __name__ == "__main__":  # pragma: no cover
    main()
