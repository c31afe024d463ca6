"""Rendering a composed song: every part into its stem, silent bars gated, stem gains, the safety rescale."""

from __future__ import annotations

import math

import numpy as np
import torch

from ... import SOURCES
from ...checks import check_duration, check_rate, check_seed
from .common import LOOP_BARS, MAX_PEAK
from .compose import compose
from .dsp import Canvas
from .instruments import render_drums, render_notes
from .singing import render_vocals

_FADE_S = 0.02  # a stem fades out over this long (s) before a bar where it is silent
_RENDERERS = {"drums": render_drums, "vocals": render_vocals}  # any other instrument plays notes


def _gate(canvas: Canvas, silent: frozenset[int], bar_seconds: float, out: np.ndarray) -> None:
    """Zero the stem window ``out`` in every silent bar, fading out over ``_FADE_S`` before each."""
    first_bar = int(canvas.first / canvas.rate / bar_seconds)
    for bar in range(first_bar, math.ceil(canvas.end / canvas.rate / bar_seconds) + 1):
        if bar % LOOP_BARS not in silent:
            continue
        start = max(canvas.first, math.ceil(bar * bar_seconds * canvas.rate))
        stop = min(canvas.end, math.ceil((bar + 1) * bar_seconds * canvas.rate))
        out[:, max(0, start - canvas.first) : max(0, stop - canvas.first)] = 0.0
        fade = canvas.times(bar * bar_seconds - _FADE_S, _FADE_S)
        if fade is not None:
            fade_first, t = fade
            fade_first -= canvas.first  # in the window
            out[:, fade_first : fade_first + len(t)] *= 0.5 + 0.5 * np.cos(np.pi * t / _FADE_S)


def render_window(seed: int, rate: int, first: int, samples: int, stereo: bool) -> torch.Tensor:
    """Stems ``(4, channel, samples)`` float32 of samples ``[first, first + samples)`` of song ``seed``.

    The window is what :func:`synthesize` gives for those samples; only the safety rescale
    (when the mixture would exceed MAX_PEAK) looks at the window alone.
    """
    song = compose(seed)
    canvas = Canvas(seed, rate, first, samples, stereo, song.info.loop_seconds)
    stems = np.zeros((len(SOURCES), canvas.channels, samples), np.float32)
    for part in song.parts:
        _RENDERERS.get(part.instrument, render_notes)(canvas, part, stems[part.stem])
    for j, silent in enumerate(song.silent):
        _gate(canvas, silent, song.info.bar_seconds, stems[j])
        stems[j] *= song.gains[j]
    peak = float(np.abs(stems.sum(0, dtype=np.float64)).max())
    if peak > MAX_PEAK:
        stems *= MAX_PEAK / peak
    return torch.from_numpy(stems)


def synthesize(seed: int, sample_rate: int, duration: float, stereo: bool = False) -> torch.Tensor:
    """Render the four stems of song ``seed``.

    Args:
        seed: non-negative integer; the song (everything musical) depends on it alone.
        sample_rate: Hz, any positive integer (8000, 16000, 32000, 44100, ...).
        duration: seconds; ``round(duration * sample_rate)`` samples.
        stereo: two panned channels instead of one (mono is their mean).

    Returns:
        ``(4, channel, time)`` float32 stems ``s_j`` in SOURCES order; the mixture is ``stems.sum(0)``.
        Deterministic: the same arguments give bit-identical stems, and a shorter render
        is the start of a longer one.
    """
    seed = check_seed(seed)
    rate = check_rate(sample_rate)
    samples = round(check_duration(duration) * rate)
    if samples < 1:
        raise ValueError(f"duration must give at least one sample at {rate} Hz, got {duration!r} s.")
    return render_window(seed, rate, 0, samples, bool(stereo))
