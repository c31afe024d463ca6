"""Oracle time-frequency masks: the upper bound a mask-based model can chase.

An oracle knows the true stems and builds, on the mixture's STFT ``X``, the mask that
best recovers each stem, then inverts it: ``ŝ_i = iSTFT(M_i ⊙ X)``.

* ideal binary mask (IBM): ``M_i = 1`` where stem i is the loudest, else 0;
* ideal ratio mask (IRM): ``M_i = |S_i|^p / Σ_j |S_j|^p`` (``p = 2`` is the "Wiener-like"
  power ratio that sigsep's oracle scripts use by default; ``p = 1`` the magnitude ratio).

Learned time-domain models (Conv-TasNet and successors) are not bound by these masks,
but on real music the IRM is still a useful yardstick.
"""

from __future__ import annotations

import torch

from .checks import check_waveform

MASKS = ("ibm", "irm")


def _stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(flat, n_fft, hop, window=window, center=True, return_complex=True)
    return spec.reshape(*x.shape[:-1], *spec.shape[-2:])


def oracle_masks(stems: torch.Tensor, kind: str = "irm", n_fft: int = 1024, hop: int | None = None, power: float = 2.0) -> torch.Tensor:
    """The oracle masks of ``stems`` ``(source, channel, time)`` -> ``(source, channel, freq, frame)``."""
    if kind not in MASKS:
        raise ValueError(f"Unknown oracle mask {kind!r}: expected one of {', '.join(MASKS)}.")
    check_waveform(stems, "stems", ndim=3)
    hop = hop or n_fft // 4
    mags = _stft(stems, n_fft, hop).abs()
    if kind == "ibm":
        return torch.nn.functional.one_hot(mags.argmax(0), stems.shape[0]).movedim(-1, 0).to(stems.dtype)
    weights = mags.pow(power)
    total = weights.sum(0, keepdim=True)
    return torch.where(total > 0, weights / total.clamp_min(torch.finfo(stems.dtype).tiny), 1.0 / stems.shape[0])


def oracle_separate(stems: torch.Tensor, kind: str = "irm", n_fft: int = 1024, hop: int | None = None, power: float = 2.0) -> torch.Tensor:
    """Separate the mixture of ``stems`` with its oracle masks.

    Args:
        stems: the true stems ``(source, channel, time)``; the mixture is their sum.
        kind: ``"ibm"`` or ``"irm"``.
        n_fft: STFT size (Hann window, hop ``n_fft // 4`` by default).
        power: the IRM's exponent p.

    Returns:
        ``(source, channel, time)`` estimates; they sum to the mixture (up to the iSTFT's
        rounding) because the masks sum to one in every bin.
    """
    hop = hop or n_fft // 4
    masks = oracle_masks(stems, kind, n_fft, hop, power)
    mix = _stft(stems.sum(0), n_fft, hop)
    est = masks * mix.unsqueeze(0)
    window = torch.hann_window(n_fft, dtype=stems.dtype, device=stems.device)
    flat = est.reshape(-1, *est.shape[-2:])
    out = torch.istft(flat, n_fft, hop, window=window, center=True, length=stems.shape[-1])
    return out.reshape(stems.shape)
