"""Training methods. A new method is one module defining a :class:`Method` plus one line here."""

from __future__ import annotations

from cgbench.errors import ConfigError
from cgbench.methods.base import Method
from cgbench.methods.cyclegan import CycleGAN

METHODS: dict[str, type[Method]] = {m.name: m for m in (CycleGAN,)}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]
