"""Training objectives built on SI-SNR.

Conv-TasNet is trained to maximise SI-SNR (Luo & Mesgarani 2019, eq. 15: SI-SDR after
removing each signal's mean). In music a stem is often silent in a crop; its SI-SNR is
undefined (there is no target to scale), so silent references are left out of the
average, as the Meta-TasNet code does with its presence mask.
"""

from __future__ import annotations

import torch

from .metrics import si_sdr


def presence(stems: torch.Tensor) -> torch.Tensor:
    """Which stems are present (not exactly silent): ``(batch, source, ...)`` -> ``(batch, source)`` bool."""
    return stems.flatten(2).abs().amax(-1) > 0


def si_snr_loss(
    estimates: torch.Tensor, references: torch.Tensor, present: torch.Tensor | None = None, zero_mean: bool = True
) -> torch.Tensor:
    """Negative SI-SNR, averaged over every (example, source, channel) whose reference is present.

    Args:
        estimates: ``ŝ``, ``(batch, source, channel, time)``.
        references: ``s``, the same shape.
        present: ``(batch, source)`` bool; default :func:`presence` of ``references``.
        zero_mean: remove means first (SI-SNR); ``False`` gives SI-SDR as the Meta-TasNet code uses.

    Returns:
        A scalar; 0 when no reference in the batch is present.
    """
    if present is None:
        present = presence(references)
    values = si_sdr(estimates, references, zero_mean=zero_mean)  # (batch, source, channel)
    weight = present.to(values.dtype).unsqueeze(-1).expand_as(values)
    return -(values * weight).sum() / weight.sum().clamp(min=1)
