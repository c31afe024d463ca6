"""Audio I/O, resampling, lengths and levels.

Files are read and written with soundfile (``torchaudio.load/save`` need TorchCodec
since torchaudio 2.9 and are not used). Tensors are channel-first ``(channel, time)``.
Every write is atomic: the file appears complete or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .atomic import atomic_write
from .checks import check_rate, check_waveform


def read_audio(path: str | os.PathLike, start: float = 0.0, duration: float | None = None) -> tuple[torch.Tensor, int]:
    """Read an audio file (WAV, FLAC, OGG, ...) as ``(channel, time)`` float32 and its rate.

    ``start`` and ``duration`` (seconds) read only an excerpt, seeking in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Audio file {path} does not exist.")
    try:
        info = sf.info(str(path))
        first = int(round(start * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        data, rate = sf.read(str(path), start=first, frames=frames, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        raise ValueError(f"Cannot read {path} as audio: {err}.") from None
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def write_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``(channel, time)`` audio to ``path`` (format from the extension), atomically.

    WAV files are written as 32-bit float by default, so loud estimates never clip.
    """
    sample_rate = check_rate(sample_rate)
    check_waveform(audio, "audio", ndim=2)
    data = audio.detach().cpu().float().numpy().T
    ext = Path(path).suffix.lstrip(".").upper() or "WAV"
    if subtype is None and ext == "WAV":
        subtype = "FLOAT"
    return atomic_write(path, lambda tmp: sf.write(tmp, data, sample_rate, format=ext, subtype=subtype))


KAISER_BEST = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.769656459379492,
}
"""torchaudio's settings that match librosa's (resampy's) ``res_type="kaiser_best"`` filter, the one the
original Meta-TasNet evaluation resamples with (the figures are from torchaudio's resampling tutorial)."""

RESAMPLERS: dict[str, dict[str, object]] = {"hann": {}, "kaiser_best": KAISER_BEST}
"""Resampling filters by name: ``"hann"`` is torchaudio's default (a Hann-windowed sinc, 6 zero
crossings), what the course trains and separates with; ``"kaiser_best"`` (64 zero crossings, a Kaiser
window) has a sharper cut-off, at about the same speed in torchaudio."""


def resample(x: torch.Tensor, orig_rate: int, new_rate: int, method: str = "hann") -> torch.Tensor:
    """Band-limited resampling along the last axis with torchaudio (``method``: a key of :data:`RESAMPLERS`).

    The output has ``ceil(T new_rate / orig_rate)`` samples; at equal rates ``x`` is returned as is.
    """
    orig_rate, new_rate = check_rate(orig_rate, "orig_rate"), check_rate(new_rate, "new_rate")
    if method not in RESAMPLERS:
        raise ValueError(f"Unknown resampling method {method!r}: expected one of {', '.join(RESAMPLERS)}.")
    if orig_rate == new_rate:
        return x
    return AF.resample(x.contiguous(), orig_rate, new_rate, **RESAMPLERS[method])  # torchaudio views its input


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad the last axis of ``x`` to ``length`` samples."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def unit_scale(x: torch.Tensor) -> torch.Tensor:
    """The standard deviation of ``x`` over its last axis (kept, size 1), and 1 where ``x`` is silent."""
    std = x.std(dim=-1, keepdim=True)
    return torch.where(std > 0, std, torch.ones_like(std))


def unit_level(x: torch.Tensor) -> torch.Tensor:
    """``x`` divided by its standard deviation over the last axis: the level every model of the course sees.

    The separation losses are scale invariant but a network's input level is not: the
    original code normalises every track this way before training and separation, and so
    do the course's objective, its spectrogram statistics and :func:`~metalearn_sep.separate.separate`.
    A silent signal stays silent (it is divided by 1).
    """
    return x / unit_scale(x)


def to_mono(x: torch.Tensor) -> torch.Tensor:
    """Average the channel axis (-2), keeping it: ``(..., channel, time) -> (..., 1, time)``."""
    return x.mean(dim=-2, keepdim=True)
