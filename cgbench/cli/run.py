"""``cgbench run``: train a method or an ablation, in one process, under DDP (--nproc), or as one
rank of torchrun."""

from __future__ import annotations

import sys

import click

from cgbench.cli.common import config_options, data_options, default_preset, handle_errors, quiet, resolve_config


@click.command()
@data_options
@click.option("--method", default=None, help="Training method (see --list-methods). Default: cyclegan.")
@click.option("--ablation", default=None, help="CycleGAN ablation (see --list-ablations). Default: cyclegan.")
@config_options
@click.option("--iters", type=int, default=None, help="Total iterations (replaces epochs).")
@click.option("--epochs", type=float, default=None, help="Total epochs (replaces iters).")
@click.option("--resume", "resume_run_id", default=None, metavar="RUN_ID",
              help="Continue this run from its last checkpoint, with its recorded config (with --data DIR: its "
                   "dataset, moved to DIR; the same training and validation data is checked).")
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
        given = [n for n, v in (("--method", method), ("--ablation", ablation), ("--preset", preset),
                                ("--config", config_file), ("--set", sets), ("--seed", seed), ("--iters", iters),
                                ("--epochs", epochs)) if v]
        if given:
            raise ConfigError(f"--resume continues a run with its recorded config; drop {', '.join(given)} (--data "
                              "may name the folder its dataset moved to)")
        if data_dir and dataset:
            raise ConfigError("give either --data DIR or --dataset synthcity, not both")
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
                   resume_run_id=resume_run_id, run_name=run_name, progress=progress,
                   data=(data_dir or dataset) if resume_run_id else None)
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
    quiet()
    _train_and_report(options)
