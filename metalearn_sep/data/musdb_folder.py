"""A MUSDB18 or MUSDB18-HQ folder of synthetic-band songs: the MUSDB18 code path without the dataset.

MUSDB18 cannot ship with the course (it is licensed for research, on request), yet chapter 06
and the tests must run everything that reads it: ``musdb``'s track listing and splits, ffmpeg
decoding of ``.stem.mp4`` files, the decode cache, training and SiSEC scoring. These writers
lay out songs exactly as the two releases do, 44.1 kHz stereo:

- MUSDB18-HQ: ``root/<subset>/<Artist - Title>/{mixture,drums,bass,other,vocals}.wav`` (16-bit PCM);
- MUSDB18: ``root/<subset>/<Artist - Title>.stem.mp4``, five AAC streams (mixture, then the
  stems in :data:`~metalearn_sep.SOURCES` order) written by ``stempeg`` through ffmpeg.

``songs`` maps ``"<subset>/<Artist - Title>"`` to a length in seconds. A song's stems come from
``render(name, seconds)``, by default :func:`band_stems` (the synthetic band seeded by the
name); the mixture is ``mix_gain`` times their sum (1: the exact sum).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import soundfile as sf

from .. import SOURCES

RATE = 44100
"""MUSDB18's sample rate."""

Render = Callable[[str, float], np.ndarray]


def band_stems(name: str, seconds: float, rate: int = RATE) -> np.ndarray:
    """Stereo stems of the synthetic band's song seeded by ``name``: ``(4, time, 2)`` float64 in SOURCES order."""
    from .band import synthesize

    stems = synthesize(zlib.crc32(name.encode()), rate, seconds, stereo=True)  # (4, 2, time)
    return stems.double().numpy().transpose(0, 2, 1)


def write_hq(root: Path, songs: Mapping[str, float], channels: int = 2, *, render: Render = band_stems,
             mix_gain: float = 1.0) -> Path:
    """Write MUSDB18-HQ folders under ``root`` (``channels`` 2, or 1 for a malformed copy); returns ``root``."""
    root = Path(root)
    for key, seconds in songs.items():
        stems = render(Path(key).name, seconds)[..., :channels]
        folder = root / key
        folder.mkdir(parents=True)
        sf.write(folder / "mixture.wav", mix_gain * stems.sum(0), RATE, subtype="PCM_16")
        for source, audio in zip(SOURCES, stems):
            sf.write(folder / f"{source}.wav", audio, RATE, subtype="PCM_16")
    return root


def write_stems(root: Path, songs: Mapping[str, float], *, render: Render = band_stems, mix_gain: float = 1.0) -> Path:
    """Write MUSDB18 ``.stem.mp4`` files under ``root`` (needs ffmpeg); returns ``root``."""
    import stempeg

    root = Path(root)
    for key, seconds in songs.items():
        stems = render(Path(key).name, seconds)
        path = root / f"{key}.stem.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        streams = np.concatenate([mix_gain * stems.sum(0, keepdims=True), stems])  # stem ids 0-4
        stempeg.write_stems(str(path), streams, sample_rate=RATE)
    return root
