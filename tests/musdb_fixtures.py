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
import soundfile as sf

from metalearn_sep import SOURCES

RATE = 44100
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


def band_stems(name: str, seconds: float, rate: int = RATE) -> np.ndarray:
    """Stereo stems of the synthetic band's song seeded by ``name``: ``(4, time, 2)`` float64 in SOURCES order."""
    from metalearn_sep.data.band import synthesize

    stems = synthesize(zlib.crc32(name.encode()), rate, seconds, stereo=True)  # (4, 2, time)
    return stems.double().numpy().transpose(0, 2, 1)


def write_hq(root: Path, songs: dict[str, float], channels: int = 2, *, render=fake_stems, mix_gain: float = MIX_GAIN) -> Path:
    """Write MUSDB18-HQ folders ``root/<subset>/<name>/{mixture,drums,bass,other,vocals}.wav`` (16-bit).

    ``render(name, seconds)`` gives the ``(4, time, 2)`` stems; the mixture is ``mix_gain`` times their sum.
    """
    for key, seconds in songs.items():
        stems = render(Path(key).name, seconds)[..., :channels]
        folder = root / key
        folder.mkdir(parents=True)
        sf.write(folder / "mixture.wav", mix_gain * stems.sum(0), RATE, subtype="PCM_16")
        for source, audio in zip(SOURCES, stems):
            sf.write(folder / f"{source}.wav", audio, RATE, subtype="PCM_16")
    return root


def write_stems(root: Path, songs: dict[str, float], *, render=fake_stems, mix_gain: float = MIX_GAIN) -> Path:
    """Write MUSDB18 files ``root/<subset>/<name>.stem.mp4`` (5 AAC streams) with stempeg/ffmpeg.

    ``render`` and ``mix_gain`` as in :func:`write_hq`.
    """
    import stempeg

    for key, seconds in songs.items():
        stems = render(Path(key).name, seconds)
        path = root / f"{key}.stem.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        streams = np.concatenate([mix_gain * stems.sum(0, keepdims=True), stems])  # stem ids 0-4
        stempeg.write_stems(str(path), streams, sample_rate=RATE)
    return root


def write_band_hq(root: Path, songs: dict[str, float]) -> Path:
    """:func:`write_hq` with synthetic-band songs (:func:`band_stems`), mixture = sum of the stems."""
    return write_hq(root, songs, render=band_stems, mix_gain=1.0)


def write_band_stems(root: Path, songs: dict[str, float]) -> Path:
    """:func:`write_stems` with synthetic-band songs (:func:`band_stems`), mixture = sum of the stems."""
    return write_stems(root, songs, render=band_stems, mix_gain=1.0)
