"""Chapter 02's ablation: which part of Meta-TasNet's enhanced encoder/decoder buys what.

Every variant puts an encoder/decoder pair around the same Conv-TasNet masking network
(:class:`~metalearn_sep.models.conv_tasnet.MaskNetwork`) at the same stride S, so the
latent shape and the masking network are shared and only the filterbanks differ
(:data:`ENCODERS`):

* ``"plain"``: :class:`PlainEncoder` / :class:`PlainDecoder`, Conv-TasNet's single learned
  filterbank of L samples at hop S. With ``hidden`` > 0 they become a per-frame two-layer
  network of chosen width: a plain pair with the capacity of an enhanced one
  (:meth:`EncoderSeparator.capacity_control`), which separates what the enhanced pair gains
  from its size from what it gains from its inputs.
* ``"multi"``: :class:`~metalearn_sep.models.enhanced.EnhancedEncoder` without its
  spectrogram branch (kernels L, 2L, 4L) and :class:`~metalearn_sep.models.enhanced.EnhancedDecoder`.
* ``"multi+spec"``: the full enhanced pair.

Symbols as in :mod:`metalearn_sep.models.enhanced` and :mod:`metalearn_sep.models.conv_tasnet`:
N latent channels, L (shortest) kernel length, S stride (argument ``stride``), B, H, Sc, P,
X, R the masking network's sizes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, check_mono_batch, check_rate, round_up
from .conv_tasnet import MaskNetwork
from .enhanced import EnhancedDecoder, EnhancedEncoder, check_kernels, fusion_layers, spectrogram_statistics, waveform_rows
from .separator import check_mixture

LEVEL_EPS = 1e-8
"""Added to an input's standard deviation before :class:`EncoderSeparator` divides by it (silence stays silence)."""


def _plain_config(N: object, L: object, stride: object, hidden: object) -> dict[str, int]:
    """The checked arguments of :class:`PlainEncoder` and :class:`PlainDecoder` (L >= S, (L - S)/2 an integer)."""
    N = check_int(N, "N")
    L, stride, _ = check_kernels(L, stride, 1)
    return {"N": N, "L": L, "stride": stride, "hidden": check_int(hidden, "hidden", low=0)}


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

    def __init__(self, N: int, L: int, stride: int, hidden: int = 0) -> None:
        super().__init__()
        self.config = _plain_config(N, L, stride, hidden)
        N, L, stride, hidden = self.config.values()
        self.N, self.stride = N, stride
        self.conv = nn.Conv1d(1, hidden or N, L, stride=stride, padding=(L - stride) // 2, bias=False)
        self.fusion = None
        if hidden:
            self.fusion = nn.Sequential(nn.ReLU(), *fusion_layers(hidden, N))

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
    :class:`~metalearn_sep.models.enhanced.EnhancedDecoder` with a single kernel length.

    Shapes: ``(batch, N, T') -> (batch, 1, T' S)``. ``self.config`` holds the constructor arguments.
    """

    def __init__(self, N: int, L: int, stride: int, hidden: int = 0) -> None:
        super().__init__()
        self.config = _plain_config(N, L, stride, hidden)
        N, L, stride, hidden = self.config.values()
        self.N = N
        self.expand = None
        if hidden:
            self.expand = nn.Sequential(nn.ConvTranspose1d(N, hidden, kernel_size=1, bias=False), nn.ReLU())
        self.conv = nn.ConvTranspose1d(hidden or N, 1, L, stride=stride, padding=(L - stride) // 2, bias=False)

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
    same stride S, so all variants share the latent shape and the masking network exactly.
    The pairs are those of :data:`ENCODERS` (module docstring); a ``"multi+spec"`` one needs
    its spectrogram statistics from training mixtures (:meth:`set_spectrogram_statistics`)
    before training, and ``hidden`` > 0 makes a ``"plain"`` one the capacity control
    (:meth:`capacity_control`).

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
        check_mixture(mixture, "EncoderSeparator")
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
                x = waveform_rows(item)
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
