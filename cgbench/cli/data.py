"""``cgbench data``: datasets (SynthCity, generated)."""

from __future__ import annotations

import click

from cgbench.cli.common import handle_errors


@click.group()
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
