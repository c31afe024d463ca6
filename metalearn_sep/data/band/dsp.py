"""Signal building blocks of the band: band-limited oscillators, envelopes, noise textures and the render window.

Every sound is a function of continuous time sampled at ``t = n / rate``, and partials above
the window's ``cap`` (``BAND_EDGE * rate``, at most ``MAX_FREQ``) are dropped, so nothing
aliases and every rate samples the same band-limited signal. Phases are reduced to one
cycle in float64 and the rest is computed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .common import BAND_EDGE, MAX_FREQ, NOISE, stream

TWO_PI = 2.0 * math.pi
_NOISE_PERIOD = 1  # seconds; noise textures are periodic with this period


def frac(cycles: np.ndarray) -> np.ndarray:
    """The phase within the cycle, ``cycles mod 1``, in float32 (reduced in the input's precision)."""
    return (cycles - np.floor(cycles)).astype(np.float32)


def sin(cycles: np.ndarray) -> np.ndarray:
    """``sin(2π cycles)`` in float32, accurate for any phase (reduced modulo one cycle first)."""
    return np.sin(np.float32(TWO_PI) * frac(cycles))


def dsf(cycles: np.ndarray, freq: np.ndarray | float, a: np.ndarray | float, cap: float) -> np.ndarray:
    """A band-limited harmonic tone: ``Σ_k a^k sin(2π k c)`` over partials ``k f <= cap``, RMS ~ 1/√2.

    Moorer's discrete summation formula gives the sum of the first ``N`` partials in closed
    form, ``[a sin φ - a^{N+1} sin((N+1)φ) + a^{N+2} sin(Nφ)] / (1 - 2a cos φ + a²)``, so
    the cost does not grow with the number of partials. With ``K = floor(cap / f)``
    partials fit; the top one fades in as it moves away from ``cap`` (its weight is a
    smoothstep of ``frac(cap / f)``), so a gliding or vibrating ``f`` never switches a
    partial on or off abruptly. ``f`` (Hz) and ``a`` (the brightness, < 0.98) may vary per
    sample, like ``cycles`` (the fundamental's phase in cycles; all broadcast together).
    The phase is reduced to one cycle in float64, the rest is float32 (the partial phases
    ``k c`` then err by under 1e-4 cycle).
    """
    x = np.float32(cap) / np.asarray(freq, dtype=np.float32)  # how many partials fit
    k = np.floor(x)  # K, the top partial
    g = x - k
    g = g * g * (3 - 2 * g)  # the top partial's weight
    a = np.asarray(a, dtype=np.float32)
    ak = np.exp(k * np.log(a))  # a^K
    c = frac(cycles)
    s1 = sin(c)  # sin φ
    c1 = sin(c + np.float32(0.25))  # cos φ
    sk = sin(k * c)  # sin Kφ
    sk1 = sin((k - 1) * c)  # sin (K-1)φ
    head = (a * s1 + ak * a * sk1 - ak * sk) / (1 + a * a - 2 * a * c1)  # the first K - 1 partials
    return (head + g * ak * sk) * (np.sqrt(1 - a * a) / a)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """``3x² - 2x³`` on ``x`` clipped to [0, 1]: 0 to 1 with zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def envelope(
    t: np.ndarray, attack: float, length: float, release: float, decay: float = math.inf, sustain: float = 1.0
) -> np.ndarray:
    """Smoothstep attack, exponential decay towards ``sustain``, exponential release after ``length`` (all seconds)."""
    env = smoothstep(t / attack)
    if math.isfinite(decay):
        env = env * (sustain + (1 - sustain) * np.exp(-t / decay))
    return env * np.exp(-np.maximum(t - length, 0.0) / release)


def highpass(cutoff: float, order: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """A magnitude response ``(f/cutoff)^order / (1 + (f/cutoff)^order)`` (Hz), for :meth:`Canvas.noise`."""
    return lambda f: (f / cutoff) ** order / (1 + (f / cutoff) ** order)


def bandpass(centre: float, octaves: float) -> Callable[[np.ndarray], np.ndarray]:
    """A magnitude response around ``centre`` Hz, halved ``octaves`` octaves away, for :meth:`Canvas.noise`."""
    return lambda f: 1 / (1 + (np.log2(f / centre) / octaves) ** 2)


class Canvas:
    """What one render covers: samples ``[first, end)`` of the song at one rate, and its noise textures.

    Sample indices ``n`` are absolute (time ``n / rate`` from the song's start); buffers hold
    the window only, ``(channels, end - first)``.

    Attributes:
        seed: the song.
        rate: Hz.
        first, end: the window, in samples.
        loop: s; length of one pass of the arrangement.
        channels: 1 (mono) or 2 (stereo).
        cap: Hz; the highest frequency rendered.
    """

    def __init__(self, seed: int, rate: int, first: int, samples: int, stereo: bool, loop: float) -> None:
        self.seed, self.rate, self.first, self.end, self.loop = seed, rate, first, first + samples, loop
        self.channels = 2 if stereo else 1
        self.cap = min(BAND_EDGE * rate, MAX_FREQ)
        self._textures: dict[str, np.ndarray] = {}

    def times(self, start: float, length: float) -> tuple[int, np.ndarray] | None:
        """First sample and local times ``n / rate - start`` (float64) of ``[start, start + length)`` in the window."""
        first = max(self.first, math.ceil(start * self.rate))
        end = min(self.end, math.ceil((start + length) * self.rate))
        if end <= first:
            return None
        return first, np.arange(first, end) / self.rate - start

    def occurrences(self, start: float) -> list[float]:
        """The times an event of one pass of the arrangement happens before the window's end."""
        end = self.end / self.rate
        return [start + r * self.loop for r in range(math.ceil(end / self.loop) + 1) if start + r * self.loop < end]

    def add(self, out: np.ndarray, start: int, y: np.ndarray, pan: float) -> None:
        """Mix mono ``y``, starting at sample ``start``, into the window ``out``.

        Pan gains are ``(1 - pan, 1 + pan)`` in stereo (``pan`` clipped to -1 .. 1), 1 in mono.
        """
        first, end = max(start, self.first), min(start + len(y), self.end)
        if end <= first:
            return
        y = y[first - start : end - start]
        first, end = first - self.first, end - self.first  # in the window
        if self.channels == 1:
            out[0, first:end] += y
        else:
            pan = min(max(pan, -1.0), 1.0)
            out[0, first:end] += (1 - pan) * y
            out[1, first:end] += (1 + pan) * y

    def noise(self, name: str, shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """A periodic noise texture with magnitude spectrum ``shape(f)``, of unit expected RMS before band-limiting.

        Its Fourier coefficients (bins ``k / _NOISE_PERIOD`` Hz) are complex Gaussians drawn in
        order of frequency from the seed and the texture's name; only those up to ``cap`` are
        drawn and kept, so every rate gets the same noise, band-limited. Returns one period,
        ``(rate * _NOISE_PERIOD,)`` float32, computed once per name and window.
        """
        if name not in self._textures:
            rng = stream(self.seed, NOISE, sum(ord(ch) << (8 * i) for i, ch in enumerate(name)))
            freqs = np.arange(1, int(MAX_FREQ * _NOISE_PERIOD) + 1) / _NOISE_PERIOD
            gains = shape(freqs)
            gains /= 2 * np.sqrt(np.sum(gains**2))  # E|c_k|^2 = 2 gain_k^2; RMS^2 = 2 Σ E|c_k|^2 = 1
            keep = int(np.sum(freqs <= self.cap))
            draws = rng.standard_normal(2 * keep)
            period = self.rate * _NOISE_PERIOD
            spectrum = np.zeros(period // 2 + 1, complex)
            spectrum[1 : keep + 1] = (draws[0::2] + 1j * draws[1::2]) * gains[:keep]
            self._textures[name] = (np.fft.irfft(spectrum, period) * period).astype(np.float32)
        return self._textures[name]

    def texture(self, texture: np.ndarray, start: int, count: int) -> np.ndarray:
        """Samples ``start .. start + count - 1`` of a periodic texture."""
        return texture[np.arange(start, start + count) % len(texture)]
