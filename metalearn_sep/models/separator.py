"""The separation interface every course model owns, so that training and separation code never inspect submodules.

A separator works at one or more rates. Stage s takes its input at R_s = R_0 2^s Hz
(one stage for Conv-TasNet, three at 8, 16 and 32 kHz for Meta-TasNet); every stage's input
covers the same stretch of time, T_0 2^s samples for T_0 samples at R_0, and T_0 is a
multiple of the model's ``stride`` so that every stage has a whole number of latent frames.

:class:`Separator` gives the code around the models one way to ask for this:

* :attr:`Separator.sample_rates`: ``[R_0, R_1, ...]``, one rate per stage;
* ``stride``: input lengths at R_0 must be multiples of it;
* :attr:`Separator.min_length`: the shortest input at R_0 the model accepts;
* :meth:`Separator.stage_inputs`: a signal at any rate -> the stage inputs (resampled, cropped
  or zero-padded), written once here for every model;
* :meth:`Separator.separate_stages`: the stage inputs -> the last stage's estimates.
"""

from __future__ import annotations

import torch
from torch import nn

from ..audio import fit_length, resample
from ..checks import check_rate
from ..precision import full_precision


def check_mixture(mixture: object, what: str) -> None:
    """A separator's input: a non-empty floating ``(batch, 1, time)`` tensor; else ``ValueError`` naming ``what`` expects it."""
    if not isinstance(mixture, torch.Tensor) or mixture.dim() != 3 or mixture.shape[1] != 1:
        got = tuple(mixture.shape) if isinstance(mixture, torch.Tensor) else type(mixture).__name__
        raise ValueError(f"{what} expects a mono waveform of shape (batch, 1, time), got {got}.")
    if mixture.shape[-1] == 0 or not mixture.is_floating_point():
        raise ValueError(f"{what} expects a non-empty floating-point waveform, got shape {tuple(mixture.shape)} of {mixture.dtype}.")


class Separator(nn.Module):
    """Base class of the course's separators: rates, length constraints, stage inputs and the last stage's estimates.

    Subclasses set ``self.stride`` (samples at R_0; input lengths are multiples of it) and
    ``self.num_sources`` (K), and define :attr:`sample_rates`, :attr:`min_length` and
    :meth:`separate_stages`.
    """

    stride: int
    num_sources: int
    """K, the number of stems :meth:`separate_stages` returns."""

    @property
    def sample_rates(self) -> list[int]:
        """The rate of each stage's input in Hz, R_s = R_0 2^s (one entry for a single-stage model)."""
        raise NotImplementedError

    @property
    def min_length(self) -> int:
        """The shortest input (samples at R_0) the model accepts."""
        raise NotImplementedError

    def separate_stages(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The last stage's estimates ``(batch, K, 1, T_S)`` for stage inputs ``(batch, 1, T_0 2^s)`` (K sources)."""
        raise NotImplementedError

    def stage_inputs(self, signal: torch.Tensor, rate: int, pad: bool = False) -> list[torch.Tensor]:
        """``signal`` ``(..., T)`` at ``rate`` Hz -> one float32 tensor ``(..., T_0 2^s)`` per stage, at R_s.

        T_0 is the signal's length at R_0, ``T rate_0 / rate``, rounded down (``pad=False``: a
        crop of real audio, for training) or up (``pad=True``: zeros appended, so every input
        sample is separated) to a multiple of ``stride``. Each stage's input is the signal
        resampled to R_s (torchaudio's band-limited resampling, skipped at the signal's own
        rate), then cropped or zero-padded to T_0 2^s samples. Resampling runs in float32 even
        under autocast: a bfloat16 sinc filter would add audible noise. :attr:`min_length` is
        not applied here (a padded input shorter than it is the caller's to lengthen).

        Raises:
            ValueError: for a bad ``rate``, a ``signal`` that is not a tensor with a time
                axis, or one shorter than one latent frame (``stride`` samples at R_0).
        """
        rate = check_rate(rate, "rate")
        if not isinstance(signal, torch.Tensor) or signal.dim() == 0:
            got = tuple(signal.shape) if isinstance(signal, torch.Tensor) else type(signal).__name__
            raise ValueError(f"stage_inputs expects a signal tensor of shape (..., time), got {got}.")
        rates = self.sample_rates
        exact = signal.shape[-1] * rates[0] / rate
        frames = int(-(-exact // self.stride)) if pad else int(exact // self.stride)
        if frames < 1:
            raise ValueError(
                f"The signal of {signal.shape[-1]} samples at {rate} Hz is shorter than one latent frame "
                f"({self.stride} samples at {rates[0]} Hz)."
            )
        with full_precision(signal.device):
            return [fit_length(resample(signal.float(), rate, r), frames * self.stride * 2**s) for s, r in enumerate(rates)]
