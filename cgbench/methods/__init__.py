"""Training methods. A new method is one module defining a :class:`Method` plus one line here."""

from __future__ import annotations

from cgbench.errors import ConfigError
from cgbench.methods.base import Method
from cgbench.methods.bigan import BiGAN
from cgbench.methods.cogan import CoGAN
from cgbench.methods.cyclegan import CycleGAN
from cgbench.methods.feature_gan import FeatureGAN
from cgbench.methods.pix2pix import Pix2Pix
from cgbench.methods.simgan import SimGAN

METHODS: dict[str, type[Method]] = {m.name: m for m in (CycleGAN, Pix2Pix, SimGAN, FeatureGAN, BiGAN, CoGAN)}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]
