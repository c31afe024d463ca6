"""Integrated loudness (ITU-R BS.1770) and loudness matching, for fair blind comparisons.

In a listening test the louder of two otherwise equal clips tends to be preferred and is
easy to recognise, so :class:`~metalearn_sep.listen.ABX` plays its systems at the same
*integrated loudness*: the K-weighted, gated mean square of ITU-R BS.1770-4 in LUFS (one
LU = one dB). Peak or RMS matching would not do: a bright estimate with bleeding hi-hats
sounds louder than a dull one of the same RMS, which is what the K-weighting (a high
shelf near 1.5 kHz and a high pass near 38 Hz) models.

The meter is pyloudnorm's (Steinmetz & Reiss, 2021), a maintained implementation of
BS.1770-4 checked against the standard's example signals; a 997 Hz sine at 0 dBFS in one
channel reads -3.01 LUFS per the standard (-3.05 measured with pyloudnorm at 48 kHz,
within the standard's 0.1 LU tolerance). Matching only ever turns clips *down* (to the
quietest one), so it adds no clipping that was not there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyloudnorm
import torch

from ..checks import check_rate
from ..plots import as_waveform

BLOCK_SECONDS = 0.4
"""BS.1770's gating block: a clip must last at least this long to have a loudness."""

ABSOLUTE_GATE_LUFS = -70.0
"""BS.1770's absolute gate: blocks quieter than this are ignored; a clip with none above it is silent."""


def integrated_loudness(audio: torch.Tensor | np.ndarray, sample_rate: int) -> float:
    """The integrated loudness of ``(channel, time)`` audio (1 or 2 channels) in LUFS.

    Raises ValueError for a clip shorter than one 400 ms block or with no block above the
    -70 LUFS absolute gate (silent: its loudness is undefined, and no gain can match it).
    """
    sample_rate = check_rate(sample_rate)
    x = as_waveform(audio, "audio", (2,), "(channel, time) with 1 or 2 channels")
    if x.shape[0] not in (1, 2):
        raise ValueError(f"audio must have 1 or 2 channels, got shape {tuple(x.shape)}.")
    if x.shape[-1] < BLOCK_SECONDS * sample_rate:
        raise ValueError(f"Loudness needs at least {BLOCK_SECONDS} s of audio (one BS.1770 block), "
                         f"got {x.shape[-1] / sample_rate:.3f} s.")
    lufs = pyloudnorm.Meter(sample_rate).integrated_loudness(x.double().numpy().T)
    if not np.isfinite(lufs) or lufs < ABSOLUTE_GATE_LUFS:
        raise ValueError(f"The clip is silent (no 400 ms block above {ABSOLUTE_GATE_LUFS:.0f} LUFS), "
                         "so its loudness is undefined and it cannot be level-matched.")
    return float(lufs)


def match_loudness(clips: Sequence[torch.Tensor | np.ndarray], sample_rate: int) -> tuple[list[torch.Tensor], list[float]]:
    """The clips turned down to the integrated loudness of the quietest, and the gains applied (dB).

    Args:
        clips: ``(channel, time)`` each, at ``sample_rate``.

    Returns:
        ``(matched clips, gains in dB)``: every matched clip measures the same LUFS (to the
        meter's precision); each gain is <= 0.
    """
    if not clips:
        raise ValueError("match_loudness needs at least one clip.")
    tensors = [as_waveform(c, f"clip {i}", (2,), "(channel, time)") for i, c in enumerate(clips)]
    levels = [integrated_loudness(c, sample_rate) for c in tensors]
    target = min(levels)
    gains_db = [target - level for level in levels]
    return [c * 10 ** (g / 20) for c, g in zip(tensors, gains_db)], gains_db
