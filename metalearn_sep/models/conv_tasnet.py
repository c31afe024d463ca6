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
into this layout; the two then give the same output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

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


def _needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd will want gradients of an op on ``tensors`` (the layers below then take their training form)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class Decoder(nn.Module):
    """The synthesis filterbank: a transposed 1-D conv from N channels to 1, length L, hop L/2, no bias.

    ``(batch, N, frames) -> (batch, 1, (frames - 1) * L/2)`` for even L: overlap-add of one
    learned waveform of length L per latent channel and frame, with the hop of padding that
    :class:`Encoder` added at each end cropped away.

    The parameters are those of ``nn.ConvTranspose1d(N, 1, L, stride=L // 2)`` (``V``,
    ``(N, 1, L)``). Without gradients (separating, evaluating) the output is that conv's, bit
    for bit torchaudio's. When gradients are needed it is computed as what a transposed conv
    is: one matrix product ``V^T @ latent`` giving ``(batch, L, frames)`` windows, then their
    overlap-add (``F.fold``). The same sum in another order (it differs from the conv by
    float32 rounding, and is nearer the float64 result); on a CPU its forward and backward
    run several times faster than the transposed conv's (``benchmarks/bench_conv_tasnet_layers.py``
    prints the ratio).

    Args:
        N: number of latent channels.
        L: filter length in samples; the hop is L // 2.
    """

    def __init__(self, N: int, L: int) -> None:
        super().__init__()
        self.conv_transpose = nn.ConvTranspose1d(N, 1, L, stride=L // 2, padding=L // 2, bias=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        weight = self.conv_transpose.weight
        if not _needs_grad(latent, weight):
            return self.conv_transpose(latent)
        L, hop, crop, frames = weight.shape[-1], self.conv_transpose.stride[0], self.conv_transpose.padding[0], latent.shape[-1]
        windows = torch.matmul(weight[:, 0].to(latent.dtype).t(), latent)  # (batch, L, frames)
        length = (frames - 1) * hop + L
        out = F.fold(windows, (1, length), (1, L), stride=(1, hop)).view(latent.shape[0], 1, length)
        return out[..., crop : length - crop]


# Two layers with a hand-written backward. They compute what nn.PReLU() and a depthwise
# nn.Conv1d compute (same parameters); their gradients are written out, because PyTorch's
# CPU backward of both is several times slower than the maths needs, and every block runs
# two PReLUs and one depthwise conv (48 and 24 at the paper's configuration). The
# depthwise conv's forward is written out too when gradients are needed (without them it
# is PyTorch's conv, bit for bit torchaudio's). With the fused residual/skip conv of
# ConvBlock and the Decoder's overlap-add, a training step runs faster than torchaudio's
# on a CPU (benchmarks/bench_conv_tasnet.py has the ratio).


class _PReLUFunction(torch.autograd.Function):
    """PReLU with one slope a: y = x where x > 0, a x elsewhere; the backward written out.

    ``dy/dx`` is 1 where x > 0 and a elsewhere; ``dL/da`` is the sum of ``grad * x`` over
    x <= 0 (one dot product, where PyTorch's CPU backward builds a per-element gradient of a
    and then sums it).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, slope)
        return F.prelu(x, slope)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, slope = ctx.saved_tensors
        positive = grad * x.sign().clamp_(min=0)  # grad where x > 0, else 0
        negative = grad - positive  # grad where x <= 0, else 0
        grad_slope = torch.dot(negative.reshape(-1), x.reshape(-1).to(negative.dtype)).reshape(slope.shape)
        return torch.addcmul(positive, negative, slope), grad_slope


class PReLU(nn.PReLU):
    """``nn.PReLU()`` (one learnable slope, initialised to 0.25) with a faster backward.

    ``(batch, C, frames) -> (batch, C, frames)``; same parameter (``weight``, shape ``(1,)``)
    and same forward as ``nn.PReLU()``, so weights copy across.
    """

    def __init__(self) -> None:
        super().__init__(num_parameters=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PReLUFunction.apply(x, self.weight.to(x.dtype))


def _depthwise_taps(P: int, dilation: int, left: int, frames: int) -> Iterator[tuple[int, slice, slice]]:
    """``(k, out, shifted)`` for each tap k: output frames ``t`` in ``out`` read input frames ``t + s_k`` in ``shifted``.

    ``s_k = k d - left``; taps whose every ``t + s_k`` falls outside the input are skipped.
    """
    for k in range(P):
        shift = k * dilation - left
        out = slice(max(0, -shift), min(frames, frames - shift))
        if out.stop > out.start:
            yield k, out, slice(out.start + shift, out.stop + shift)


class _DepthwiseConvFunction(torch.autograd.Function):
    """Depthwise dilated conv: ``y[c, t] = bias[c] + sum_k weight[c, k] x[c, t + s_k]``, ``s_k = k d - left``.

    (x is zero outside its frames.) Both passes are written as P shifted products, several
    times faster on a CPU than PyTorch's dilated depthwise conv and its backward:
    ``y[c, t] += weight[c, k] x[c, t + s_k]``; ``dx[c, t + s_k] += weight[c, k] grad[c, t]``,
    ``dweight[c, k] = sum_(batch, t) grad[c, t] x[c, t + s_k]`` and ``dbias[c] = sum_(batch, t) grad[c, t]``.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int, left: int
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation, ctx.left = dilation, left
        y = bias[:, None].expand_as(x).clone(memory_format=torch.contiguous_format)
        for k, out, shifted in _depthwise_taps(weight.shape[-1], dilation, left, x.shape[-1]):
            y[..., out].addcmul_(x[..., shifted], weight[:, :, k])
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        x, weight = ctx.saved_tensors
        grad_x, grad_weight = torch.zeros_like(x), torch.zeros_like(weight[:, 0])
        for k, out, shifted in _depthwise_taps(weight.shape[-1], ctx.dilation, ctx.left, grad.shape[-1]):
            grad_x[..., shifted].addcmul_(grad[..., out], weight[:, :, k])
            grad_weight[:, k] = (grad[..., out] * x[..., shifted]).sum((0, 2))
        return grad_x, grad_weight.unsqueeze(1), grad.sum((0, 2)), None, None


class DepthwiseConv1d(nn.Conv1d):
    """Depthwise dilated conv over C channels: C groups, kernel P, dilation d, with bias.

    ``(batch, C, frames) -> (batch, C, frames)``. Non-causal: d (P - 1) / 2 zeros on each side
    ("same" padding; when d (P - 1) is odd the extra zero goes on the right, as with
    PyTorch's ``padding="same"``). Causal: d (P - 1) zeros on the left, so frame k sees frames
    k - d (P - 1) ... k only. Same parameters as ``nn.Conv1d(C, C, P, dilation=d, groups=C)``
    and the same output: that conv's without gradients, and when gradients are needed
    :class:`_DepthwiseConvFunction`'s faster forward and backward (the same sum in another
    order, equal to float32 rounding).
    """

    def __init__(self, channels: int, P: int, dilation: int, causal: bool = False) -> None:
        super().__init__(channels, channels, P, dilation=dilation, groups=channels)
        self.left = dilation * (P - 1) if causal else dilation * (P - 1) // 2

    def extra_repr(self) -> str:
        right = self.dilation[0] * (self.kernel_size[0] - 1) - self.left
        return f"{super().extra_repr()}, zeros=({self.left}, {right})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if not _needs_grad(x, weight, bias):
            d, right = self.dilation[0], self.dilation[0] * (self.kernel_size[0] - 1) - self.left  # PyTorch's conv: torchaudio's output bit for bit
            if self.left == right:
                return F.conv1d(x, weight, bias, padding=right, dilation=d, groups=self.groups)
            return F.conv1d(F.pad(x, (self.left, right)), weight, bias, dilation=d, groups=self.groups)
        return _DepthwiseConvFunction.apply(x, weight, bias, self.dilation[0], self.left)


class ConvBlock(nn.Module):
    """One TCN block: 1x1 conv B -> H, PReLU, norm, depthwise dilated conv, PReLU, norm, then the outputs.

    ``(batch, B, frames) -> (residual (batch, B, frames) or None, skip (batch, Sc, frames))``.

    The depthwise conv has H groups, kernel P and dilation d. Non-causal blocks pad it by
    d (P - 1) / 2 frames on each side ("same" padding); causal blocks pad d (P - 1) frames
    on the left only, so frame k sees frames k - d (P - 1) ... k and nothing later.

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
        self,
        B: int,
        H: int,
        Sc: int,
        P: int,
        dilation: int,
        norm: str = "gLN",
        causal: bool = False,
        residual: bool = True,
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
    best configuration and not 65,664 more.

    Args:
        N: latent channels; B, H, Sc, P, X, R: see :class:`ConvBlock` and the module docstring.
        num_sources: number of masks.
        norm: "gLN", "cLN" or "GN<g>" (also used on the input).
        mask: "sigmoid", "relu" or "softmax".
        causal: causal depthwise convs (use with norm="cLN").
    """

    def __init__(
        self,
        N: int,
        B: int,
        H: int,
        Sc: int,
        P: int,
        X: int,
        R: int,
        num_sources: int,
        norm: str = "gLN",
        mask: str = "sigmoid",
        causal: bool = False,
    ) -> None:
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}.")
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


class ConvTasNet(nn.Module):
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
    ) -> None:
        super().__init__()
        sizes = {"num_sources": num_sources, "N": N, "L": L, "B": B, "H": H, "Sc": Sc, "P": P, "X": X, "R": R}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
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
        self.config = {**sizes, "norm": norm, "mask": mask, "causal": bool(causal), "start": start}
        self.num_sources, self.L, self.stride = num_sources, L, L // 2
        self.encoder = Encoder(N, L)
        self.mask_network = MaskNetwork(N, B, H, Sc, P, X, R, num_sources, norm=norm, mask=mask, causal=causal)
        self.decoder = Decoder(N, L)
        if start == "fourier":
            fourier_start_(self)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """Separate ``mixture`` ``(batch, 1, time)`` into ``(batch, sources, 1, time)``."""
        if not isinstance(mixture, torch.Tensor) or mixture.dim() != 3 or mixture.shape[1] != 1:
            got = tuple(mixture.shape) if isinstance(mixture, torch.Tensor) else type(mixture).__name__
            raise ValueError(f"ConvTasNet expects a mono waveform of shape (batch, 1, time), got {got}.")
        if mixture.shape[-1] == 0 or not mixture.is_floating_point():
            raise ValueError(
                "ConvTasNet expects a non-empty floating-point waveform, "
                f"got shape {tuple(mixture.shape)} of {mixture.dtype}."
            )
        batch, _, time = mixture.shape
        latent = self.encoder(F.pad(mixture, (0, self.padding(time))))
        masked = self.mask_network(latent) * latent.unsqueeze(1)
        estimates = self.decoder(masked.flatten(0, 1))
        return estimates.view(batch, self.num_sources, 1, -1)[..., :time]

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
    def from_torchaudio(cls, model: torchaudio.models.ConvTasNet) -> ConvTasNet:
        """A ConvTasNet with ``model``'s configuration (read off its modules) and a copy of all its weights.

        torchaudio's layout: ``encoder``, ``mask_generator`` (``input_norm``, ``input_conv``,
        ``conv_layers[i].conv_layers`` = 1x1 conv, PReLU, gLN, depthwise conv, PReLU, gLN, then
        ``res_out`` and ``skip_out``, ``output_prelu``, ``output_conv``), ``decoder``. It ties
        Sc to B, always uses gLN and is non-causal.
        """
        import torchaudio

        if not isinstance(model, torchaudio.models.ConvTasNet):
            raise ValueError(f"from_torchaudio expects a torchaudio.models.ConvTasNet, got {type(model).__name__}.")
        generator = model.mask_generator
        first = generator.conv_layers[0].conv_layers
        depthwise = [layer.conv_layers[3] for layer in generator.conv_layers]
        dilations = [conv.dilation[0] for conv in depthwise]
        X = dilations.index(1, 1) if dilations.count(1) > 1 else len(dilations)
        R = len(dilations) // X
        P = first[3].kernel_size[0]
        paddings = [conv.padding[0] for conv in depthwise]
        if dilations != [2**i for i in range(X)] * R or paddings != [d * (P - 1) // 2 for d in dilations]:
            raise ValueError(f"Unexpected torchaudio mask generator: dilations {dilations}, kernel size {P}.")
        activations = {torch.nn.Sigmoid: "sigmoid", torch.nn.ReLU: "relu"}
        ours = cls(
            num_sources=model.num_sources,
            N=model.enc_num_feats,
            L=model.enc_kernel_size,
            B=generator.input_conv.out_channels,
            H=first[0].out_channels,
            Sc=generator.output_conv.in_channels,
            P=P,
            X=X,
            R=R,
            norm="gLN",
            mask=activations[type(generator.mask_activate)],
        )
        state = {
            "encoder.conv.weight": model.encoder.weight,
            "decoder.conv_transpose.weight": model.decoder.weight,
            "mask_network.output_prelu.weight": generator.output_prelu.weight,
        }
        for name in ("weight", "bias"):
            state[f"mask_network.input_norm.{name}"] = getattr(generator.input_norm, name)
            state[f"mask_network.bottleneck.{name}"] = getattr(generator.input_conv, name)
            state[f"mask_network.mask_conv.{name}"] = getattr(generator.output_conv, name)
        for i, layer in enumerate(generator.conv_layers):
            prefix = f"mask_network.blocks.{i}"
            parts = ("conv_in", "prelu_in", "norm_in", "depthwise", "prelu_depthwise", "norm_depthwise")
            for part, module in zip(parts, layer.conv_layers):
                for name, tensor in module.named_parameters():
                    state[f"{prefix}.{part}.{name}"] = tensor
            outputs = ([] if layer.res_out is None else [layer.res_out]) + [layer.skip_out]
            state[f"{prefix}.output.weight"] = torch.cat([conv.weight for conv in outputs])
            state[f"{prefix}.output.bias"] = torch.cat([conv.bias for conv in outputs])
        ours.to(model.encoder.weight.device, model.encoder.weight.dtype)  # before the copy: no rounding
        ours.load_state_dict({name: tensor.detach() for name, tensor in state.items()})
        return ours


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

    In 5-minute runs of the cpu model (``benchmarks/bench_conv_tasnet_train.py``, whose
    docstring has the figures) this start lifted other and vocals out of the stall that some
    random starts fall into: at N = 256, seeds 0-2 gave 9.64 dB on average with the Hann
    window and 9.72 dB with the square-root Hann window, against 8.77 dB from random
    filters, and the seed moved the result by 0.2-0.4 dB instead of 1.5 dB.

    Raises:
        ValueError: for an odd N (the basis pairs a cosine and a sine per frequency) or an
            unknown window.
    """
    weight = model.encoder.conv.weight
    N, _, L = weight.shape
    if N % 2:
        raise ValueError(f"fourier_start_ needs an even number of encoder filters N, got N={N}.")
    if window not in ("hann", "sqrt-hann"):
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
