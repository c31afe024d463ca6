"""The Fourier start: Conv-TasNet's encoder and decoder initialised as a windowed Fourier basis.

Conv-TasNet learns its filterbank from random filters (the paper, torchaudio). This start
gives the encoder U ``(N, 1, L)`` cosine and sine rows at N/2 frequencies from 0 to half the
rate, windowed, and the decoder V the same basis scaled to invert it, so training begins
from an STFT-like analysis/synthesis pair and moves from there (every weight is still
trained). ``ConvTasNet(start="fourier")`` applies it with the square-root Hann window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .conv_tasnet import ConvTasNet

WINDOWS = ("hann", "sqrt-hann")
"""The windows :func:`fourier_start_` offers."""


def fourier_start_(model: ConvTasNet, window: str = "sqrt-hann") -> ConvTasNet:
    """Replace ``model``'s random encoder U and decoder V with a windowed Fourier basis, in place.

    Row ``k`` of U ``(N, 1, L)`` is ``w[n] cos(2π f_k n)`` for the first N/2 rows and
    ``w[n] sin(2π f_k n)`` for the rest, with ``w`` a periodic window of length L
    (``window="sqrt-hann"``, the default and ``ConvTasNet(start="fourier")``'s, or
    ``"hann"``) and ``f_k`` N/2 frequencies evenly spaced from 0 to 0.5 cycles per sample
    (0 to half the rate; the sine rows at 0 and 0.5 are zero and start silent); the rows
    keep the mean norm of the random ones they replace, so the mask network sees latents
    of the usual scale. V is the same basis times the one scalar that best
    inverts U in the least-squares sense on white noise (``V(U(x)) ≈ x``). At L = 64 that
    reconstructs at about 13 dB SNR with the Hann window, whose square does not add up to a
    constant at hop L/2, and at about 31 dB with the square-root Hann window, whose square
    (the Hann window) does. Everything else stays as it was and all of it is still trained.

    Why: from random filters, some seeds of the cpu recipe stall on other and vocals; from
    this start the encoder already resolves frequencies, and the result depends much less on
    the seed (``benchmarks/RESULTS.md`` has the figures of ``bench_conv_tasnet_train.py``).

    Raises:
        ValueError: for an odd N (the basis pairs a cosine and a sine per frequency) or an
            unknown window.
    """
    weight = model.encoder.conv.weight
    N, _, L = weight.shape
    if N % 2:
        raise ValueError(f"fourier_start_ needs an even number of encoder filters N, got N={N}.")
    if window not in WINDOWS:
        raise ValueError(f"Unknown window {window!r}: expected 'hann' or 'sqrt-hann'.")
    n = torch.arange(L, dtype=torch.float64)
    phase = 2 * torch.pi * torch.linspace(0.0, 0.5, N // 2, dtype=torch.float64)[:, None] * n
    taper = torch.hann_window(L, periodic=True, dtype=torch.float64)
    basis = torch.cat([phase.cos(), phase.sin()]) * (taper.sqrt() if window == "sqrt-hann" else taper)
    scale = weight.detach().double().norm(dim=-1).mean()
    norms = basis.norm(dim=-1, keepdim=True)
    silent = norms <= 1e-9 * norms.max()  # the sines at 0 and at 0.5 cycles (sin(π n) is zero but for rounding)
    basis = torch.where(silent, 0.0, basis / norms.clamp_min(torch.finfo(basis.dtype).tiny) * scale)[:, None, :]
    decoder = model.decoder.conv_transpose.weight
    with torch.no_grad():
        weight.copy_(basis)
        decoder.copy_(basis)
        noise = torch.randn(1, 1, 64 * L, generator=torch.Generator().manual_seed(0)).to(weight)
        decoded = model.decoder(model.encoder(noise))
        decoder.mul_((decoded * noise).sum() / (decoded * decoded).sum())
    return model
