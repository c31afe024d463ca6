"""Separation metrics: SI-SDR for training and chapters, museval's SDR for MUSDB18 figures.

* :func:`si_sdr` — scale-invariant SDR (Le Roux et al., ICASSP 2019), batched in torch.
  ``zero_mean=True`` gives Conv-TasNet's SI-SNR (Luo & Mesgarani, IEEE/ACM TASLP 2019, eq. 15).
* :func:`framewise_sdr` — BSS Eval v4 SDR exactly as museval computes it (Stöter, Liutkus
  & Ito, "The 2018 Signal Separation Evaluation Campaign", LVA/ICA 2018). With
  time-invariant distortion filters (v4) the spatial, interference and artefact errors
  add up to ``estimate - reference``, so museval's SDR *is* a framewise SNR over 1 s
  frames with both channels pooled. It agrees with museval to 0.01 dB and is hundreds of
  times faster (``benchmarks/bench_metrics.py``; figures in ``benchmarks/RESULTS.md``).
* :func:`sisec_aggregate` — the SiSEC 2018 score: median over frames, then over tracks.
* :func:`museval_sdr` runs museval itself, for figures to publish.
"""

from __future__ import annotations

import numpy as np
import torch

from .sisec import import_museval, sisec_aggregate

EPS = 1e-8
"""The epsilon of :func:`si_sdr`: added to ``||s||^2`` in the projection and to both
energies in the ratio, so a silent reference or a perfect estimate gives a finite value
(a silent reference and silent estimate give 0 dB; a silent reference and a non-silent
estimate give a large negative value; a perfect estimate of a signal of energy E gives
``10 log10(E / 1e-8)``)."""


def _check_pair(estimate: torch.Tensor, reference: torch.Tensor, what: str) -> None:
    if estimate.shape != reference.shape:
        raise ValueError(
            f"{what}: estimate and reference must have the same shape, got "
            f"{tuple(estimate.shape)} and {tuple(reference.shape)}."
        )
    if estimate.shape[-1] == 0:
        raise ValueError(f"{what}: the signals are empty (time axis of length 0).")


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, zero_mean: bool = False, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB, along the last axis.

    With ``α = <ŝ, s> / (||s||² + eps)``: ``SI-SDR = 10 log10((||α s||² + eps) / (||ŝ − α s||² + eps))``.

    Args:
        estimate: ``ŝ``, shape ``(..., time)``.
        reference: ``s``, the same shape.
        zero_mean: remove each signal's mean first (Conv-TasNet's SI-SNR).
        eps: see :data:`EPS`.

    Returns:
        ``(...)``: one value per signal. Differentiable; use ``-si_sdr(...)`` as a loss.
    """
    estimate, reference = torch.as_tensor(estimate), torch.as_tensor(reference)
    _check_pair(estimate, reference, "si_sdr")
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        reference = reference - reference.mean(dim=-1, keepdim=True)
    alpha = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * reference
    ratio = (target.pow(2).sum(-1) + eps) / ((estimate - target).pow(2).sum(-1) + eps)
    return 10 * torch.log10(ratio)


def si_sdr_improvement(estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """SI-SDR of the estimate minus SI-SDR of the unprocessed mixture, in dB.

    Args:
        estimate: ``(batch, source, channel, time)``.
        reference: the same shape.
        mixture: ``(batch, channel, time)``.

    Returns:
        ``(batch, source)``, NaN where the reference is silent (no improvement is
        defined there), so ``torch.nanmean`` averages over present sources only.
    """
    estimate, reference = torch.as_tensor(estimate), torch.as_tensor(reference)
    _check_pair(estimate, reference, "si_sdr_improvement")
    if estimate.dim() != 4 or mixture.shape != (estimate.shape[0], *estimate.shape[2:]):
        raise ValueError(
            "si_sdr_improvement expects estimate and reference (batch, source, channel, time) and mixture "
            f"(batch, channel, time); got {tuple(estimate.shape)} and {tuple(mixture.shape)}."
        )
    gain = si_sdr(estimate, reference) - si_sdr(mixture.unsqueeze(1).expand_as(reference), reference)
    gain = gain.mean(-1)  # average over channels
    silent = reference.pow(2).sum(dim=(-1, -2)) == 0
    return gain.masked_fill(silent, float("nan"))


def _as_numpy(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (source, channel, time), got shape {arr.shape}.")
    return arr


def framewise_sdr(estimates: object, references: object, sample_rate: int, window: float = 1.0) -> np.ndarray:
    """museval's BSS Eval v4 SDR per source and frame.

    For each frame of ``window`` seconds (hop = window, the trailing partial frame
    dropped; one frame when the signal is shorter than a window), with both channels
    pooled: ``SDR = 10 log10(Σ s² / Σ (ŝ − s)²)``. As in museval, a frame where *any*
    reference or *any* estimate is silent (the sum over channels is zero at every
    sample) is NaN for every source, and a perfect estimate gives +inf.

    Args:
        estimates: ``(source, channel, time)`` array or tensor.
        references: the same shape.
        sample_rate: Hz; the window is ``floor(window * sample_rate)`` samples, as museval.
        window: frame length in seconds.

    Returns:
        ``(source, frame)`` float64 array.
    """
    est = _as_numpy(estimates, "estimates")
    ref = _as_numpy(references, "references")
    if est.shape != ref.shape:
        raise ValueError(f"estimates and references must have the same shape, got {est.shape} and {ref.shape}.")
    if not (np.isfinite(est).all() and np.isfinite(ref).all()):
        raise ValueError("estimates or references contain NaN or infinite samples.")
    win = int(np.floor(window * sample_rate))
    if win <= 0:
        raise ValueError(f"window * sample_rate must be at least one sample, got {window} s at {sample_rate} Hz.")
    length = ref.shape[-1]
    nwin = length // win if win < length else 1
    size = win if win < length else length
    frames_ref = ref[..., : nwin * size].reshape(*ref.shape[:2], nwin, size)
    frames_est = est[..., : nwin * size].reshape(*est.shape[:2], nwin, size)
    signal = np.sum(frames_ref**2, axis=(1, 3))
    error = np.sum((frames_est - frames_ref) ** 2, axis=(1, 3))
    with np.errstate(divide="ignore"):
        sdr = 10 * np.log10(signal / error)
    silent = np.zeros(nwin, dtype=bool)
    for frames in (frames_ref, frames_est):
        silent |= np.any(np.all(frames.sum(axis=1) == 0, axis=-1), axis=0)
    sdr[:, silent] = np.nan
    return sdr


def museval_sdr(estimates: object, references: object, sample_rate: int, window: float = 1.0) -> np.ndarray:
    """SDR per source and frame computed by museval itself (slow: about 1 s per second of audio).

    Same arguments and result as :func:`framewise_sdr`. museval refuses a source that
    is silent over the whole excerpt; so does this wrapper, with a ValueError.
    """
    est = _as_numpy(estimates, "estimates")
    ref = _as_numpy(references, "references")
    win = int(np.floor(window * sample_rate))
    sdr, _isr, _sir, _sar = import_museval().evaluate(
        ref.transpose(0, 2, 1), est.transpose(0, 2, 1), win=win, hop=win, mode="v4"
    )
    return sdr
