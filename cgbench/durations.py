"""Durations in words, as the sweep and the FCN's preparation print them ("2 min 05 s")."""

from __future__ import annotations

import math


def fmt_seconds(seconds: float) -> str:
    """``seconds`` rounded to whole seconds, in minutes and seconds ("?" when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
