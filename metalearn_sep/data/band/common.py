"""Constants and random streams shared by the band's composition, rendering and dataset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

BAND_EDGE = 0.45
"""Partials above ``BAND_EDGE * sample_rate`` are dropped (0.45 * 44.1 kHz = 19.8 kHz)."""
MAX_FREQ = 20_000.0
"""No sound has content above this frequency (Hz), whatever the rate."""
MAX_PEAK = 0.95
"""The mixture never exceeds this absolute value."""
LOOP_BARS = 8
"""Bars in one pass of a song's arrangement; longer renders repeat it."""

# Independent random streams of a seed: np.random.default_rng([seed, stream, ...]), so adding
# draws to one stream (say the vocals) leaves every other part of every song unchanged.
SONG, DRUMS, BASS, OTHER, VOCALS, NOISE, CROP = range(7)

T = TypeVar("T")


def stream(seed: int, *ids: int) -> np.random.Generator:
    """The random stream ``ids`` of song ``seed``."""
    return np.random.default_rng([seed, *ids])


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw from ``[low, high)`` as a Python float."""
    return float(rng.uniform(low, high))


def pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]
