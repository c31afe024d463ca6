"""Audio I/O, resampling and input checks.

Files are read and written with soundfile (``torchaudio.load/save`` need TorchCodec
since torchaudio 2.9 and are not used). Tensors are channel-first ``(channel, time)``.
Every write is atomic: the file appears complete or not at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


def check_rate(sample_rate: object, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as an int, or raise ``ValueError`` if it is not a positive integer."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float)):
        raise ValueError(f"{name} must be a positive integer number of Hz, got {sample_rate!r}.")
    if sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ValueError(f"{name} must be a positive integer number of Hz, got {sample_rate!r}.")
    return int(sample_rate)


def check_duration(duration: object, name: str = "duration") -> float:
    """Return ``duration`` as a float, or raise ``ValueError`` if it is not a positive finite number of seconds."""
    if isinstance(duration, bool) or not isinstance(duration, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number of seconds, got {duration!r}.")
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {duration!r}.")
    return float(duration)


def check_waveform(x: torch.Tensor, name: str = "audio", ndim: int | None = None, channels: int | None = None) -> torch.Tensor:
    """Raise ``ValueError`` unless ``x`` is a finite, non-empty floating tensor of the expected rank.

    Args:
        x: the waveform; time is the last axis.
        name: what to call it in the message.
        ndim: the expected number of dimensions, if fixed.
        channels: the expected size of axis -2 (the channel axis), if fixed.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}.")
    if channels is not None and (x.dim() < 2 or x.shape[-2] != channels):
        raise ValueError(f"{name} must have {channels} channel(s) on axis -2, got shape {tuple(x.shape)}.")
    if x.numel() == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}).")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite samples.")
    return x


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


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it into place.

    A crash or an exception in ``write`` never leaves a partial file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def resample(x: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling along the last axis with torchaudio (windowed sinc, Hann, width 6)."""
    orig_rate, new_rate = check_rate(orig_rate, "orig_rate"), check_rate(new_rate, "new_rate")
    if orig_rate == new_rate:
        return x
    return AF.resample(x.contiguous(), orig_rate, new_rate)  # torchaudio views its input


def to_mono(x: torch.Tensor) -> torch.Tensor:
    """Average the channel axis (-2), keeping it: ``(..., channel, time) -> (..., 1, time)``."""
    return x.mean(dim=-2, keepdim=True)
