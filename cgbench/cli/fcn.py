"""``cgbench fcn``: the evaluator network behind the FCN score."""

from __future__ import annotations

import click

from cgbench.cli.common import config_options, data_options, default_preset, handle_errors, resolve_config


@click.group()
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
