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

Symbols (paper and original code): N latent channels, L base kernel length, S stride
(``W`` in the original code's arguments), T samples, T' = T / S latent frames,
K = sample_rate / 8000. Meta-TasNet's three stages use (N, L, S, rate) = (440, 20, 20,
8 kHz), (880, 40, 40, 16 kHz) and (1760, 80, 80, 32 kHz): S is always 2.5 ms, so every
stage produces 400 latent frames per second and the stages' latents line up frame for frame.

The spectrogram branch normalises each frequency bin by dataset statistics (buffers,
not trained). Compute them once before training with :func:`spectrogram_statistics`.

Tensor shapes: the encoder maps ``(batch, 1, T) -> (batch, N, T')``; the decoder maps
``(batch, N, T') -> (batch, 1, T)`` and also ``(batch, sources, N, T') -> (batch,
sources, 1, T)``. T must be a multiple of S: the encoder raises ``ValueError``
otherwise (it never pads silently), so ``decode(encode(x))`` always has x's length.

What each part buys (chapter 02's ablation): ``EnhancedEncoder(spec_channels=0)`` drops the
spectrogram branch (multi-kernel only); :class:`PlainEncoder` / :class:`PlainDecoder` are
Conv-TasNet's single filterbank at the same stride S (with ``hidden`` > 0, a per-frame
two-layer network of chosen width: a plain encoder with the capacity of an enhanced one);
:class:`EncoderSeparator` puts any of these pairs around Conv-TasNet's
:class:`~metalearn_sep.models.conv_tasnet.MaskNetwork`, everything else being equal.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, check_mono_batch, check_rate, round_up
from .conv_tasnet import MaskNetwork

BASE_RATE = 8000
"""The spectrogram's window and hop scale with K = sample_rate / BASE_RATE."""

LOG_EPS = 1e-8
"""Added to the power before the logarithm (the original code's constant)."""

LEVEL_EPS = 1e-8
"""Added to an input's standard deviation before :class:`EncoderSeparator` divides by it (silence stays silence)."""


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


def _kernel_sizes(kernel_size: object, stride: object, filters: int) -> tuple[int, int, list[int]]:
    """The kernels ``L * 2**l`` (l < filters), checked so that padding (k - S)/2 is a non-negative integer."""
    kernel_size = check_int(kernel_size, "kernel_size")
    stride = check_int(stride, "stride")
    kernels = [kernel_size * 2**level for level in range(filters)]
    if kernel_size < stride:
        raise ValueError(f"kernel_size must be at least the stride, got kernel_size={kernel_size} and stride={stride}.")
    odd = [k for k in kernels if (k - stride) % 2]
    if odd:
        raise ValueError(
            f"Every kernel minus the stride must be even so that padding (k - stride)/2 centres the frames, "
            f"got kernels {kernels} with stride={stride}."
        )
    return kernel_size, stride, kernels


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


class EnhancedEncoder(nn.Module):
    """Meta-TasNet's encoder: multi-kernel learned filterbanks plus a spectrogram, fused to N channels.

    Args:
        N: latent channels (440, 880, 1760 at 8, 16, 32 kHz in the paper).
        kernel_size: L, the shortest kernel; branch l uses ``L * 2**l`` samples.
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

    def __init__(self, N: int, kernel_size: int, stride: int, sample_rate: int, filters: int = 3, spec_channels: int = 256) -> None:
        super().__init__()
        N, filters = _check_width(N, filters)
        kernel_size, stride, kernels = _kernel_sizes(kernel_size, stride, filters)
        spec_channels = check_int(spec_channels, "spec_channels", low=0)
        if spec_channels:
            self.spectrogram = SpectrogramBranch(sample_rate, spec_channels)
            sample_rate = self.spectrogram.config["sample_rate"]
        else:
            self.spectrogram = None
            sample_rate = check_rate(sample_rate)
        self.config = {
            "N": N, "kernel_size": kernel_size, "stride": stride, "sample_rate": sample_rate,
            "filters": filters, "spec_channels": spec_channels,
        }
        self.N, self.stride = N, stride
        self.convs = nn.ModuleList(
            nn.Conv1d(1, N // 4, kernel_size=k, stride=stride, padding=(k - stride) // 2, bias=False) for k in kernels
        )
        self.fusion = nn.Sequential(
            nn.Conv1d(filters * (N // 4) + spec_channels, N, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv1d(N, N, kernel_size=1, bias=False),
        )

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
        kernel_size: L; slice l is decoded with kernel ``L * 2**l``.
        stride: S, as in the encoder.
        filters: number of kernel lengths (3 in the paper).

    Layers:

    * ``expand``: ConvTranspose1d(N -> N/2 + N/4 + ... + N/2^filters, kernel 1, no bias)
      and ReLU (7N/8 channels for filters=3).
    * ``convs[l]``: ConvTranspose1d(N/2^(l+1) -> 1, kernel L 2^l, stride S, padding
      (L 2^l - S)/2, no bias), applied to the l-th channel slice. The longest kernel gets
      the fewest channels. The waveforms of all slices are summed.

    Shapes: ``(..., N, T') -> (..., 1, T' S)``; the leading axes are flattened into one
    batch, so ``(batch, N, T')`` and the masker's ``(batch, sources, N, T')`` both work.

    ``self.config`` holds the constructor arguments (``EnhancedDecoder(**config)`` rebuilds it).
    """

    def __init__(self, N: int, kernel_size: int, stride: int, filters: int = 3) -> None:
        super().__init__()
        N, filters = _check_width(N, filters)
        kernel_size, stride, kernels = _kernel_sizes(kernel_size, stride, filters)
        self.config = {"N": N, "kernel_size": kernel_size, "stride": stride, "filters": filters}
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
        wave = sum(conv(part) for conv, part in zip(self.convs, parts))
        return wave.reshape(*lead, 1, wave.shape[-1])


def _waveform_rows(item: object) -> torch.Tensor:
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
        rows = _waveform_rows(item)[: max_examples - seen]
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


class PlainEncoder(nn.Module):
    """Conv-TasNet's encoder at Meta-TasNet's stride: one learned filterbank of L samples, hop S.

    ``hidden=0`` (the plain baseline): Conv1d(1 -> N, kernel L, stride S, padding (L - S)/2, no
    bias), linear, as in :class:`~metalearn_sep.models.conv_tasnet.Encoder` but with the
    enhanced encoder's frame alignment (frame t centred on sample t S + S/2).

    ``hidden > 0`` (a capacity control): Conv1d(1 -> hidden, same kernel, stride and padding),
    ReLU, 1x1 conv hidden -> N, ReLU, 1x1 conv N -> N (no biases), the enhanced encoder's
    layout with a single L-sample branch and no spectrogram: as deep as the enhanced
    encoder and, with a suitable ``hidden``, as large, but it sees only L samples per frame.

    Shapes: ``(batch, 1, T) -> (batch, N, T / S)`` with T a multiple of S (else ``ValueError``).
    ``self.config`` holds the constructor arguments.
    """

    def __init__(self, N: int, kernel_size: int, stride: int, hidden: int = 0) -> None:
        super().__init__()
        N = check_int(N, "N")
        kernel_size, stride, _ = _kernel_sizes(kernel_size, stride, 1)
        hidden = check_int(hidden, "hidden", low=0)
        self.config = {"N": N, "kernel_size": kernel_size, "stride": stride, "hidden": hidden}
        self.N, self.stride = N, stride
        padding = (kernel_size - stride) // 2
        self.conv = nn.Conv1d(1, hidden or N, kernel_size, stride=stride, padding=padding, bias=False)
        self.fusion = None
        if hidden:
            self.fusion = nn.Sequential(
                nn.ReLU(),
                nn.Conv1d(hidden, N, kernel_size=1, bias=False),
                nn.ReLU(),
                nn.Conv1d(N, N, kernel_size=1, bias=False),
            )

    @property
    def min_length(self) -> int:
        """The shortest input (samples): one stride."""
        return self.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, T) -> (batch, N, T / S)``."""
        check_mono_batch(x, self.stride, self.stride)
        z = self.conv(x)
        return z if self.fusion is None else self.fusion(z)


class PlainDecoder(nn.Module):
    """The synthesis filterbank matching :class:`PlainEncoder`.

    ``hidden=0``: ConvTranspose1d(N -> 1, kernel L, stride S, padding (L - S)/2, no bias).
    ``hidden > 0``: ConvTranspose1d(N -> hidden, kernel 1, no bias), ReLU, then
    ConvTranspose1d(hidden -> 1, kernel L, stride S, padding (L - S)/2, no bias), like
    :class:`EnhancedDecoder` with a single kernel length.

    Shapes: ``(batch, N, T') -> (batch, 1, T' S)``. ``self.config`` holds the constructor arguments.
    """

    def __init__(self, N: int, kernel_size: int, stride: int, hidden: int = 0) -> None:
        super().__init__()
        N = check_int(N, "N")
        kernel_size, stride, _ = _kernel_sizes(kernel_size, stride, 1)
        hidden = check_int(hidden, "hidden", low=0)
        self.config = {"N": N, "kernel_size": kernel_size, "stride": stride, "hidden": hidden}
        self.N = N
        self.expand = None
        if hidden:
            self.expand = nn.Sequential(nn.ConvTranspose1d(N, hidden, kernel_size=1, bias=False), nn.ReLU())
        padding = (kernel_size - stride) // 2
        self.conv = nn.ConvTranspose1d(hidden or N, 1, kernel_size, stride=stride, padding=padding, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(batch, N, T') -> (batch, 1, T' S)``."""
        if not isinstance(z, torch.Tensor) or z.dim() != 3 or z.shape[1] != self.N:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"The decoder expects a latent of shape (batch, {self.N}, frames), got {got}.")
        return self.conv(z if self.expand is None else self.expand(z))


ENCODERS = ("plain", "multi", "multi+spec")
"""The encoder/decoder pairs :class:`EncoderSeparator` can use."""


class EncoderSeparator(nn.Module):
    """Conv-TasNet's masking network between a swappable encoder/decoder pair (chapter 02's ablation).

    ``(batch, 1, T) -> (batch, sources, 1, T)``: encoder ``(batch, N, T')``, then
    :class:`~metalearn_sep.models.conv_tasnet.MaskNetwork` masks ``(batch, sources, N, T')``,
    mask times latent, then the decoder, one waveform per source. Every pair works at the
    same stride S, so all variants share the latent shape and the masking network exactly:

    * ``"plain"``: :class:`PlainEncoder` / :class:`PlainDecoder` (Conv-TasNet's single
      filterbank of L samples); with ``hidden`` > 0, their two-layer version, the capacity
      control (see :meth:`capacity_control`).
    * ``"multi"``: ``EnhancedEncoder(spec_channels=0)`` / :class:`EnhancedDecoder`: kernels
      L, 2L, ..., fused by the two 1x1 convs, no spectrogram.
    * ``"multi+spec"``: the full :class:`EnhancedEncoder` / :class:`EnhancedDecoder`. Set the
      spectrogram statistics from training mixtures (:meth:`set_spectrogram_statistics`)
      before training.

    The input is padded with zeros at the end to a multiple of S (and to :attr:`min_length`)
    and the output cropped back, so any length works. With ``normalize`` (the default) each
    example is divided by its standard deviation before the encoder and the estimates are
    multiplied by it again, so the model sees unit-level input whatever the mixture's level,
    as the original code trains (each track divided by its mixture's std) and separates (each
    input divided by its std). It matters for the enhanced encoder: a gain g scales its conv
    branches' outputs by g but only shifts its log spectrogram by 2 log10 g, so at another
    level the fusion would receive the two in other proportions.

    Args:
        encoder: one of :data:`ENCODERS`.
        num_sources: masks (4: drums, bass, other, vocals).
        N: latent channels; L: base kernel; stride: S (hop of every filterbank); sample_rate: Hz.
        B, H, Sc, P, X, R: the masking network's sizes (:class:`~metalearn_sep.models.conv_tasnet.MaskNetwork`).
        norm: the masking network's normalisation ("gLN", "cLN" or "GN<g>").
        mask: "softmax" (across sources, as Meta-TasNet), "sigmoid" or "relu".
        filters, spec_channels: the enhanced pair's branches and spectrogram channels (not used by "plain").
        hidden: the plain pair's hidden width (``"plain"`` only; 0 is Conv-TasNet's linear encoder).
        normalize: divide each input by its standard deviation, and multiply the estimates by it.

    The defaults are Meta-TasNet's first stage (N=440, L=S=20 at 8 kHz, B=H=Sc=160, P=3,
    X=6, R=3, 256 spectrogram channels). ``self.config`` holds the constructor arguments
    (JSON-serialisable), so ``EncoderSeparator(**model.config)`` rebuilds the architecture
    and :class:`~metalearn_sep.train.Trainer` checkpoints check it.
    """

    def __init__(
        self,
        encoder: str = "multi+spec",
        num_sources: int = 4,
        N: int = 440,
        L: int = 20,
        stride: int = 20,
        sample_rate: int = 8000,
        B: int = 160,
        H: int = 160,
        Sc: int = 160,
        P: int = 3,
        X: int = 6,
        R: int = 3,
        norm: str = "gLN",
        mask: str = "softmax",
        filters: int = 3,
        spec_channels: int = 256,
        hidden: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(map(repr, ENCODERS))}, got {encoder!r}.")
        sizes = {"num_sources": num_sources, "N": N, "L": L, "stride": stride, "B": B, "H": H, "Sc": Sc, "P": P, "X": X, "R": R}
        sizes = {name: check_int(value, name) for name, value in sizes.items()}
        hidden = check_int(hidden, "hidden", low=0)
        if hidden and encoder != "plain":
            raise ValueError(f'hidden applies to the "plain" encoder only, got hidden={hidden} with encoder={encoder!r}.')
        self.config = {
            "encoder": encoder, **sizes, "sample_rate": check_rate(sample_rate),
            "norm": norm, "mask": mask, "filters": filters, "spec_channels": spec_channels, "hidden": hidden,
            "normalize": bool(normalize),
        }
        N, L, stride = sizes["N"], sizes["L"], sizes["stride"]
        # The masking network is built first, so that after the same torch.manual_seed every
        # variant starts from the same masking network: the comparison is paired.
        self.mask_network = MaskNetwork(
            N, sizes["B"], sizes["H"], sizes["Sc"], sizes["P"], sizes["X"], sizes["R"], sizes["num_sources"], norm=norm, mask=mask,
        )
        if encoder == "plain":
            self.encoder = PlainEncoder(N, L, stride, hidden)
            self.decoder = PlainDecoder(N, L, stride, hidden)
        else:
            channels = check_int(spec_channels, "spec_channels") if encoder == "multi+spec" else 0
            self.encoder = EnhancedEncoder(N, L, stride, sample_rate, filters=filters, spec_channels=channels)
            self.decoder = EnhancedDecoder(N, L, stride, filters=filters)
        self.num_sources, self.stride, self.sample_rate = sizes["num_sources"], self.encoder.stride, self.config["sample_rate"]
        self.normalize = bool(normalize)

    @property
    def min_length(self) -> int:
        """The shortest input the encoder accepts unpadded (shorter inputs are padded to it)."""
        return self.encoder.min_length

    def padded_length(self, time: int) -> int:
        """The length a ``time``-sample input is zero-padded to: a multiple of S, at least :attr:`min_length`."""
        return max(round_up(time, self.stride), self.min_length)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """Separate ``mixture`` ``(batch, 1, time)`` into ``(batch, sources, 1, time)``."""
        if not isinstance(mixture, torch.Tensor) or mixture.dim() != 3 or mixture.shape[1] != 1:
            got = tuple(mixture.shape) if isinstance(mixture, torch.Tensor) else type(mixture).__name__
            raise ValueError(f"EncoderSeparator expects a mono waveform of shape (batch, 1, time), got {got}.")
        if mixture.shape[-1] == 0 or not mixture.is_floating_point():
            raise ValueError(
                f"EncoderSeparator expects a non-empty floating-point waveform, got shape {tuple(mixture.shape)} of {mixture.dtype}."
            )
        batch, _, time = mixture.shape
        scale = mixture.std(dim=-1, keepdim=True, correction=0) + LEVEL_EPS if self.normalize else None  # (batch, 1, 1)
        x = mixture if scale is None else mixture / scale
        latent = self.encoder(F.pad(x, (0, self.padded_length(time) - time)))  # (batch, N, T')
        masked = self.mask_network(latent) * latent.unsqueeze(1)  # (batch, sources, N, T')
        estimates = self.decoder(masked.flatten(0, 1)).view(batch, self.num_sources, 1, -1)[..., :time]
        return estimates if scale is None else estimates * scale.unsqueeze(1)

    def set_spectrogram_statistics(self, mixtures: Iterable[object], max_examples: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`spectrogram_statistics` of ``mixtures`` as the encoder sees them (each row divided by its std with ``normalize``).

        ``mixtures``: items ``(..., T)`` (e.g. ``(batch, 1, T)``) or ``(mixture, stems)`` tuples.
        Returns ``(mean, std)`` per STFT bin; ``ValueError`` for a variant without a spectrogram.
        """
        if getattr(self.encoder, "spectrogram", None) is None:
            raise ValueError(f'The {self.config["encoder"]!r} encoder has no spectrogram branch, so it needs no statistics.')

        def rows() -> Iterable[torch.Tensor]:
            for item in mixtures:
                x = _waveform_rows(item)
                yield x / (x.std(dim=-1, keepdim=True, correction=0) + LEVEL_EPS) if self.normalize else x

        return spectrogram_statistics(self.encoder, rows(), max_examples)

    def parameter_table(self) -> dict[str, int]:
        """Trainable parameters of ``encoder``, ``mask_network``, ``decoder`` and their ``total``."""
        table = {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in ("encoder", "mask_network", "decoder")}
        table["total"] = sum(table.values())
        return table

    @classmethod
    def capacity_control(cls, reference: EncoderSeparator) -> EncoderSeparator:
        """A ``"plain"`` separator as large as ``reference``: same settings, ``hidden`` chosen to match its parameter count.

        The plain pair's parameters grow linearly with ``hidden`` (``2 hidden (L + N) + N^2``);
        the ``hidden`` >= 1 whose total is closest to the reference's is used, so the two differ
        by at most ``L + N`` parameters (when the reference is not smaller than hidden = 1 allows).
        The control then has the reference's latent, masking network, depth and size, but sees
        only L samples per frame: what it gains over ``"plain"`` is capacity, not input.

        Counting draws nothing from the global random generator, so after the same
        ``torch.manual_seed`` the control starts from the same masking network as any
        ``EncoderSeparator(...)`` built in its place.
        """
        if not isinstance(reference, EncoderSeparator):
            raise ValueError(f"reference must be an EncoderSeparator, got {type(reference).__name__}.")
        c = reference.config

        def pair(hidden: int) -> int:
            modules = (PlainEncoder(c["N"], c["L"], c["stride"], hidden), PlainDecoder(c["N"], c["L"], c["stride"], hidden))
            return sum(p.numel() for m in modules for p in m.parameters())

        table = reference.parameter_table()
        target = table["encoder"] + table["decoder"]
        with torch.random.fork_rng(devices=[]):  # the counting modules' random weights leave the generator as it was
            first, slope = pair(1), pair(2) - pair(1)
        hidden = max(1, round((target - first) / slope) + 1)
        return cls(**{**c, "encoder": "plain", "hidden": hidden})
