"""Meta-TasNet: multi-stage separation with instrument-generated masking networks.

Symbols (the paper's and the released code's; the arguments carry the same names): N latent
channels (encoder filters), L encoder kernel, S the stride (argument ``stride``, W in the
released code), B bottleneck channels, H hidden channels, P depthwise kernel, X blocks per
stack, R stacks, E1 embedding size, E2 generator bottleneck, K instruments (4: drums, bass,
other, vocals), R_s = ``base_rate * 2**s`` the rate of stage s.

One :class:`Stage` is enhanced encoder -> :class:`MaskingTCN` -> enhanced decoder, plus the
stage's instrument embedding table. :class:`MetaTasNet` stacks stages at 8, 16 and 32 kHz:
stage s runs at ``base_rate * 2**s`` Hz with N, L and the stride scaled by ``2**s`` (so every
stage has the same T' = 400 latent frames per second) and B, H unchanged. Stage s+1's
masking network sees, per instrument, its mixture latent ``(N_{s+1})`` concatenated with
stage s's separated latents ``(N_s = N_{s+1} / 2)``: 1.5 N_{s+1} input channels. Nothing is
detached between stages, and each stage decodes its own four waveforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_int, round_up
from .enhanced import EnhancedDecoder, EnhancedEncoder
from .generator import INSTRUMENTS, GeneratedGroupNorm, InstrumentEmbedding, InstrumentLayers, SharedConv1d, check_embedding
from .separator import Separator


class TCNBlock(nn.Module):
    """One dilated conv block of the masking TCN, run for K instruments at once.

    1x1 conv B -> H, PReLU, GN(8), depthwise conv (kernel P, dilation d, padding d), PReLU,
    GN(8), then two 1x1 convs H -> B: the residual (added to the input by the caller) and the
    skip (summed over blocks). No biases.

    Shapes: ``(batch, K, B, T')`` -> residual ``(batch, K, B, T')``, skip ``(batch, K, B, T')``.
    """

    def __init__(self, layers: InstrumentLayers, B: int, H: int, P: int, dilation: int) -> None:
        super().__init__()
        self.conv_in = layers.conv1d(B, H)
        self.prelu_in = nn.PReLU()
        self.norm_in = layers.group_norm(H)
        self.depthwise = layers.conv1d(H, H, P, dilation=dilation, padding=dilation * (P - 1) // 2, groups=H)
        self.prelu_depthwise = nn.PReLU()
        self.norm_depthwise = layers.group_norm(H)
        self.residual = layers.conv1d(H, B)
        self.skip = layers.conv1d(H, B)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm_in(self.prelu_in(self.conv_in(x, embedding)), embedding)
        y = self.norm_depthwise(self.prelu_depthwise(self.depthwise(y, embedding)), embedding)
        return self.residual(y, embedding), self.skip(y, embedding)


class MaskingTCN(nn.Module):
    """The masking network: one extractor per instrument, all K run in parallel.

    Chapter 01's :class:`~metalearn_sep.models.conv_tasnet.MaskNetwork` (Conv-TasNet's TCN)
    with per-instrument layers: the same symbols N, B, H, P, X, R; its skip channels Sc = B;
    every norm GN(8) (``norm="GN8"`` there); a softmax over the K instruments (``num_sources``
    there); and a PReLU + GN before the input conv and after the mask conv.

    PReLU -> GN(8) -> 1x1 conv C_in -> B -> PReLU -> GN(8); R stacks of X :class:`TCNBlock`
    (dilations 1, 2, ..., 2**(X-1)); PReLU on the skip sum -> GN(8) -> 1x1 conv B -> N ->
    PReLU -> GN(8) -> softmax across the K instruments. GroupNorm eps 1e-8; the 4 + 2 X R
    PReLUs hold one scalar each, shared by the instruments and never generated. As in the
    original code every block has its residual conv, the last one included, although the
    last residual feeds nothing (its weights count but receive no gradient).

    With ``generated=True`` every conv and GroupNorm affine is generated from the instrument
    embedding (:mod:`metalearn_sep.models.generator`) and any K >= 1 works; with
    ``generated=False`` they are independent layers holding ``instruments`` weight sets.
    With ``film=True`` every conv is shared by the instruments and only the GroupNorm affines
    (a per-channel scale gamma and shift beta after each normalisation: FiLM conditioning)
    are per instrument, generated or independent as ``generated`` says.

    Args:
        in_channels: C_in, N at the first stage, N + N_previous later.
        N: latent channels (mask size).
        B, H, X, R, P: bottleneck and hidden channels, blocks per stack, stacks, depthwise kernel.
        E1, E2: embedding size and generator bottleneck (generated mode).
        generated: hypernetwork (True) or independent baseline (False).
        instruments: K of the independent layers.
        film: shared convs, per-instrument GroupNorm affines only (FiLM).

    Shapes: latent ``(batch, C_in, T')`` (shared by all instruments) or ``(batch, K, C_in, T')``
    and embedding ``(K, E1)`` (ignored, may be None, when independent) -> masks
    ``(batch, K, N, T')`` that sum to 1 over K.
    """

    def __init__(
        self,
        in_channels: int,
        N: int,
        B: int = 160,
        H: int = 160,
        X: int = 6,
        R: int = 3,
        P: int = 3,
        E1: int = 8,
        E2: int = 5,
        generated: bool = True,
        instruments: int = INSTRUMENTS,
        film: bool = False,
    ) -> None:
        super().__init__()
        if P % 2 == 0:
            raise ValueError(f"The depthwise kernel P must be odd to keep the frame count, got P={P}.")
        layers = InstrumentLayers(generated, E1, E2, instruments, film=film)
        self.in_channels, self.N, self.E1 = in_channels, N, E1
        self.input_prelu = nn.PReLU()
        self.input_norm = layers.group_norm(in_channels)
        self.input_conv = layers.conv1d(in_channels, B)
        self.bottleneck_prelu = nn.PReLU()
        self.bottleneck_norm = layers.group_norm(B)
        self.blocks = nn.ModuleList(TCNBlock(layers, B, H, P, 2**x) for _ in range(R) for x in range(X))
        self.skip_prelu = nn.PReLU()
        self.skip_norm = layers.group_norm(B)
        self.mask_conv = layers.conv1d(B, N)
        self.mask_prelu = nn.PReLU()
        self.mask_norm = layers.group_norm(N)

    @property
    def generated(self) -> bool:
        """Whether the layers are generated (False after :func:`~metalearn_sep.models.generator.to_independent`)."""
        return isinstance(self.input_norm, GeneratedGroupNorm)

    @property
    def film(self) -> bool:
        """Whether the convs are shared by the instruments (FiLM conditioning)."""
        return isinstance(self.input_conv, SharedConv1d)

    def count_instruments(self, embedding: torch.Tensor | None) -> int:
        """K: the embedding's rows when generated, else the independent layers' copies."""
        if self.generated:
            return check_embedding(embedding, self.E1)
        return self.input_norm.instruments

    def forward(self, latent: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        K = self.count_instruments(embedding)
        expected = f"(batch, {self.in_channels}, frames) or (batch, {K}, {self.in_channels}, frames)"
        if not isinstance(latent, torch.Tensor) or latent.dim() not in (3, 4):
            shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ValueError(f"MaskingTCN expects a latent of shape {expected}, got {shape}.")
        if latent.shape[-2] != self.in_channels or (latent.dim() == 4 and latent.shape[1] != K):
            raise ValueError(f"MaskingTCN expects a latent of shape {expected}, got {tuple(latent.shape)}.")
        x = self.input_prelu(latent)
        if x.dim() == 3:
            x = x.unsqueeze(1).expand(-1, K, -1, -1)
        x = self.input_conv(self.input_norm(x, embedding), embedding)
        x = self.bottleneck_norm(self.bottleneck_prelu(x), embedding)
        skip = torch.zeros_like(x)
        for block in self.blocks:
            residual, skip_out = block(x, embedding)
            x = x + residual
            skip = skip + skip_out
        mask = self.mask_conv(self.skip_norm(self.skip_prelu(skip), embedding), embedding)
        mask = self.mask_norm(self.mask_prelu(mask), embedding)
        return mask.softmax(dim=1)


@dataclass
class StageOutput:
    """What one stage returns (K instruments, T_s samples, T' = T_s / stride frames).

    Attributes:
        estimates: separated waveforms ``(batch, K, 1, T_s)``.
        latents: masked (separated) latents ``(batch, K, N_s, T')``; the next stage's input.
        mixture_latent: the encoded mixture ``(batch, N_s, T')``.
        masks: ``(batch, K, N_s, T')``, summing to 1 over K.
    """

    estimates: torch.Tensor
    latents: torch.Tensor
    mixture_latent: torch.Tensor
    masks: torch.Tensor


def hand_over(mixture_latent: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """A later stage's masker input: its mixture latent ``(batch, N_s, T')``, repeated for each of the K instruments,
    beside the previous stage's separated latents ``(batch, K, N_{s-1}, T')`` -> ``(batch, K, N_s + N_{s-1}, T')``."""
    return torch.cat([mixture_latent.unsqueeze(1).expand(-1, previous.shape[1], -1, -1), previous], dim=2)


class Stage(nn.Module):
    """One Meta-TasNet stage: EnhancedEncoder + MaskingTCN + EnhancedDecoder + instrument embedding.

    Args:
        N, L, stride: latent channels, base encoder kernel and stride at this stage's rate.
        sample_rate: this stage's rate (Hz).
        previous_channels: N of the preceding stage (0 for the first stage); the masking
            network then takes N + previous_channels input channels.
        filters, spec_channels: encoder/decoder branches and spectrogram channels.
        generated: generated masking network (with an ``embedding`` table ``(4, E1)``) or
            independent one (``embedding`` is None).
        film: FiLM-conditioned masking network (shared convs, per-instrument GroupNorm affines).
        masker: the masking network's sizes B, H, X, R, P, E1, E2 (:class:`MaskingTCN`'s
            arguments and defaults, the paper's).
    """

    def __init__(
        self,
        N: int,
        L: int,
        stride: int,
        sample_rate: int,
        previous_channels: int = 0,
        filters: int = 3,
        spec_channels: int = 256,
        generated: bool = True,
        film: bool = False,
        **masker: int,
    ) -> None:
        super().__init__()
        self.N, self.stride, self.sample_rate, self.previous_channels = N, stride, sample_rate, previous_channels
        self.encoder = EnhancedEncoder(N, L, stride, sample_rate, filters=filters, spec_channels=spec_channels)
        self.masker = MaskingTCN(N + previous_channels, N, generated=generated, film=film, **masker)
        self.decoder = EnhancedDecoder(N, L, stride, filters=filters)
        self.embedding = InstrumentEmbedding(self.masker.E1) if generated else None

    def forward(
        self,
        mixture: torch.Tensor,
        previous: torch.Tensor | None = None,
        embedding: torch.Tensor | None = None,
    ) -> StageOutput:
        """Separate ``mixture`` ``(batch, 1, T_s)``: :meth:`masked_latents`, then the decoder on each instrument's latents."""
        latents, latent, masks = self.masked_latents(mixture, previous, embedding)
        batch, K, _, frames = latents.shape
        estimates = self.decoder(latents.reshape(batch * K, self.N, frames)).view(batch, K, 1, -1)
        return StageOutput(estimates=estimates, latents=latents, mixture_latent=latent, masks=masks)

    def masked_latents(
        self,
        mixture: torch.Tensor,
        previous: torch.Tensor | None = None,
        embedding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The masked latents ``(batch, K, N, T')``, the mixture's latent ``(batch, N, T')`` and the masks.

        All of a stage but its decoder: what the next stage needs, so that separation can
        skip decoding the stages whose waveforms it does not keep. ``mixture`` is
        ``(batch, 1, T_s)``, T_s a multiple of the stride (else ``ValueError``).

        Args:
            mixture: the mixture at this stage's rate.
            previous: the preceding stage's ``latents`` ``(batch, K, N_{s-1}, T')``; required
                exactly when this is not the first stage.
            embedding: instrument embeddings ``(K, E1)`` replacing this stage's table (generated
                mode only), e.g. ``stage.embedding.interpolate(1, 0, 0.5)`` in place of a row.
                Each row generates one extractor; the masks are a softmax over the K rows, so
                pass the other instruments' rows too to keep the usual competition between
                them. None: the four learned rows (drums, bass, other, vocals).
        """
        if not isinstance(mixture, torch.Tensor) or mixture.dim() != 3 or mixture.shape[1] != 1:
            shape = tuple(mixture.shape) if isinstance(mixture, torch.Tensor) else type(mixture).__name__
            raise ValueError(f"A stage expects a mono mixture of shape (batch, 1, time), got {shape}.")
        if self.embedding is None:
            if embedding is not None:
                raise ValueError("An embedding override needs a generated model (generated=True); this stage is independent.")
        elif embedding is None:
            embedding = self.embedding()
        K = self.masker.count_instruments(embedding)
        latent = self.encoder(mixture)  # checks the length (a multiple of the stride)
        batch, frames = latent.shape[0], latent.shape[-1]
        masker_input = latent
        if self.previous_channels:
            expected = (batch, K, self.previous_channels, frames)
            if not isinstance(previous, torch.Tensor) or tuple(previous.shape) != expected:
                got = tuple(previous.shape) if isinstance(previous, torch.Tensor) else previous
                raise ValueError(f"This stage needs the previous stage's latents of shape {expected}, got {got}.")
            masker_input = hand_over(latent, previous)
        elif previous is not None:
            raise ValueError("The first stage takes no previous latents, but some were given.")
        masks = self.masker(masker_input, embedding)
        return latent.unsqueeze(1) * masks, latent, masks


class MetaTasNet(Separator):
    """Meta-TasNet: ``stages`` :class:`Stage` s at ``base_rate * 2**s`` Hz, chained by their latents.

    Defaults are the released configuration (45,531,260 trained parameters; 34,673,054 with
    ``generated=False``; ``film=True`` gives the lighter FiLM-conditioned variant, see
    :class:`MaskingTCN`). Stage s uses N, L, stride times ``2**s``; B, H, P, X, R, E1, E2 are
    shared settings (not weights). ``config`` holds the constructor arguments (JSON-safe),
    so ``MetaTasNet(**model.config)`` rebuilds the architecture.

    Forward: ``mixtures[s]`` ``(batch, 1, T_0 * 2**s)`` with T_0 a multiple of ``stride``
    (20 samples = 2.5 ms at 8 kHz) -> one :class:`StageOutput` per stage; no padding is done
    (use :meth:`expected_lengths`, or :meth:`stage_inputs` from a signal at any rate). Wrong
    lengths or shapes raise ``ValueError``.

    As a :class:`~metalearn_sep.models.separator.Separator`: :attr:`sample_rates` R_s =
    ``base_rate * 2**s``, ``stride`` S at R_0, :attr:`min_length` (520 samples at 8 kHz with
    the spectrogram branch, the stride without), :meth:`separate_stages` the last stage's
    estimates only.
    """

    def __init__(
        self,
        stages: int = 3,
        N: int = 440,
        L: int = 20,
        stride: int = 20,
        B: int = 160,
        H: int = 160,
        X: int = 6,
        R: int = 3,
        P: int = 3,
        E1: int = 8,
        E2: int = 5,
        filters: int = 3,
        spec_channels: int = 256,
        base_rate: int = 8000,
        generated: bool = True,
        film: bool = False,
    ) -> None:
        super().__init__()
        stages = check_int(stages, "stages")
        self.config = dict(
            stages=stages, N=N, L=L, stride=stride, B=B, H=H, X=X, R=R, P=P, E1=E1, E2=E2,
            filters=filters, spec_channels=spec_channels, base_rate=base_rate, generated=generated, film=film,
        )
        self.stride = stride
        self.num_sources = INSTRUMENTS  # the four rows of every stage's embedding, in SOURCES order
        self.stages = nn.ModuleList(
            Stage(
                N * 2**s, L * 2**s, stride * 2**s, base_rate * 2**s,
                previous_channels=N * 2 ** (s - 1) if s else 0,
                B=B, H=H, X=X, R=R, P=P, E1=E1, E2=E2,
                filters=filters, spec_channels=spec_channels, generated=generated, film=film,
            )
            for s in range(stages)
        )

    @property
    def sample_rates(self) -> list[int]:
        """Each stage's rate in Hz, e.g. ``[8000, 16000, 32000]``."""
        return [stage.sample_rate for stage in self.stages]

    @property
    def min_length(self) -> int:
        """The shortest input at R_0: the largest over stages s of ``ceil(stage.encoder.min_length / 2**s)``.

        Stage s's encoder needs its spectrogram's n_fft/2 + 1 samples at R_s rounded up to its
        stride (the stride alone without a spectrogram branch); R_s has 2^s samples per sample at R_0.
        """
        return max(round_up(stage.encoder.min_length, 2**s) // 2**s for s, stage in enumerate(self.stages))

    def separate_stages(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The last stage's estimates ``(batch, K, 1, T_0 2^S)`` for stage inputs ``(batch, 1, T_0 2^s)``.

        The stages are called one by one, keeping only the latents the next stage needs and
        decoding only the last stage: ``self(inputs)`` would also decode the earlier stages
        (8 % of the released model's multiply-adds, counted with ``FlopCounterMode``) and hold
        every stage's masks, latents and estimates until the last stage is done.
        """
        self._check_mixtures(inputs)
        previous = None
        for stage, mixture in zip(self.stages[:-1], inputs):
            previous = stage.masked_latents(mixture, previous)[0]
        return self.stages[-1](inputs[-1], previous).estimates

    def expected_lengths(self, length: int) -> list[int]:
        """Stage input lengths ``T_0 * 2**s`` for a first-stage length ``T_0`` (a multiple of ``stride``)."""
        return [length * 2**s for s in range(len(self.stages))]

    def forward(
        self,
        mixtures: Sequence[torch.Tensor],
        embeddings: Sequence[torch.Tensor | None] | None = None,
    ) -> list[StageOutput]:
        """Run every stage; ``embeddings[s]`` optionally overrides stage s's table (see :meth:`Stage.forward`)."""
        self._check_mixtures(mixtures)
        if embeddings is None:
            embeddings = [None] * len(self.stages)
        if len(embeddings) != len(self.stages):
            raise ValueError(f"Expected one embedding (or None) per stage ({len(self.stages)}), got {len(embeddings)}.")
        outputs, previous = [], None
        for stage, mixture, embedding in zip(self.stages, mixtures, embeddings):
            out = stage(mixture, previous, embedding)
            outputs.append(out)
            previous = out.latents
        return outputs

    def _check_mixtures(self, mixtures: Sequence[torch.Tensor]) -> None:
        count = len(self.stages)
        if isinstance(mixtures, torch.Tensor) or len(mixtures) != count:
            got = f"a tensor of shape {tuple(mixtures.shape)}" if isinstance(mixtures, torch.Tensor) else f"{len(mixtures)} items"
            raise ValueError(f"Expected a sequence of {count} mixtures (one per stage, at {self.sample_rates} Hz), got {got}.")
        for s, mixture in enumerate(mixtures):
            if not isinstance(mixture, torch.Tensor) or mixture.dim() != 3 or mixture.shape[1] != 1:
                shape = tuple(mixture.shape) if isinstance(mixture, torch.Tensor) else type(mixture).__name__
                raise ValueError(f"Mixture {s} must have shape (batch, 1, time), got {shape}.")
        batches = [m.shape[0] for m in mixtures]
        if len(set(batches)) != 1:
            raise ValueError(f"All stage mixtures must have the same batch size, got {batches}.")
        lengths = [m.shape[-1] for m in mixtures]
        first = lengths[0]
        if first == 0 or first % self.stride or lengths != self.expected_lengths(first):
            usable = max(first // self.stride, 1) * self.stride
            raise ValueError(
                f"Stage mixtures must have lengths T_0 * 2**s with T_0 a multiple of {self.stride} "
                f"(e.g. {self.expected_lengths(usable)}), got {lengths}."
            )
