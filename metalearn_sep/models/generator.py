"""The hypernetwork ("meta") part of Meta-TasNet: layers whose weights are generated per instrument.

Meta-TasNet does not train four separate extractors (drums, bass, other, vocals). Each
stage learns one instrument embedding table (:class:`InstrumentEmbedding`, ``4 x E1``)
and every convolution and every GroupNorm of its masking network owns a tiny generator,
two linear maps::

    e_i  (E1,)  --Linear(E1 -> E2)-->  (E2,)  --Linear(E2 -> #weights)-->  that layer's weights for instrument i

so the weights of extractor ``i`` are a function of ``e_i``. The four extractors then run
at once: their four kernels are stacked and applied by *one* grouped convolution (groups =
instruments x groups), and their four affines by *one* ``F.group_norm`` with
instruments x 8 groups. There is no Python loop over instruments.

Parameter cost. The second linear map has one row per generated weight: E2 weights plus one
bias, i.e. E2 + 1 = 6 trained parameters (E2 = 5) for each weight of the layer, whereas four
independent copies of that weight cost 4. Each layer also pays E1*E2 + E2 = 45 for its
bottleneck. So in the released configuration the generator is *larger* than four
independent extractors (9.28M vs 6.18M at stage 0); what it buys is shared structure
between instruments and an embedding space one can move in (e.g. halfway between bass
and drums), not fewer trained parameters.

Layout. Every layer here maps features ``(batch, K, C, T)`` (K instruments) to
``(batch, K, C', T)`` and takes the instrument embeddings ``(K, E1)`` as its second
argument; the stage owns the embedding table, so any ``(K, E1)`` tensor (interpolated,
K >= 1) can be passed. The independent counterparts (:class:`IndependentConv1d`,
:class:`IndependentGroupNorm`, the paper's baseline) keep K ordinary weight sets, accept the
same arguments and ignore the embedding.

FiLM (Perez et al. 2018; in source separation, Meseguer-Brocal & Peeters's Conditioned-U-Net,
ISMIR 2019) is the light alternative: every convolution is shared by the instruments
(:class:`SharedConv1d`, one ordinary weight set) and only the GroupNorm affines, a
per-channel scale gamma and shift beta applied after each normalisation, are per
instrument, generated from the embedding or stored in a table. ``InstrumentLayers(film=True)``
builds it.

Inspection: :meth:`GeneratedConv1d.materialize` / :meth:`GeneratedGroupNorm.materialize`
give the concrete per-instrument weights, :func:`generated_weights` collects them for a
whole network, and :func:`to_independent` turns a generated network into an independent one
holding exactly those weights (same outputs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .training_kernels import depthwise_conv

INSTRUMENTS = 4
"""Number of instruments (drums, bass, other, vocals) an embedding table holds."""


FAST_FORMS = True
"""Run the pointwise layers of :class:`InstrumentConv1d` as batched matrix products and its
depthwise ones as shifted products (:func:`~metalearn_sep.models.training_kernels.depthwise_conv`),
the default; ``False`` runs every layer as one grouped ``F.conv1d`` (what
``benchmarks/bench_separate.py`` compares them with)."""

def check_embedding(embedding: object, E1: int) -> int:
    """Return the number of instruments K of an embedding ``(K, E1)``, or raise ``ValueError``."""
    if not isinstance(embedding, torch.Tensor):
        raise ValueError(f"The instrument embedding must be a tensor of shape (instruments, E1={E1}), got {type(embedding).__name__}.")
    if embedding.dim() != 2 or embedding.shape[0] < 1 or embedding.shape[1] != E1:
        raise ValueError(f"The instrument embedding must have shape (instruments >= 1, E1={E1}), got {tuple(embedding.shape)}.")
    if not embedding.is_floating_point():
        raise ValueError(f"The instrument embedding must be floating point, got {embedding.dtype}.")
    return embedding.shape[0]


def _check_features(x: object, instruments: int, channels: int, layer: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{layer} expects features of shape (batch, instruments, channels, time), got {shape}.")
    if x.shape[1] != instruments or x.shape[2] != channels:
        raise ValueError(
            f"{layer} expects features of shape (batch, {instruments}, {channels}, time), got {tuple(x.shape)}."
        )


def _fold_instruments(x: object, instruments: int, channels: int, layer: str) -> torch.Tensor:
    """Check features ``(batch, K, C, T)`` and fold the instruments into the channels: ``(batch, K * C, T)``."""
    _check_features(x, instruments, channels, layer)
    return x.reshape(x.shape[0], instruments * channels, x.shape[-1])


class InstrumentEmbedding(nn.Embedding):
    """The stage's instrument embedding table ``(4, E1)``: one learned vector per instrument.

    Calling it with instrument indices (ints in 0-3, in ``SOURCES`` order) returns their rows
    ``(K, E1)``; with no argument, all four rows. :meth:`interpolate` mixes two rows.
    """

    def __init__(self, E1: int = 8, instruments: int = INSTRUMENTS) -> None:
        super().__init__(instruments, E1)

    def forward(self, instruments: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Rows ``(K, E1)`` for instrument indices ``(K,)``; all rows when ``instruments`` is None."""
        if instruments is None:
            return self.weight
        index = torch.as_tensor(instruments, device=self.weight.device)
        if index.dim() != 1 or index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
            raise ValueError(f"Instrument indices must be a 1-D sequence of integers, got {instruments!r}.")
        bad = index[(index < 0) | (index >= self.num_embeddings)]
        if bad.numel():
            raise ValueError(
                f"Instrument indices must lie in 0..{self.num_embeddings - 1}, got {bad.tolist()}."
            )
        return super().forward(index)

    def interpolate(self, first: int, second: int, weight: float) -> torch.Tensor:
        """``(1 - weight) * e_first + weight * e_second`` as a ``(1, E1)`` row (weight 0.5: halfway)."""
        rows = self([first, second])
        return torch.lerp(rows[0], rows[1], float(weight)).unsqueeze(0)


class InstrumentLayer(nn.Module):
    """A layer run for K instruments at once, each with its own parameters.

    Subclasses say where the per-instrument parameters come from: :meth:`materialize` gives
    them for the instrument embedding ``(K, E1)`` (generated layers) or from stored weight
    sets (independent layers, which ignore the embedding).
    """

    def materialize(self, embedding: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The per-instrument parameters, each with K as its first axis (see the subclass)."""
        raise NotImplementedError


class InstrumentConv1d(InstrumentLayer):
    """A 1-D convolution run for K instruments at once, each with its own weights.

    :meth:`materialize` gives the weights ``(K, C_out, C_in / groups, kernel)`` and biases
    ``(K, C_out)`` or None (subclasses say where they come from); the
    forward pass is shared: the K kernels are stacked and applied by one grouped
    ``F.conv1d`` with ``groups = K * groups`` on ``(batch, K * C_in, T)``, except for the
    pointwise (1x1, ungrouped) layers, most of the masking network, which are a batched
    matrix product ``(K, C_out, C_in) @ (batch, K, C_in, T)``, and the depthwise ones, which
    are P shifted products: the same sums, which run faster that way on a CPU than as a
    grouped convolution (:data:`FAST_FORMS`; ``benchmarks/bench_separate.py`` compares them).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, dilation: int, padding: int, groups: int) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Channels ({in_channels} -> {out_channels}) must be divisible by groups={groups}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.groups = groups

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None) -> torch.Tensor:
        """``(batch, K, C_in, T)`` and embeddings ``(K, E1)`` -> ``(batch, K, C_out, T_out)``."""
        weight, bias = self.materialize(embedding)
        K = weight.shape[0]
        if FAST_FORMS and self.kernel_size == 1 and self.groups == 1:  # one matrix product per instrument
            _check_features(x, K, self.in_channels, type(self).__name__)
            y = torch.matmul(weight[..., 0], x)  # (K, C_out, C_in) @ (batch, K, C_in, T)
            return y if bias is None else y + bias[..., None]
        folded = _fold_instruments(x, K, self.in_channels, type(self).__name__)
        if FAST_FORMS and self.groups == self.in_channels == self.out_channels and 2 * self.padding == self.dilation * (self.kernel_size - 1):
            flat_bias = bias.reshape(-1) if bias is not None else weight.new_zeros(K * self.out_channels)
            y = depthwise_conv(folded, weight.reshape(K * self.out_channels, 1, self.kernel_size), flat_bias, self.dilation, self.padding)
            return y.view(x.shape[0], K, self.out_channels, y.shape[-1])
        y = F.conv1d(
            folded,
            weight.reshape(K * self.out_channels, self.in_channels // self.groups, self.kernel_size),
            None if bias is None else bias.reshape(-1),
            padding=self.padding,
            dilation=self.dilation,
            groups=K * self.groups,
        )
        return y.view(x.shape[0], K, self.out_channels, y.shape[-1])

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, padding={self.padding}, groups={self.groups}"
        )


class InstrumentGroupNorm(InstrumentLayer):
    """GroupNorm with ``num_groups`` groups per instrument and per-instrument affines.

    :meth:`materialize` gives the scale ``(K, C)`` and shift ``(K, C)`` of each instrument.

    The K instruments are normalised by one ``F.group_norm`` with ``K * num_groups`` groups on
    ``(batch, K * C, T)``; each group sees only its own instrument's channels.
    """

    def __init__(self, num_channels: int, num_groups: int, eps: float) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels={num_channels} must be divisible by num_groups={num_groups}.")
        self.num_channels = num_channels
        self.num_groups = num_groups
        self.eps = eps

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None) -> torch.Tensor:
        """``(batch, K, C, T)`` and embeddings ``(K, E1)`` -> ``(batch, K, C, T)``."""
        scale, shift = self.materialize(embedding)
        K = scale.shape[0]
        y = F.group_norm(
            _fold_instruments(x, K, self.num_channels, type(self).__name__),
            K * self.num_groups,
            scale.reshape(-1),
            shift.reshape(-1),
            self.eps,
        )
        return y.view_as(x)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


class _WeightGenerator(nn.Module):
    """The two linear maps of one generated layer: ``(K, E1) -> (K, E2) -> (K, outputs)``."""

    def __init__(self, E1: int, E2: int, outputs: int) -> None:
        super().__init__()
        self.E1 = E1
        self.bottleneck = nn.Linear(E1, E2)
        self.head = nn.Linear(E2, outputs)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        check_embedding(embedding, self.E1)
        return self.head(self.bottleneck(embedding))


class GeneratedConv1d(InstrumentConv1d):
    """A convolution whose kernel is generated from the instrument embedding.

    ``generator``: Linear(E1 -> E2, bias) then Linear(E2 -> C_out * C_in / groups * kernel
    [+ C_out if ``bias``], bias). Trained parameters: E1*E2 + E2 + (E2 + 1) * #weights.

    Shapes: features ``(batch, K, C_in, T)``, embedding ``(K, E1)`` for any K >= 1 ->
    ``(batch, K, C_out, T_out)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        E1: int = 8,
        E2: int = 5,
        dilation: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, padding=padding, groups=groups)
        self.has_bias = bias
        self.kernel_numel = out_channels * (in_channels // groups) * kernel_size
        self.generator = _WeightGenerator(E1, E2, self.kernel_numel + (out_channels if bias else 0))

    def materialize(self, embedding: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The generated kernels ``(K, C_out, C_in / groups, kernel)`` and biases ``(K, C_out)`` or None."""
        if embedding is None:
            raise ValueError(f"{type(self).__name__} needs the instrument embedding (instruments, E1), got None.")
        flat = self.generator(embedding)
        K = flat.shape[0]
        weight = flat[:, : self.kernel_numel].reshape(K, self.out_channels, self.in_channels // self.groups, self.kernel_size)
        bias = flat[:, self.kernel_numel :] if self.has_bias else None
        return weight, bias


class GeneratedGroupNorm(InstrumentGroupNorm):
    """GroupNorm whose per-channel scale and shift are generated from the instrument embedding.

    ``generator``: Linear(E1 -> E2, bias) then Linear(E2 -> 2 * C, bias) (scale, then shift).

    Shapes: features ``(batch, K, C, T)``, embedding ``(K, E1)`` for any K >= 1 -> same shape.
    """

    def __init__(self, num_channels: int, num_groups: int = 8, *, E1: int = 8, E2: int = 5, eps: float = 1e-8) -> None:
        super().__init__(num_channels, num_groups, eps)
        self.generator = _WeightGenerator(E1, E2, 2 * num_channels)

    def materialize(self, embedding: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The generated scale ``(K, C)`` and shift ``(K, C)``."""
        if embedding is None:
            raise ValueError(f"{type(self).__name__} needs the instrument embedding (instruments, E1), got None.")
        scale, shift = self.generator(embedding).split(self.num_channels, dim=1)
        return scale, shift


class IndependentConv1d(InstrumentConv1d):
    """The baseline: K ordinary kernels, trained separately (a grouped conv with K x groups groups).

    ``weight`` ``(K * C_out, C_in / groups, kernel)`` (nn.Conv1d's initialisation), optional
    ``bias`` ``(K * C_out,)``. The embedding argument of :meth:`forward` is ignored.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        instruments: int = INSTRUMENTS,
        dilation: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, padding=padding, groups=groups)
        self.instruments = instruments
        fan_in = (in_channels // groups) * kernel_size
        self.weight = nn.Parameter(torch.empty(instruments * out_channels, in_channels // groups, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            self.bias = nn.Parameter(torch.empty(instruments * out_channels).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))
        else:
            self.register_parameter("bias", None)

    def materialize(self, embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stored kernels ``(K, C_out, C_in / groups, kernel)`` and biases ``(K, C_out)`` or None."""
        weight = self.weight.view(self.instruments, self.out_channels, *self.weight.shape[1:])
        bias = None if self.bias is None else self.bias.view(self.instruments, self.out_channels)
        return weight, bias


class SharedConv1d(IndependentConv1d):
    """One ordinary kernel applied to every instrument's features (FiLM's shared convolutions).

    An :class:`IndependentConv1d` with a single weight set (``weight`` ``(C_out, C_in / groups,
    kernel)``, nn.Conv1d's initialisation, optional ``bias`` ``(C_out,)``) that any number of
    instruments share: the K instruments are folded into the batch, so the forward pass is one
    plain convolution. The embedding argument is ignored.

    Shapes: features ``(batch, K, C_in, T)`` for any K >= 1 -> ``(batch, K, C_out, T_out)``;
    :meth:`materialize` gives the one weight set as ``(1, C_out, C_in / groups, kernel)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, **options: int | bool) -> None:
        """``options``: :class:`IndependentConv1d`'s ``dilation``, ``padding``, ``groups`` and ``bias``."""
        super().__init__(in_channels, out_channels, kernel_size, instruments=1, **options)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, K, C_in, T)`` -> ``(batch, K, C_out, T_out)``, the same kernel for every instrument."""
        instruments = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() == 4 else 0
        _check_features(x, instruments, self.in_channels, type(self).__name__)
        batch = x.shape[0]
        y = F.conv1d(
            x.reshape(batch * instruments, self.in_channels, x.shape[-1]), self.weight, self.bias,
            padding=self.padding, dilation=self.dilation, groups=self.groups,
        )
        return y.view(batch, instruments, self.out_channels, y.shape[-1])


class IndependentGroupNorm(InstrumentGroupNorm):
    """The baseline: GroupNorm with K separate affines (``weight``, ``bias``: ``(K * C,)``, init 1 and 0)."""

    def __init__(self, num_channels: int, num_groups: int = 8, *, instruments: int = INSTRUMENTS, eps: float = 1e-8) -> None:
        super().__init__(num_channels, num_groups, eps)
        self.instruments = instruments
        self.weight = nn.Parameter(torch.ones(instruments * num_channels))
        self.bias = nn.Parameter(torch.zeros(instruments * num_channels))

    def materialize(self, embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored scale ``(K, C)`` and shift ``(K, C)``."""
        return self.weight.view(self.instruments, -1), self.bias.view(self.instruments, -1)


@dataclass(frozen=True)
class InstrumentLayers:
    """Builds generated, independent or FiLM layers, so a network is written once for all of them.

    ``generated`` says where per-instrument parameters come from (the embedding through a
    generator, or a table of K copies); ``film`` says which layers have them: every conv and
    GroupNorm affine (False), or only the GroupNorm affines, the convs being shared (True).

    Attributes:
        generated: True for the hypernetwork layers, False for the independent baseline.
        E1: instrument embedding size.
        E2: generator bottleneck size.
        instruments: K, the number of weight copies of independent layers.
        film: share every conv between the instruments (:class:`SharedConv1d`); only the
            GroupNorm scales and shifts stay per instrument (FiLM conditioning).
    """

    generated: bool = True
    E1: int = 8
    E2: int = 5
    instruments: int = INSTRUMENTS
    film: bool = False

    def conv1d(self, in_channels: int, out_channels: int, kernel_size: int = 1, **options: int | bool) -> InstrumentConv1d:
        """A per-instrument conv (a shared one with ``film``); ``options``: dilation, padding, groups, bias."""
        if self.film:
            return SharedConv1d(in_channels, out_channels, kernel_size, **options)
        if self.generated:
            return GeneratedConv1d(in_channels, out_channels, kernel_size, E1=self.E1, E2=self.E2, **options)
        return IndependentConv1d(in_channels, out_channels, kernel_size, instruments=self.instruments, **options)

    def group_norm(self, num_channels: int, num_groups: int = 8, eps: float = 1e-8) -> InstrumentGroupNorm:
        """A per-instrument GroupNorm with ``num_groups`` groups per instrument."""
        if self.generated:
            return GeneratedGroupNorm(num_channels, num_groups, E1=self.E1, E2=self.E2, eps=eps)
        return IndependentGroupNorm(num_channels, num_groups, instruments=self.instruments, eps=eps)


_GENERATED = (GeneratedConv1d, GeneratedGroupNorm)


def generated_weights(module: nn.Module, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
    """The concrete weights every generated layer of ``module`` uses for the embeddings ``(K, E1)``.

    Keys are ``"<layer name>.weight"`` / ``"<layer name>.bias"``; values have the instrument
    first: conv kernels ``(K, C_out, C_in / groups, kernel)``, conv biases ``(K, C_out)``,
    GroupNorm scales and shifts ``(K, C)``. Autograd is not disabled (wrap in
    ``torch.no_grad()`` for inspection).
    """
    check_embedding(embedding, _embedding_size(module))
    weights = {}
    for name, layer in module.named_modules():
        if isinstance(layer, _GENERATED):
            prefix = f"{name}." if name else ""
            weight, bias = layer.materialize(embedding)
            weights[prefix + "weight"] = weight
            if bias is not None:
                weights[prefix + "bias"] = bias
    return weights


def to_independent(module: nn.Module, embedding: torch.Tensor) -> nn.Module:
    """A copy of ``module`` whose generated layers are replaced by independent ones holding their weights.

    Every :class:`GeneratedConv1d` / :class:`GeneratedGroupNorm` becomes an
    :class:`IndependentConv1d` / :class:`IndependentGroupNorm` with ``K = embedding.shape[0]``
    copies, loaded with the weights generated for ``embedding`` ``(K, E1)``; everything else
    (PReLUs, ...) is copied. The copy computes the same outputs as ``module`` with that
    embedding: the generator is only a way of producing weights. ``module`` is unchanged.
    Shared (FiLM) convolutions stay shared.
    """
    K = check_embedding(embedding, _embedding_size(module))
    converted = copy.deepcopy(module)
    with torch.no_grad():
        for name, layer in list(module.named_modules()):
            if isinstance(layer, GeneratedConv1d):
                weight, bias = layer.materialize(embedding)
                twin = IndependentConv1d(
                    layer.in_channels, layer.out_channels, layer.kernel_size, instruments=K,
                    dilation=layer.dilation, padding=layer.padding, groups=layer.groups, bias=bias is not None,
                ).to(weight)
                twin.weight.copy_(weight.reshape_as(twin.weight))
                if bias is not None:
                    twin.bias.copy_(bias.reshape(-1))
            elif isinstance(layer, GeneratedGroupNorm):
                scale, shift = layer.materialize(embedding)
                twin = IndependentGroupNorm(layer.num_channels, layer.num_groups, instruments=K, eps=layer.eps).to(scale)
                twin.weight.copy_(scale.reshape(-1))
                twin.bias.copy_(shift.reshape(-1))
            else:
                continue
            if not name:
                return twin
            parent_name, _, child = name.rpartition(".")
            setattr(converted.get_submodule(parent_name), child, twin)
    return converted


def _embedding_size(module: nn.Module) -> int:
    """E1 of the generated layers in ``module``; ValueError if it has none."""
    for layer in module.modules():
        if isinstance(layer, _GENERATED):
            return layer.generator.E1
    raise ValueError(f"{type(module).__name__} has no generated layers (was it built with generated=False?).")
