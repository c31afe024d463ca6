"""Conv-TasNet (Luo & Mesgarani, 2019), built from its parts.

A waveform ``(batch, 1, time)`` goes through three stages:

1. :class:`Encoder`: a learned filterbank, N filters of length L with hop L/2, turns the
   waveform into a latent ``(batch, N, frames)`` (linear, as in torchaudio: no ReLU).
2. :class:`MaskNetwork`: a temporal convolutional network (TCN) of R repeats of X
   :class:`ConvBlock` s with dilations 1, 2, ..., 2^(X-1) estimates one mask per source,
   ``(batch, sources, N, frames)``.
3. :class:`Decoder`: a transposed convolution (the encoder's "inverse") turns each masked
   latent back into a waveform; the model returns ``(batch, sources, 1, time)``.

The paper's symbols, used throughout:

====  ============================================================  ==========
sym.  meaning                                                       best cfg.
====  ============================================================  ==========
N     encoder filters (latent channels)                             512
L     encoder filter length in samples (hop L/2)                    16
B     bottleneck / residual channels of the TCN                     128
H     channels inside a conv block                                  512
Sc    skip-connection channels                                      128
P     kernel size of the depthwise convolution                      3
X     conv blocks per repeat (dilations 1 ... 2^(X-1))              8
R     repeats                                                       3
====  ============================================================  ==========

Normalisation (``norm``) is spelled ``"gLN"`` (global layer norm: statistics over all
channels and frames, i.e. ``GroupNorm(1, C)``), ``"cLN"`` (cumulative layer norm, for the
causal model) or ``"GN<g>"`` for a group norm with g groups (``"GN8"``: 8 groups, as
Meta-TasNet uses). :meth:`ConvTasNet.from_torchaudio` copies a ``torchaudio.models.ConvTasNet``
into this layout; the two then give the same output. Beside this file: the faster CPU training
forms of :class:`Decoder`, :class:`DepthwiseConv1d` and :class:`PReLU`
(:mod:`~metalearn_sep.models.training_kernels`) and the Fourier start (:mod:`~metalearn_sep.models.fourier_start`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, check_rate
from .fourier_start import fourier_start_
from .separator import Separator, check_mixture
from .torchaudio_port import torchaudio_config, torchaudio_state
from .training_kernels import depthwise_conv, needs_grad, overlap_add_decode, prelu

if TYPE_CHECKING:
    import torchaudio

NORM_EPS = 1e-8
"""Epsilon of every normalisation (the value torchaudio uses)."""

MASKS = ("sigmoid", "relu", "softmax")
STARTS = ("random", "fourier")


class GlobalLayerNorm(nn.GroupNorm):
    """gLN: normalise each example over all C channels and all frames, then a per-channel gain and bias.

    ``(batch, C, frames) -> (batch, C, frames)``. This is exactly ``GroupNorm(1, C)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(1, channels, eps=NORM_EPS)


class CumulativeLayerNorm(nn.Module):
    """cLN: normalise frame k with the mean and variance of all C channels of frames 0 ... k.

    ``(batch, C, frames) -> (batch, C, frames)``; per-channel gain (``weight``, starts at 1) and
    bias (starts at 0). Frame k never sees frame k + 1, so the norm is causal. The running
    sums are accumulated in float32 at least (float16 inputs included).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def extra_repr(self) -> str:
        return str(self.weight.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        count = x.shape[1] * torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=dtype)
        mean = x.sum(1, keepdim=True, dtype=dtype).cumsum(-1) / count
        power = x.square().sum(1, keepdim=True, dtype=dtype).cumsum(-1) / count
        std = (power - mean.square()).clamp_min(0).add(NORM_EPS).sqrt()
        normed = (x - mean.to(x.dtype)) / std.to(x.dtype)
        return normed * self.weight[:, None] + self.bias[:, None]


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation called ``norm`` ("gLN", "cLN" or "GN<g>") over ``channels`` channels."""
    if norm == "gLN":
        return GlobalLayerNorm(channels)
    if norm == "cLN":
        return CumulativeLayerNorm(channels)
    return nn.GroupNorm(_group_count(norm), channels, eps=NORM_EPS)


def _group_count(norm: str) -> int:
    match = re.fullmatch(r"GN([1-9][0-9]*)", norm) if isinstance(norm, str) else None
    if match is None:
        raise ValueError(f'norm must be "gLN", "cLN" or "GN<groups>" such as "GN8", got {norm!r}.')
    return int(match.group(1))


class Encoder(nn.Module):
    """The learned analysis filterbank: a 1-D conv from 1 channel to N filters of length L, hop L/2, no bias.

    ``(batch, 1, time) -> (batch, N, time / (L/2) + 1)`` (even L) for a ``time`` that the windows tile
    exactly (:meth:`ConvTasNet.forward` pads the end to such a length). The signal is padded
    with one hop of zeros at both ends, so every sample, the first and last included, lies
    in two windows.

    Args:
        N: number of filters (latent channels).
        L: filter length in samples; the hop is L // 2.
    """

    def __init__(self, N: int, L: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, N, L, stride=L // 2, padding=L // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Decoder(nn.Module):
    """The synthesis filterbank: a transposed 1-D conv from N channels to 1, length L, hop L/2, no bias.

    ``(batch, N, frames) -> (batch, 1, (frames - 1) * L/2)`` for even L: overlap-add of one
    learned waveform of length L per latent channel and frame, with the hop of padding that
    :class:`Encoder` added at each end cropped away.

    The parameters are those of ``nn.ConvTranspose1d(N, 1, L, stride=L // 2)`` (``V``,
    ``(N, 1, L)``). Without gradients (separating, evaluating) the output is that conv's, bit
    for bit torchaudio's. When gradients are needed it is computed as what a transposed conv
    is (:func:`~metalearn_sep.models.training_kernels.overlap_add_decode`): one matrix product
    ``V^T @ latent`` giving ``(batch, L, frames)`` windows, then their overlap-add. The same
    sum in another order (it differs from the conv by float32 rounding, and is nearer the
    float64 result), with a forward and backward that run faster on a CPU than the
    transposed conv's (:mod:`~metalearn_sep.models.training_kernels` says why).

    Args:
        N: number of latent channels.
        L: filter length in samples; the hop is L // 2.
    """

    def __init__(self, N: int, L: int) -> None:
        super().__init__()
        self.conv_transpose = nn.ConvTranspose1d(N, 1, L, stride=L // 2, padding=L // 2, bias=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        weight = self.conv_transpose.weight
        if not needs_grad(latent, weight):
            return self.conv_transpose(latent)
        return overlap_add_decode(latent, weight, self.conv_transpose.stride[0], self.conv_transpose.padding[0])


class PReLU(nn.PReLU):
    """``nn.PReLU()`` (one learnable slope, initialised to 0.25) with a faster backward.

    ``(batch, C, frames) -> (batch, C, frames)``; same parameter (``weight``, shape ``(1,)``)
    and same forward as ``nn.PReLU()``, so weights copy across. The backward is
    :func:`~metalearn_sep.models.training_kernels.prelu`'s (the slope's gradient as one dot product).
    """

    def __init__(self) -> None:
        super().__init__(num_parameters=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return prelu(x, self.weight.to(x.dtype))


class DepthwiseConv1d(nn.Conv1d):
    """Depthwise dilated conv over C channels: C groups, kernel P, dilation d, with bias.

    ``(batch, C, frames) -> (batch, C, frames)``. Non-causal: d (P - 1) / 2 zeros on each side
    ("same" padding; when d (P - 1) is odd the extra zero goes on the right, as with
    PyTorch's ``padding="same"``). Causal: d (P - 1) zeros on the left, so frame k sees frames
    k - d (P - 1) ... k only. Same parameters as ``nn.Conv1d(C, C, P, dilation=d, groups=C)``
    and the same output: that conv's without gradients, and when gradients are needed
    :func:`~metalearn_sep.models.training_kernels.depthwise_conv`'s faster forward and
    backward (the same sum in another order, equal to float32 rounding).
    """

    def __init__(self, channels: int, P: int, dilation: int, causal: bool = False) -> None:
        super().__init__(channels, channels, P, dilation=dilation, groups=channels)
        self.left = dilation * (P - 1) if causal else dilation * (P - 1) // 2

    def extra_repr(self) -> str:
        right = self.dilation[0] * (self.kernel_size[0] - 1) - self.left
        return f"{super().extra_repr()}, zeros=({self.left}, {right})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if not needs_grad(x, weight, bias):
            d, right = self.dilation[0], self.dilation[0] * (self.kernel_size[0] - 1) - self.left  # PyTorch's conv: torchaudio's output bit for bit
            if self.left == right:
                return F.conv1d(x, weight, bias, padding=right, dilation=d, groups=self.groups)
            return F.conv1d(F.pad(x, (self.left, right)), weight, bias, dilation=d, groups=self.groups)
        return depthwise_conv(x, weight, bias, self.dilation[0], self.left)


class ConvBlock(nn.Module):
    """One TCN block: 1x1 conv B -> H, PReLU, norm, depthwise dilated conv, PReLU, norm, then the outputs.

    ``(batch, B, frames) -> (residual (batch, B, frames) or None, skip (batch, Sc, frames))``.
    The depthwise conv (:class:`DepthwiseConv1d`: H groups, kernel P, dilation d) is causal or not.

    The residual (1x1 H -> B, added to the block input by :class:`MaskNetwork`) and the skip
    (1x1 H -> Sc, summed over all blocks) are two parallel 1x1 convs of the same input. They
    are stored and run as one 1x1 conv ``output`` with B + Sc output channels, the first B
    of which are the residual: the same maths as two convs, one matrix product instead of
    two. A block built with ``residual=False`` has only the Sc skip channels: the last block
    of the network does not need a residual, since nothing reads it.

    Args:
        B: input (and residual) channels.
        H: channels inside the block.
        Sc: skip channels.
        P: kernel size of the depthwise conv.
        dilation: dilation d of the depthwise conv.
        norm: "gLN", "cLN" or "GN<g>".
        causal: pad the depthwise conv on the left only.
        residual: whether the block has a residual output.
    """

    def __init__(
        self, B: int, H: int, Sc: int, P: int, dilation: int, norm: str = "gLN", causal: bool = False, residual: bool = True
    ) -> None:
        super().__init__()
        self.residual_channels = B if residual else 0
        self.conv_in = nn.Conv1d(B, H, 1)
        self.prelu_in = PReLU()
        self.norm_in = make_norm(norm, H)
        self.depthwise = DepthwiseConv1d(H, P, dilation, causal=causal)
        self.prelu_depthwise = PReLU()
        self.norm_depthwise = make_norm(norm, H)
        self.output = nn.Conv1d(H, self.residual_channels + Sc, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        y = self.norm_in(self.prelu_in(self.conv_in(x)))
        y = self.output(self.norm_depthwise(self.prelu_depthwise(self.depthwise(y))))
        if not self.residual_channels:
            return None, y
        residual, skip = y.split([self.residual_channels, y.shape[1] - self.residual_channels], dim=1)
        return residual, skip


class MaskNetwork(nn.Module):
    """The separator: a TCN that turns the encoder latent into one mask per source.

    ``(batch, N, frames) -> (batch, sources, N, frames)``.

    norm over the N channels, 1x1 conv N -> B, then R repeats of X :class:`ConvBlock` s with
    dilations 1, 2, ..., 2^(X-1). Every block but the last has a residual output, added to its
    input; every block has a skip output, and the skips are summed. The sum goes through a
    PReLU, a 1x1 conv Sc -> sources * N and the mask activation: "sigmoid" or "relu" per
    entry, or "softmax" across the sources (the masks then sum to one).

    The last block's residual would be computed and never used, so it is left out (as in
    torchaudio): this is why the parameter count is 5,116,977 for 4 sources at the paper's
    best configuration and not 65,664 more. Chapter 03's :class:`~metalearn_sep.models.meta_tasnet.MaskingTCN`
    is this TCN with per-instrument weights: same N, B, H, P, X, R, with Sc = B, norm "GN8",
    mask "softmax" over its K instruments (``num_sources`` here).

    Args:
        N: latent channels; B, H, Sc, P, X, R: see :class:`ConvBlock` and the module docstring.
        num_sources: number of masks.
        norm: "gLN", "cLN" or "GN<g>" (also used on the input).
        mask: "sigmoid", "relu" or "softmax".
        causal: causal depthwise convs (use with norm="cLN").
    """

    def __init__(
        self, N: int, B: int, H: int, Sc: int, P: int, X: int, R: int, num_sources: int,
        norm: str = "gLN", mask: str = "sigmoid", causal: bool = False,
    ) -> None:
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}.")
        if mask == "softmax" and num_sources == 1:
            raise ValueError('A softmax across one source is 1 everywhere (the mask would pass the whole mixture): '
                             'give a one-source model mask="sigmoid" or "relu".')
        self.num_sources = num_sources
        self.mask = mask
        self.input_norm = make_norm(norm, N)
        self.bottleneck = nn.Conv1d(N, B, 1)
        last = R * X - 1
        self.blocks = nn.ModuleList(
            ConvBlock(B, H, Sc, P, 2 ** (i % X), norm=norm, causal=causal, residual=i != last) for i in range(R * X)
        )
        self.output_prelu = PReLU()
        self.mask_conv = nn.Conv1d(Sc, num_sources * N, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck(self.input_norm(latent))
        skip_sum = 0
        for block in self.blocks:
            residual, skip = block(x)
            if residual is not None:
                x = x + residual
            skip_sum = skip_sum + skip
        logits = self.mask_conv(self.output_prelu(skip_sum))
        logits = logits.view(latent.shape[0], self.num_sources, latent.shape[1], latent.shape[2])
        if self.mask == "softmax":
            return logits.softmax(dim=1)
        return torch.sigmoid(logits) if self.mask == "sigmoid" else torch.relu(logits)


class ReceptiveField(NamedTuple):
    """How much context one latent frame's mask sees: ``frames`` latent frames, ``samples`` input samples."""

    frames: int
    samples: int

    def seconds(self, sample_rate: int) -> float:
        """``samples`` in seconds at ``sample_rate`` Hz."""
        return self.samples / sample_rate


class ConvTasNet(Separator):
    """Conv-TasNet: :class:`Encoder`, :class:`MaskNetwork`, :class:`Decoder`.

    ``(batch, 1, time) -> (batch, sources, 1, time)``: one mono waveform per source, as long as
    the input. A length that the encoder windows do not tile exactly is padded with zeros
    at the end and the output cropped back (the rule torchaudio uses, so the two agree).

    The defaults are the paper's best configuration (N=512, L=16, B=Sc=128, H=512, P=3, X=8,
    R=3, gLN, non-causal, sigmoid masks) for the four MUSDB18 sources: 5,116,977 parameters
    (4,984,881 with two sources). ``self.config`` holds the constructor arguments as a
    JSON-serialisable dict, so ``ConvTasNet(**model.config)`` rebuilds the architecture.

    Args:
        num_sources: number of sources to separate.
        N, L, B, H, Sc, P, X, R: the paper's symbols (module docstring).
        norm: "gLN" (global layer norm), "cLN" (cumulative layer norm) or "GN<g>" (group
            norm with g groups, e.g. "GN8").
        mask: "sigmoid", "relu" or "softmax" (across sources).
        causal: a causal model (left-padded depthwise convs; needs norm="cLN"). Its output
            at sample t depends on input samples up to t + L - 1 only: the one window of
            look-ahead of the encoder/decoder.
        start: the encoder's and decoder's initial filters: "random" (PyTorch's default, as
            in the paper and torchaudio) or "fourier" (:func:`fourier_start_` with its
            square-root Hann window; needs an even N). The rest is initialised the same
            either way, so one seed gives the same mask network with both.
        sample_rate: the rate (Hz) the model is trained and separated at, its one entry of
            :attr:`sample_rates` (8 kHz: chapter 01's rate and the paper's). The weights work at
            any rate; this records which one they were trained for, so that separation
            resamples a song to it.

    As a :class:`~metalearn_sep.models.separator.Separator` it has one stage: ``stride`` L/2,
    :attr:`min_length` 1 (it pads any length itself), :meth:`separate_stages` is ``self(inputs[0])``.
    """

    def __init__(
        self,
        num_sources: int = 4,
        N: int = 512,
        L: int = 16,
        B: int = 128,
        H: int = 512,
        Sc: int = 128,
        P: int = 3,
        X: int = 8,
        R: int = 3,
        norm: str = "gLN",
        mask: str = "sigmoid",
        causal: bool = False,
        start: str = "random",
        sample_rate: int = 8000,
    ) -> None:
        super().__init__()
        sizes = {"num_sources": num_sources, "N": N, "L": L, "B": B, "H": H, "Sc": Sc, "P": P, "X": X, "R": R}
        sizes = {name: check_int(value, name) for name, value in sizes.items()}
        num_sources, N, L, B, H, Sc, P, X, R = sizes.values()
        if L < 2:
            raise ValueError(f"L must be at least 2 samples (the hop is L // 2), got {L}.")
        if norm != "gLN" and norm != "cLN":
            groups = _group_count(norm)
            if N % groups or H % groups:
                raise ValueError(f"norm={norm!r} needs N and H divisible by {groups}, got N={N}, H={H}.")
        if causal and norm != "cLN":
            raise ValueError(f'A causal model needs norm="cLN" (other norms use future frames), got {norm!r}.')
        if start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}.")
        if start == "fourier" and N % 2:
            raise ValueError(f'start="fourier" needs an even number of encoder filters N, got N={N}.')
        self.config = {**sizes, "norm": norm, "mask": mask, "causal": bool(causal), "start": start, "sample_rate": check_rate(sample_rate)}
        self.num_sources, self.L, self.stride, self.sample_rate = num_sources, L, L // 2, self.config["sample_rate"]
        self.encoder = Encoder(N, L)
        self.mask_network = MaskNetwork(N, B, H, Sc, P, X, R, num_sources, norm=norm, mask=mask, causal=causal)
        self.decoder = Decoder(N, L)
        if start == "fourier":
            fourier_start_(self)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """Separate ``mixture`` ``(batch, 1, time)`` into ``(batch, sources, 1, time)``."""
        check_mixture(mixture, "ConvTasNet")
        batch, _, time = mixture.shape
        latent = self.encoder(F.pad(mixture, (0, self.padding(time))))
        masked = self.mask_network(latent) * latent.unsqueeze(1)
        estimates = self.decoder(masked.flatten(0, 1))
        return estimates.view(batch, self.num_sources, 1, -1)[..., :time]

    @property
    def sample_rates(self) -> list[int]:
        """``[sample_rate]``: one stage."""
        return [self.sample_rate]

    @property
    def min_length(self) -> int:
        """1: :meth:`forward` pads any input to a length the windows tile."""
        return 1

    def separate_stages(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """``self(inputs[0])``: ``[(batch, 1, T)] -> (batch, sources, 1, T)``."""
        return self(inputs[0])

    def padding(self, time: int) -> int:
        """Zeros appended to a ``time``-sample input so that the windows (length L, hop L/2) tile it exactly.

        After the one-hop padding at each end that :class:`Encoder` adds, ``time + padding + 2 * hop - L``
        must be a multiple of the hop.
        """
        return (self.L - time) % self.stride

    def receptive_field(self) -> ReceptiveField:
        """Context that one frame's mask sees, as the paper counts it.

        Each repeat adds (P - 1)(1 + 2 + ... + 2^(X-1)) = (P - 1)(2^X - 1) frames to one frame, so
        the TCN sees ``frames = 1 + R (P - 1) (2^X - 1)`` latent frames; these start one hop
        apart and each spans L samples, so ``samples = (frames - 1) L/2 + L``. For the paper's
        best configuration: 1 + 3 * 2 * 255 = 1,531 frames and 1,530 * 8 + 16 = 12,256 samples,
        1.532 s at 8 kHz: the paper's "1.53 s". The same formula gives every receptive field of
        the paper's table (3.83 s for L=40, 3.06 s for L=32, 1.28 s for X=7, R=2, L=40, ...).
        """
        c = self.config
        frames = 1 + c["R"] * (c["P"] - 1) * (2 ** c["X"] - 1)
        return ReceptiveField(frames, (frames - 1) * self.stride + self.L)

    def parameter_table(self) -> dict[str, int]:
        """Where the parameters sit: counts by part, with ``"total"`` last (the parts sum to it).

        Keys: ``encoder``; the mask network's ``input_norm``, ``bottleneck`` (1x1 N -> B), the
        blocks' ``conv_in`` (1x1 B -> H), ``prelu``, ``norm``, ``depthwise``, ``residual``
        (1x1 H -> B) and ``skip`` (1x1 H -> Sc), each summed over all R * X blocks, then
        ``output_prelu`` and ``mask_conv`` (1x1 Sc -> sources * N), all prefixed
        ``mask_network/``; ``decoder``; ``total``.
        """

        def count(*modules: nn.Module) -> int:
            return sum(p.numel() for m in modules for p in m.parameters())

        net, blocks = self.mask_network, list(self.mask_network.blocks)
        residual = sum(b.residual_channels * (b.output.in_channels + 1) for b in blocks)
        table = {
            "encoder": count(self.encoder),
            "mask_network/input_norm": count(net.input_norm),
            "mask_network/bottleneck": count(net.bottleneck),
            "mask_network/blocks/conv_in": count(*(b.conv_in for b in blocks)),
            "mask_network/blocks/prelu": count(*(m for b in blocks for m in (b.prelu_in, b.prelu_depthwise))),
            "mask_network/blocks/norm": count(*(m for b in blocks for m in (b.norm_in, b.norm_depthwise))),
            "mask_network/blocks/depthwise": count(*(b.depthwise for b in blocks)),
            "mask_network/blocks/residual": residual,
            "mask_network/blocks/skip": count(*(b.output for b in blocks)) - residual,
            "mask_network/output_prelu": count(net.output_prelu),
            "mask_network/mask_conv": count(net.mask_conv),
            "decoder": count(self.decoder),
        }
        table["total"] = sum(table.values())
        return table

    @classmethod
    def from_torchaudio(cls, model: torchaudio.models.ConvTasNet, sample_rate: int = 8000) -> ConvTasNet:
        """A ConvTasNet with ``model``'s configuration (read off its modules), a copy of all its weights and ``sample_rate``.

        :mod:`~metalearn_sep.models.torchaudio_port` maps torchaudio's layout onto this one
        (torchaudio ties Sc to B, always uses gLN and is non-causal); the two then give the same output.
        """
        ours = cls(**torchaudio_config(model), sample_rate=sample_rate)
        ours.to(model.encoder.weight.device, model.encoder.weight.dtype)  # before the copy: no rounding
        ours.load_state_dict(torchaudio_state(model))
        return ours
