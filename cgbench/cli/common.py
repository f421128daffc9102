"""What every command shares: known errors turned into one line and an exit status, MLflow kept
quiet, the shared options, and the config they resolve to."""

from __future__ import annotations

import functools
import os
import sys
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
    """Known errors (:mod:`cgbench.errors`) become one line on stderr and their exit status; anything
    else is a bug and keeps its traceback. Among several training processes only rank 0 prints it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cgbench.errors import KnownError

        try:
            return fn(*args, **kwargs)
        except KnownError as exc:  # each says its exit status (cgbench.errors)
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def quiet() -> None:
    """Keep MLflow's INFO chatter (store migrations) out of the user's terminal."""
    import logging

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # in case it already was


def options(*decorators: Callable) -> Callable:
    """Several click options as one decorator, listed in ``--help`` in the order given."""

    def apply(fn: Callable) -> Callable:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


data_options = options(
    click.option("--data", "data_dir", type=str, default=None, metavar="DIR",
                 help="A dataset folder: Cityscapes, pix2pix aligned or CycleGAN unaligned layout."),
    click.option("--dataset", type=click.Choice(["synthcity"]), default=None,
                 help="The embedded dataset (generated on first use). The default."),
)

config_options = options(
    click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
                 help="Starting configuration. Default: paper on a CUDA machine, cpu otherwise."),
    click.option("--config", "config_file", type=str, default=None, metavar="FILE.yaml",
                 help="YAML file of config keys (only existing keys)."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one config key."),
    click.option("--seed", type=int, default=None, help="Fixes data order, initialisation and sampling."),
    click.option("--experiment", default="cgbench", show_default=True, help="MLflow experiment name."),
    click.option("--tracking-uri", default=None,
                 help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else MLflow's default."),
)


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
