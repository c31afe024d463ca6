"""Meta-TasNet's enhanced encoder and decoder (Samuel, Ganeshan & Naradowsky, ICASSP 2020, Sec. 2.2).

Conv-TasNet encodes a waveform with one learned filterbank: a 1-D convolution with
kernel length L. The choice of L is a time/frequency trade-off. Short kernels locate
onsets (a drum hit) precisely but cannot resolve close frequencies; long kernels
resolve pitch (a bass note) but smear transients. Meta-TasNet keeps several
filterbanks side by side and adds a spectrogram:

* :class:`EnhancedEncoder` runs ``filters`` parallel convolutions with kernels
  ``L, 2L, 4L, ...`` (all with stride S, padded so their frames are centred on the
  same samples), a :class:`SpectrogramBranch` with a much longer window (1024 samples
  at 8 kHz = 128 ms, against 2.5 ms to 10 ms for the convolutions), which sees the
  low frequencies and the harmonic structure the short kernels cannot, and two 1x1
  convolutions that fuse everything into one latent of N channels.
* :class:`EnhancedDecoder` maps the (masked) latent back to waveforms through a
  1x1 transposed convolution and one transposed convolution per kernel length,
  whose outputs are summed. It has no spectrogram path.

Symbols (paper and original code): N latent channels, L base kernel length (argument ``L``),
S stride (argument ``stride``, ``W`` in the original code), T samples, T' = T / S latent frames,
K = sample_rate / 8000. Meta-TasNet's three stages use (N, L, S, rate) = (440, 20, 20,
8 kHz), (880, 40, 40, 16 kHz) and (1760, 80, 80, 32 kHz): S is always 2.5 ms, so every
stage produces 400 latent frames per second and the stages' latents line up frame for frame.

The spectrogram branch normalises each frequency bin by dataset statistics (buffers,
not trained). Compute them once before training with :func:`spectrogram_statistics`.

Tensor shapes: the encoder maps ``(batch, 1, T) -> (batch, N, T')``; the decoder maps
``(batch, N, T') -> (batch, 1, T)`` and also ``(batch, sources, N, T') -> (batch,
sources, 1, T)``. T must be a multiple of S: the encoder raises ``ValueError``
otherwise (it never pads silently), so ``decode(encode(x))`` always has x's length.

What each part buys is chapter 02's ablation: ``EnhancedEncoder(spec_channels=0)`` drops the
spectrogram branch (multi-kernel only), and :mod:`metalearn_sep.models.encoder_ablation`
compares these pairs with Conv-TasNet's single filterbank around the same masking network.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, check_mono_batch, check_rate, round_up
from .training_kernels import overlap_add_decode

BASE_RATE = 8000
"""The spectrogram's window and hop scale with K = sample_rate / BASE_RATE."""

LOG_EPS = 1e-8
"""Added to the power before the logarithm (the original code's constant)."""


def _check_width(N: object, filters: object) -> tuple[int, int]:
    """Validate N and ``filters``: N must split into the encoder's N/4 and the decoder's N/2..N/2^filters slices.

    N must also be a multiple of 8 because the masking network normalises it with
    GroupNorm(8 groups); so the divisor is 2**max(filters, 3) (8 for the paper's filters=3).
    """
    N = check_int(N, "N")
    filters = check_int(filters, "filters")
    divisor = 2 ** max(filters, 3)
    if N % divisor:
        raise ValueError(
            f"N must be divisible by {divisor} (the encoder's N/4 channels per kernel, the decoder's "
            f"slices N/2 ... N/2^{filters}, and GroupNorm with 8 groups downstream), got N={N}."
        )
    return N, filters


def check_kernels(L: object, stride: object, filters: int) -> tuple[int, int, list[int]]:
    """``(L, S, kernels)``: the kernels ``L * 2**l`` (l < filters), checked so that padding (k - S)/2 is a non-negative integer."""
    L = check_int(L, "L")
    stride = check_int(stride, "stride")
    kernels = [L * 2**level for level in range(filters)]
    if L < stride:
        raise ValueError(f"L must be at least the stride, got L={L} and stride={stride}.")
    odd = [k for k in kernels if (k - stride) % 2]
    if odd:
        raise ValueError(
            f"Every kernel minus the stride must be even so that padding (k - stride)/2 centres the frames, "
            f"got kernels {kernels} with stride={stride}."
        )
    return L, stride, kernels


def fusion_layers(channels: int, N: int) -> list[nn.Module]:
    """The encoder's fusion: 1x1 conv ``channels -> N``, ReLU, 1x1 conv N -> N, no biases and no final nonlinearity."""
    return [nn.Conv1d(channels, N, kernel_size=1, bias=False), nn.ReLU(), nn.Conv1d(N, N, kernel_size=1, bias=False)]


class SpectrogramBranch(nn.Module):
    """The encoder's spectrogram input: normalised log-power STFT, a learned 1x1 "mel" layer, resampled in time.

    Steps, for K = sample_rate / 8000:

    1. STFT with n_fft = 1024 K, hop 256 K, a Hann window, centred (reflect padding):
       ``(batch, 1, T) -> (batch, F, T // hop + 1)`` complex, F = n_fft/2 + 1 bins.
    2. log10(|X|^2 + 1e-8) (called "dB" in the original code, without the factor 10).
    3. Per-bin normalisation ``(x - mean) / std`` with dataset statistics (buffers
       ``mean`` and ``std``, shape ``(F,)``, initially 0 and 1; see
       :func:`spectrogram_statistics`), then a learned per-bin ``scale`` (init 1) and
       ``shift`` (init 0).
    4. A 1x1 Conv1d with bias F -> ``channels`` (256): the paper's "learnable replacement
       for a mel filterbank", randomly initialised.
    5. Linear interpolation (align_corners=True) along time to the conv branch's T' frames.
       The first and last STFT frames land on the first and last latent frames; in
       between the two time grids differ by less than one STFT hop (the original's choice).

    What it adds: a 128 ms window resolves frequencies 7.8 Hz apart, which no 2.5-10 ms
    kernel can, so bass notes and harmonics become visible to the encoder.

    The Hann window is a non-persistent buffer (rebuilt from the config); ``mean`` and
    ``std`` are saved in the state dict.
    """

    def __init__(self, sample_rate: int, channels: int = 256) -> None:
        super().__init__()
        sample_rate = check_rate(sample_rate)
        if sample_rate % BASE_RATE:
            raise ValueError(f"sample_rate must be a multiple of {BASE_RATE} Hz (8, 16, 32 kHz, ...), got {sample_rate}.")
        channels = check_int(channels, "spec_channels")
        K = sample_rate // BASE_RATE
        self.config = {"sample_rate": sample_rate, "channels": channels}
        self.n_fft = 1024 * K
        self.hop = 256 * K
        bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("mean", torch.zeros(bins))
        self.register_buffer("std", torch.ones(bins))
        self.scale = nn.Parameter(torch.ones(bins))
        self.shift = nn.Parameter(torch.zeros(bins))
        self.mel = nn.Conv1d(bins, channels, kernel_size=1, bias=True)

    @property
    def bins(self) -> int:
        """F = n_fft / 2 + 1, the number of STFT frequency bins."""
        return self.n_fft // 2 + 1

    @property
    def min_length(self) -> int:
        """The shortest input (samples) the reflect-padded STFT accepts: n_fft/2 + 1."""
        return self.n_fft // 2 + 1

    def log_power(self, x: torch.Tensor) -> torch.Tensor:
        """log10(|STFT|^2 + 1e-8), before normalisation: ``(..., T) -> (..., F, T // hop + 1)``."""
        if x.shape[-1] < self.min_length:
            raise ValueError(
                f"The spectrogram branch needs at least {self.min_length} samples (n_fft/2 + 1 for the reflect "
                f"padding), got {x.shape[-1]}."
            )
        lead = x.shape[:-1]
        spec = torch.stft(
            x.reshape(-1, x.shape[-1]), n_fft=self.n_fft, hop_length=self.hop, window=self.window,
            center=True, pad_mode="reflect", return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        return torch.log10(power + LOG_EPS).reshape(*lead, *power.shape[-2:])

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the dataset's per-bin mean and std of :meth:`log_power` (shape ``(F,)`` each)."""
        mean, std = torch.as_tensor(mean), torch.as_tensor(std)
        for name, value in (("mean", mean), ("std", std)):
            if tuple(value.shape) != (self.bins,):
                raise ValueError(f"{name} must have shape ({self.bins},) (one value per STFT bin), got {tuple(value.shape)}.")
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or infinite values.")
        if (std <= 0).any():
            raise ValueError(f"std must be positive in every bin, got {int((std <= 0).sum())} bin(s) <= 0 (silent or constant data?).")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``(batch, 1, T) -> (batch, channels, frames)``."""
        spec = self.log_power(x[:, 0])  # (batch, F, T // hop + 1)
        spec = (spec - self.mean[:, None]) / self.std[:, None]
        spec = spec * self.scale[:, None] + self.shift[:, None]
        spec = self.mel(spec)
        return F.interpolate(spec, size=frames, mode="linear", align_corners=True)


def branch_padding(kernel: int, stride: int) -> int:
    """Zeros on each side of a branch with ``kernel`` samples at ``stride``: (k - S) / 2, so every branch's frame t
    is centred on the same sample, t S + S / 2 (chapter 02 derives it)."""
    return (kernel - stride) // 2


class EnhancedEncoder(nn.Module):
    """Meta-TasNet's encoder: multi-kernel learned filterbanks plus a spectrogram, fused to N channels.

    Args:
        N: latent channels (440, 880, 1760 at 8, 16, 32 kHz in the paper).
        L: the shortest kernel (samples); branch l uses ``L * 2**l`` samples.
        stride: S, the hop of every branch (T' = T / S frames).
        sample_rate: Hz, a multiple of 8000; sets the spectrogram's n_fft = 1024 K and hop 256 K.
        filters: number of parallel conv branches (3 in the paper), N/4 channels each.
        spec_channels: output channels of the spectrogram branch (the code's ``num_mels``, 256);
            0 builds no spectrogram branch (``self.spectrogram`` is None): the multi-kernel
            encoder alone, for ablations.

    Shapes: ``(batch, 1, T) -> (batch, N, T')`` with T a multiple of S and at least
    :attr:`min_length` samples (n_fft/2 + 1 with the spectrogram branch, rounded up to a
    multiple of S); anything else raises ``ValueError`` (the caller pads).

    Branches:

    * ``convs[l]``: Conv1d(1 -> N/4, kernel L 2^l, stride S, padding (L 2^l - S)/2, no
      bias). Frame t of every branch is centred on sample t S + S/2, so the branches
      describe the same instants at three time/frequency resolutions. Concatenated
      (``filters`` N/4 channels, branch after branch) and passed through ReLU.
    * ``spectrogram``: a :class:`SpectrogramBranch` with ``spec_channels`` outputs,
      interpolated to T' frames (None when ``spec_channels`` is 0).
    * ``fusion``: 1x1 conv (no bias) ``filters N/4 + spec_channels -> N``, ReLU, 1x1 conv
      (no bias) N -> N. No final nonlinearity: the latent may be negative.

    ``self.config`` holds the constructor arguments (``EnhancedEncoder(**config)`` rebuilds it).
    """

    def __init__(self, N: int, L: int, stride: int, sample_rate: int, filters: int = 3, spec_channels: int = 256) -> None:
        super().__init__()
        N, filters = _check_width(N, filters)
        L, stride, kernels = check_kernels(L, stride, filters)
        spec_channels = check_int(spec_channels, "spec_channels", low=0)
        if spec_channels:
            self.spectrogram = SpectrogramBranch(sample_rate, spec_channels)
            sample_rate = self.spectrogram.config["sample_rate"]
        else:
            self.spectrogram = None
            sample_rate = check_rate(sample_rate)
        self.config = {
            "N": N, "L": L, "stride": stride, "sample_rate": sample_rate,
            "filters": filters, "spec_channels": spec_channels,
        }
        self.N, self.stride = N, stride
        self.convs = nn.ModuleList(
            nn.Conv1d(1, N // 4, kernel_size=k, stride=stride, padding=branch_padding(k, stride), bias=False) for k in kernels
        )
        self.fusion = nn.Sequential(*fusion_layers(filters * (N // 4) + spec_channels, N))

    @property
    def min_length(self) -> int:
        """The shortest input (samples) the encoder accepts: one stride, or the spectrogram's n_fft/2 + 1 rounded up to S."""
        if self.spectrogram is None:
            return self.stride
        return round_up(self.spectrogram.min_length, self.stride)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a floating ``(batch, 1, T)`` tensor with T a multiple of S (and long enough)."""
        minimum = self.stride if self.spectrogram is None else self.spectrogram.min_length
        check_mono_batch(x, self.stride, minimum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, T) -> (batch, N, T / S)``."""
        self.check_input(x)
        learned = torch.relu(torch.cat([conv(x) for conv in self.convs], dim=1))  # (batch, filters N/4, T')
        if self.spectrogram is None:
            return self.fusion(learned)
        spec = self.spectrogram(x, learned.shape[-1])  # (batch, spec_channels, T')
        return self.fusion(torch.cat([learned, spec], dim=1))


class EnhancedDecoder(nn.Module):
    """Meta-TasNet's decoder: a 1x1 expansion, then one transposed conv per kernel length, summed.

    Args:
        N: latent channels (must equal the encoder's).
        L: the shortest kernel (samples); slice l is decoded with kernel ``L * 2**l``.
        stride: S, as in the encoder.
        filters: number of kernel lengths (3 in the paper).

    Layers:

    * ``expand``: ConvTranspose1d(N -> N/2 + N/4 + ... + N/2^filters, kernel 1, no bias)
      and ReLU (7N/8 channels for filters=3).
    * ``convs[l]``: ConvTranspose1d(N/2^(l+1) -> 1, kernel L 2^l, stride S, padding
      (L 2^l - S)/2, no bias), applied to the l-th channel slice. The longest kernel gets
      the fewest channels. The waveforms of all slices are summed. Each is computed as a
      matrix product and an overlap-add (:func:`~metalearn_sep.models.training_kernels.overlap_add_decode`),
      the same sums as the transposed conv, faster on a CPU.

    Shapes: ``(..., N, T') -> (..., 1, T' S)``; the leading axes are flattened into one
    batch, so ``(batch, N, T')`` and the masker's ``(batch, sources, N, T')`` both work.

    ``self.config`` holds the constructor arguments (``EnhancedDecoder(**config)`` rebuilds it).
    """

    def __init__(self, N: int, L: int, stride: int, filters: int = 3) -> None:
        super().__init__()
        N, filters = _check_width(N, filters)
        L, stride, kernels = check_kernels(L, stride, filters)
        self.config = {"N": N, "L": L, "stride": stride, "filters": filters}
        self.N = N
        self.slices = [N // 2 ** (level + 1) for level in range(filters)]
        self.expand = nn.Sequential(nn.ConvTranspose1d(N, sum(self.slices), kernel_size=1, bias=False), nn.ReLU())
        self.convs = nn.ModuleList(
            nn.ConvTranspose1d(width, 1, kernel_size=k, stride=stride, padding=(k - stride) // 2, bias=False)
            for width, k in zip(self.slices, kernels)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., N, T') -> (..., 1, T' S)``."""
        if not isinstance(z, torch.Tensor) or z.dim() < 3 or z.shape[-2] != self.N:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"The decoder expects a latent of shape (batch, {self.N}, frames) or (batch, sources, {self.N}, frames), got {got}."
            )
        lead = z.shape[:-2]
        hidden = self.expand(z.reshape(-1, *z.shape[-2:]))
        parts = hidden.split(self.slices, dim=1)
        wave = sum(overlap_add_decode(part, conv.weight, conv.stride[0], conv.padding[0]) for conv, part in zip(self.convs, parts))
        return wave.reshape(*lead, 1, wave.shape[-1])


def waveform_rows(item: object) -> torch.Tensor:
    """A dataset item as ``(examples, T)``: a tensor ``(..., T)``, or a tuple/list whose first element is one."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, torch.Tensor) or item.dim() == 0:
        raise ValueError(
            f"Each item must be a waveform tensor of shape (..., time) or a (mixture, ...) tuple, got {type(item).__name__}."
        )
    return item.reshape(-1, item.shape[-1])


@torch.no_grad()
def spectrogram_statistics(
    module: EnhancedEncoder | SpectrogramBranch, waveforms: Iterable[object], max_examples: int = 5000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and std of the log-power spectrogram over examples and frames; stored in the branch.

    The statistics the spectrogram branch normalises with (the original code draws
    about 5000 training examples per stage). Batches are merged with Chan et al.'s
    parallel update in float64 (one pass, no catastrophic cancellation), so the result
    does not depend on how the data is batched. The std is the unbiased one (n - 1).

    Args:
        module: an :class:`EnhancedEncoder` (its ``spectrogram``) or a :class:`SpectrogramBranch`.
        waveforms: items of shape ``(..., T)`` at the branch's sample rate, each row one
            example (e.g. ``(batch, 1, T)`` mixtures), or tuples whose first element is one
            (a dataset's ``(mixture, stems)``).
        max_examples: stop after this many rows (the last batch is cut to fit).

    Returns:
        ``(mean, std)``, each ``(F,)`` float32, also written with ``set_statistics``.
    """
    branch = module.spectrogram if isinstance(module, EnhancedEncoder) else module
    if isinstance(module, EnhancedEncoder) and branch is None:
        raise ValueError("This EnhancedEncoder has no spectrogram branch (spec_channels=0), so it needs no statistics.")
    if not isinstance(branch, SpectrogramBranch):
        raise ValueError(f"module must be an EnhancedEncoder or a SpectrogramBranch, got {type(module).__name__}.")
    max_examples = check_int(max_examples, "max_examples")
    device, dtype = branch.window.device, branch.window.dtype
    count, seen = 0, 0
    mean = torch.zeros(branch.bins, dtype=torch.float64, device=device)
    m2 = torch.zeros_like(mean)
    for item in waveforms:
        rows = waveform_rows(item)[: max_examples - seen]
        values = branch.log_power(rows.to(device=device, dtype=dtype)).double()  # (rows, F, frames)
        n = values.shape[0] * values.shape[2]
        batch_mean = values.mean(dim=(0, 2))
        batch_m2 = (values - batch_mean[:, None]).square().sum(dim=(0, 2))
        total = count + n
        delta = batch_mean - mean
        mean += delta * (n / total)
        m2 += batch_m2 + delta.square() * (count * n / total)
        count, seen = total, seen + rows.shape[0]
        if seen >= max_examples:
            break
    if count < 2:
        raise ValueError("spectrogram_statistics needs at least two spectrogram frames; the waveforms iterable was empty.")
    std = (m2 / (count - 1)).sqrt()
    mean, std = mean.to(dtype), std.to(dtype)
    branch.set_statistics(mean, std)
    return mean, std
