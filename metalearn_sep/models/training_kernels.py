"""The CPU training forms of three Conv-TasNet layers: the same maths as PyTorch's ops, in a faster order.

:class:`~metalearn_sep.models.conv_tasnet.Decoder`,
:class:`~metalearn_sep.models.conv_tasnet.DepthwiseConv1d` and
:class:`~metalearn_sep.models.conv_tasnet.PReLU` hold the parameters of
``nn.ConvTranspose1d``, a depthwise ``nn.Conv1d`` and ``nn.PReLU()``. Without gradients
(separating, evaluating) they run those PyTorch ops, bit for bit torchaudio's outputs. When
autograd needs gradients (:func:`needs_grad`) they call the kernels here instead:

* :func:`overlap_add_decode`: the transposed conv as what it is, one matrix product giving a
  window of L samples per latent frame, then their overlap-add (``F.fold``);
* :func:`depthwise_conv`: the dilated depthwise conv as P shifted products, forward and
  backward written out;
* :func:`prelu`: PReLU with its backward written out (the slope's gradient is one dot product).

Why: PyTorch's CPU backward of the transposed conv, of a dilated depthwise conv and of PReLU
is several times slower than the maths needs, and every TCN block runs two PReLUs and one
depthwise conv (48 and 24 at the paper's configuration, R X = 24 blocks). Each kernel
computes the same sum in another order, so it agrees with PyTorch's op to float32 rounding.
``benchmarks/bench_conv_tasnet_layers.py`` times each form against PyTorch's, and
``benchmarks/bench_conv_tasnet.py`` whole training steps against torchaudio's.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd will want gradients of an op on ``tensors``: the layers then take their training form."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def overlap_add_decode(latent: torch.Tensor, weight: torch.Tensor, stride: int, crop: int) -> torch.Tensor:
    """``conv_transpose1d(latent, weight, stride=stride, padding=crop)`` as a matrix product and an overlap-add.

    ``latent`` ``(batch, N, frames)`` and the decoder's basis V ``weight`` ``(N, 1, L)`` ->
    ``(batch, 1, (frames - 1) stride + L - 2 crop)``: ``V^T @ latent`` gives one window of L
    samples per frame ``(batch, L, frames)``; ``F.fold`` adds the windows ``stride`` apart,
    and ``crop`` samples are cut from each end.
    """
    L, frames = weight.shape[-1], latent.shape[-1]
    windows = torch.matmul(weight[:, 0].to(latent.dtype).t(), latent)  # (batch, L, frames)
    length = (frames - 1) * stride + L
    out = F.fold(windows, (1, length), (1, L), stride=(1, stride)).view(latent.shape[0], 1, length)
    return out[..., crop : length - crop]


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


def prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """``F.prelu(x, slope)`` for one slope ``(1,)``, with the written-out backward; any shape of ``x``."""
    return _PReLUFunction.apply(x, slope)


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

    (x is zero outside its frames.) Both passes are P shifted products:
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


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int, left: int) -> torch.Tensor:
    """A depthwise dilated conv over C channels with ``left`` zeros before the input and as many after as fit.

    ``x`` ``(batch, C, frames)``, ``weight`` ``(C, 1, P)``, ``bias`` ``(C,)`` -> ``(batch, C, frames)``:
    ``y[c, t] = bias[c] + sum_k weight[c, k] x[c, t + k d - left]``, the output of
    ``F.conv1d(F.pad(x, (left, d (P - 1) - left)), weight, bias, dilation=d, groups=C)``.
    """
    return _DepthwiseConvFunction.apply(x, weight, bias, dilation, left)
