"""Tiny MUSDB18 / MUSDB18-HQ folders for tests: real layouts, fake songs, nothing downloaded.

Every fake song is a deterministic function of its name: each (stem, channel) is its own
low-passed noise (below ``CUTOFF`` Hz, so it survives AAC and 8 kHz resampling), scaled so
that stem ``s`` has standard deviation ``LEVELS[s]``. Independent noises make every stem
recognisable (a stem correlates only with itself, and only when aligned) and the levels
make the ``SOURCES`` order visible. The file mixture is ``MIX_GAIN`` times the sum of the
stems, so it differs from the sum, as MUSDB18's mastered mixture does.

Use :func:`write_hq` / :func:`write_stems` with a mapping ``{"train/Artist - Title": seconds}``.
:func:`write_band_hq` / :func:`write_band_stems` write songs of the synthetic band instead
(:func:`band_stems`: music, which a separator can learn, not noise), their file mixture the
exact sum of the stems. An instrument may rest for a whole short song, which museval refuses.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from metalearn_sep import SOURCES
from metalearn_sep.data import musdb_folder

RATE = musdb_folder.RATE
CUTOFF = 3000.0
LEVELS = {"drums": 0.02, "bass": 0.04, "other": 0.06, "vocals": 0.08}
MIX_GAIN = 0.9


def fake_stems(name: str, seconds: float, rate: int = RATE) -> np.ndarray:
    """The stems of song ``name``: ``(4, time, 2)`` float64 in SOURCES order."""
    n = int(round(seconds * rate))
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    spectrum = np.fft.rfft(rng.standard_normal((len(SOURCES), 2, n)), axis=-1)
    spectrum[..., np.fft.rfftfreq(n, 1 / rate) > CUTOFF] = 0
    noise = np.fft.irfft(spectrum, n, axis=-1)
    noise /= noise.std(axis=-1, keepdims=True)
    levels = np.array([LEVELS[s] for s in SOURCES])[:, None, None]
    return (levels * noise).transpose(0, 2, 1)


def write_hq(root: Path, songs: dict[str, float], channels: int = 2, *, render=fake_stems, mix_gain: float = MIX_GAIN) -> Path:
    """:func:`metalearn_sep.data.musdb_folder.write_hq` with the fake noise songs by default."""
    return musdb_folder.write_hq(root, songs, channels, render=render, mix_gain=mix_gain)


def write_stems(root: Path, songs: dict[str, float], *, render=fake_stems, mix_gain: float = MIX_GAIN) -> Path:
    """:func:`metalearn_sep.data.musdb_folder.write_stems` with the fake noise songs by default."""
    return musdb_folder.write_stems(root, songs, render=render, mix_gain=mix_gain)


band_stems = musdb_folder.band_stems
write_band_hq = musdb_folder.write_hq
"""MUSDB18-HQ folders of synthetic-band songs, mixture = sum of the stems."""
write_band_stems = musdb_folder.write_stems
"""MUSDB18 ``.stem.mp4`` files of synthetic-band songs, mixture = sum of the stems."""
