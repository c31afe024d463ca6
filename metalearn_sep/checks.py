"""Argument checks: each raises ``ValueError`` with one sentence naming what was expected and what came.

Every public entry point of the package checks its arguments with these before doing any
work, so a bad value fails early and clearly instead of deep inside torch, numpy or musdb.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch


def is_int(value: object, low: int | None = None) -> bool:
    """``value`` is an integer (Python or numpy, not a bool), and at least ``low`` when given."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        return False
    return low is None or value >= low


def check_int(value: object, name: str, low: int = 1) -> int:
    """``value`` as an int; it must be an integer >= ``low`` (1: positive, 0: non-negative)."""
    if not is_int(value, low):
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer >= {low}")
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return int(value)


def check_seed(seed: object, name: str = "seed") -> int:
    """A random seed: a non-negative integer."""
    return check_int(seed, name, low=0)


def check_rate(sample_rate: object, name: str = "sample_rate") -> int:
    """``sample_rate`` as an int; it must be a positive whole number of Hz (``44100.0`` is accepted)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, Real):
        raise ValueError(f"{name} must be a positive integer number of Hz, got {sample_rate!r}.")
    if not (0 < sample_rate < float("inf")) or int(sample_rate) != sample_rate:
        raise ValueError(f"{name} must be a positive integer number of Hz, got {sample_rate!r}.")
    return int(sample_rate)


def check_duration(duration: object, name: str = "duration") -> float:
    """``duration`` as a float; it must be a positive finite number of seconds."""
    if isinstance(duration, bool) or not isinstance(duration, Real):
        raise ValueError(f"{name} must be a positive number of seconds, got {duration!r}.")
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {duration!r}.")
    return float(duration)


def check_waveform(x: object, name: str = "audio", ndim: int | None = None, channels: int | None = None) -> torch.Tensor:
    """``x`` unchanged; it must be a finite, non-empty floating tensor of the expected rank.

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


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``value``."""
    return -(-value // multiple) * multiple


def check_mono_batch(x: object, stride: int = 1, min_length: int = 1, what: str = "The encoder") -> None:
    """A model's input: a floating ``(batch, 1, T)`` tensor, T a multiple of ``stride`` and at least ``min_length``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] != 1:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} expects a mono waveform of shape (batch, 1, time), got {got}.")
    if not x.is_floating_point():
        raise ValueError(f"{what} expects a floating-point waveform, got {x.dtype}.")
    length = x.shape[-1]
    if length % stride:
        raise ValueError(
            f"The input length must be a multiple of stride={stride} samples, got {length}; "
            f"pad it to {round_up(length, stride)}."
        )
    if length < min_length:
        raise ValueError(f"The input must have at least {min_length} samples, got {length}.")
