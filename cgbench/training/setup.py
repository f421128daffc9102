"""Everything a run trains with, built before the run is opened: the device and threads, the
training data, the method with its speed settings, and the sampler that makes its batches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from cgbench import distributed
from cgbench.config import Config
from cgbench.data import datasets
from cgbench.data.layouts import Split, load_split
from cgbench.data.sampler import PairedSampler, UnpairedSampler
from cgbench.devices import resolve_device
from cgbench.errors import ConfigError, DataError
from cgbench.methods import get_method
from cgbench.methods.base import Method
from cgbench.speed import accelerate


@dataclass
class TrainingData:
    ref: datasets.DatasetRef
    split: Split
    labels_rgb: torch.Tensor  # (N, 3, L, L) uint8 colour label maps (every label's colour): domain X
    photos: torch.Tensor  # (N, 3, L, L) uint8: domain Y


def load_training_data(config: Config, echo: Callable[[str], None] = print) -> TrainingData:
    ref = datasets.resolve(config.data, config.image_size, echo=echo)
    split = load_split(ref.root, "train", size=config.load_size, prep=config.prep)
    if len(split.photos) < 2:
        raise DataError(f"the training split of {ref.root} has {len(split.photos)} images; it needs at least 2")
    return TrainingData(ref, split, split.label_colors, split.photos)


def check_network_input(method: Method, config: Config) -> None:
    """Fail early, in one line, when the networks cannot take the image size."""
    probe = torch.zeros(1, 3, config.image_size, config.image_size, device=method.device)
    try:
        with torch.no_grad():
            method.probe(probe)
    except RuntimeError:
        raise ConfigError(
            f"image_size {config.image_size} is too small for the networks (n_layers_d={config.n_layers_d}); "
            "use image_size >= 32 or fewer discriminator layers"
        ) from None


def total_iterations(config: Config, steps_per_epoch: int) -> int:
    return config.iters if config.iters > 0 else max(1, round(config.epochs * steps_per_epoch))


@dataclass
class Setup:
    """Everything a run trains with, built before the run is opened."""

    device: torch.device
    data: TrainingData
    method: Method
    sampler: UnpairedSampler | PairedSampler
    total: int


def prepare(config: Config, ctx: distributed.Context, echo: Callable[[str], None]) -> Setup:
    """Device and threads, the training data, the method (with its speed settings), the sampler."""
    device = resolve_device(config.device)
    if ctx.distributed and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    elif ctx.distributed and device.type == "cpu":  # the local processes share the cores
        local = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    with distributed.rank_zero_first(ctx):  # rank 0 generates SynthCity if it is missing
        data = load_training_data(config, echo=echo)
    torch.manual_seed(config.seed)
    method = get_method(config.method)(config, device)
    check_network_input(method, config)
    accelerate(method)
    sampler = (PairedSampler if method.paired else UnpairedSampler)(
        data.labels_rgb, data.photos, config.image_size, config.batch_size, config.seed, config.flip, config.disjoint,
        rank=ctx.rank, world_size=ctx.world_size,
    )
    return Setup(device, data, method, sampler, total_iterations(config, sampler.steps_per_epoch))

