"""Whole-song separation at any sample rate: Meta-TasNet's inference protocol.

:func:`separate` turns a mixture ``(C, T)`` at any rate r (44.1, 22.05, 8 kHz, ...; C = 1
or 2) into stems ``(K, C, T)`` at the same rate and length, in ``SOURCES`` order. It
follows the original code's evaluation (``MultiTasNet.inference`` and ``evaluate.py``):

1. **Resample** the mixture to every stage's rate R_s = R_0 2^s (8, 16, 32 kHz for three
   stages), once for the whole song.
2. **Normalise** each stage's input by its own standard deviation per channel, computed
   over the *whole song* (:func:`~metalearn_sep.audio.unit_level`), as the original does:
   the divisor does not depend on the chunk, so chunking changes nothing for a model
   whose receptive field is shorter than the context (3); a per-chunk std would rescale
   every chunk differently.
3. **Chunk** the song into cores of ``chunk_seconds``, each run with ``context_seconds`` of
   real signal on both sides (less at the song's ends). The context is cropped away and
   the cores laid side by side, with no crossfade, as in the original: for a model whose
   receptive field fits in the context a core *is* the whole-song output, and a
   crossfade would only average it with a worse estimate made with less context.
   Meta-TasNet's GroupNorm layers take statistics over a whole window, so its cores are
   not exact; the context keeps neighbouring windows' statistics nearly equal, which is
   what keeps the borders inaudible. Its masking network sees 0.95 s (about 0.5 s on
   each side of a frame), so the default 2 s of context covers the receptive field four
   times over; the original's 8 s (``context_seconds=8``) costs three times the compute
   at 8 s cores. Window lengths are multiples of the model's stride and at least its
   minimum length (zeros are appended at the song's end and cropped off again). Chunk
   borders lie on a grid of ``lcm(stride, R_0 / gcd(R_0, r))`` samples at R_0, so that
   they fall on whole samples at every rate and each window is resampled in phase with
   the whole song: for a local model, chunked and whole-song outputs are identical.
4. **Separate**: the paper's model is mono, so left and right are separated as two mono
   signals. On CUDA both channels of a window run as one batch; on the CPU one after the
   other, which halves the peak memory (``batch_channels`` chooses). Only the *last*
   stage's estimates are kept.
5. **Resample back** each window's estimates from the last stage's rate to r and keep its
   core (the original's answer to "the output is 32 kHz and shorter than the input").
6. **Rescale** (:func:`least_squares_gains`): training is scale invariant and the input was
   normalised, so each stem is multiplied by the c_i minimising ||x - sum_i c_i s_i||^2
   against the mixture x at rate r, per channel (the paper's evaluation step; SDR is not
   scale invariant).

The model is any :class:`~metalearn_sep.models.separator.Separator` (Meta-TasNet,
Conv-TasNet): it states its stage rates, stride and minimum length, and runs its stages.
The model's memory is bounded by the window, not by the song; :func:`separate` also holds
song-length buffers (input, resampled copies, stems), which
:func:`metalearn_sep.streaming.separate_file` avoids by streaming from and to disk.
``benchmarks/bench_separate.py`` measures speed and peak memory (figures in
``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from .audio import resample, unit_level
from .checks import check_duration, check_rate, check_waveform, round_up
from .heap import HeapGuard
from .models.separator import Separator
from .progress import progress_bar

DEFAULT_CHUNK_SECONDS = 18.0
"""Core length. With 2 s of context on each side the windows are 22 s: the model runs
(18 + 4) / 18 = 1.2 window-seconds per song-second, where the original's 8 s cores with 8 s
of context run 3. It keeps the full model's peak under 4 GB on a 3-minute stereo song
(``benchmarks/bench_separate.py``; figures in ``benchmarks/RESULTS.md``)."""

DEFAULT_CONTEXT_SECONDS = 2.0
"""Context on each side of a core: four times the masking network's one-sided receptive
field (the original code uses 8 s; pass ``context_seconds=8`` to reproduce it)."""


@dataclass(frozen=True)
class Window:
    """One chunk, in samples at the first stage's rate R_0.

    The model sees ``[start, start + length)`` (zeros past the song's end); the output keeps
    the core ``[core_start, core_stop)``.
    """

    start: int
    length: int
    core_start: int
    core_stop: int


def plan_windows(total: int, core: int, context: int, multiple: int = 1, minimum: int = 1) -> list[Window]:
    """Tile ``total`` samples with cores of ``core`` samples, each extended by ``context`` on both sides.

    The context is clipped at the song's ends; every window's length is rounded up to a
    multiple of ``multiple`` and to at least ``minimum`` (the model pads nothing itself).
    """
    if total < 1 or core < 1 or context < 0:
        raise ValueError(f"plan_windows needs total >= 1, core >= 1 and context >= 0, got {total}, {core}, {context}.")
    windows = []
    for core_start in range(0, total, core):
        core_stop = min(core_start + core, total)
        start, stop = max(0, core_start - context), min(total, core_stop + context)
        length = max(round_up(stop - start, multiple), round_up(minimum, multiple))
        windows.append(Window(start, length, core_start, core_stop))
    return windows


class NormalEquations:
    """The least-squares problem of :func:`least_squares_gains`, accumulated block by block.

    ``add(estimates (K, C, t), mixture (C, t))`` adds the blocks' products to the Gram matrices
    ``(C, K, K)`` and right-hand sides ``(C, K, 1)``, in float64; :meth:`gains` solves them
    (minimum-norm, so a silent or redundant estimate is harmless: a silent one gets 0).
    """

    def __init__(self, sources: int, channels: int) -> None:
        self.gram = torch.zeros(channels, sources, sources, dtype=torch.float64)
        self.target = torch.zeros(channels, sources, 1, dtype=torch.float64)

    def add(self, estimates: torch.Tensor, mixture: torch.Tensor) -> None:
        s = estimates.transpose(0, 1).double().cpu()  # (C, K, t)
        x = mixture.double().cpu().unsqueeze(-1)  # (C, t, 1)
        self.gram += s @ s.transpose(1, 2)
        self.target += s @ x

    def gains(self) -> torch.Tensor:
        """The gains c ``(K, C)``, float64."""
        return (torch.linalg.pinv(self.gram, hermitian=True) @ self.target)[..., 0].T


def least_squares_gains(estimates: torch.Tensor, mixture: torch.Tensor, block: int = 1 << 20) -> torch.Tensor:
    """Gains c ``(K, C)`` minimising ``||x_c - sum_i c_ic s_ic||^2`` for every channel c.

    The normal equations are accumulated in float64 over blocks of ``block`` samples
    (:class:`NormalEquations`), so no full-length float64 copy is made.

    Args:
        estimates: ``(K, C, T)`` stems.
        mixture: ``(C, T)``.
    """
    if estimates.dim() != 3 or mixture.dim() != 2 or estimates.shape[1:] != mixture.shape:
        raise ValueError(
            f"least_squares_gains expects estimates (K, C, T) and a mixture (C, T) of the same C and T, "
            f"got {tuple(estimates.shape)} and {tuple(mixture.shape)}."
        )
    equations = NormalEquations(estimates.shape[0], estimates.shape[1])
    for t in range(0, estimates.shape[-1], block):
        equations.add(estimates[..., t : t + block], mixture[:, t : t + block])
    return equations.gains().to(estimates.dtype)


@dataclass(frozen=True)
class WindowInput:
    """What the model needs for one window, for every channel.

    Attributes:
        window: the chunk.
        inputs: the normalised stage inputs, one ``(C, 1, window.length * 2**s)`` per stage.
        song: song samples around the window at the song's rate ``(C, t)``, starting at
            ``song_start``, for readers that need the mixture of the core (the streamed
            rescaling); ``None`` for the in-memory path.
    """

    window: Window
    inputs: list[torch.Tensor]
    song: torch.Tensor | None = None
    song_start: int = 0

    def mixture(self, begin: int, end: int) -> torch.Tensor:
        """Song samples ``[begin, end)`` ``(C, end - begin)``; only when :attr:`song` was given."""
        if self.song is None:
            raise ValueError("This window carries no song samples.")
        return self.song[:, begin - self.song_start : end - self.song_start]


def _resolve_device(model: Separator, device: torch.device | str | None) -> torch.device:
    if device is None:
        parameter = next(model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Unknown device {device!r}: expected e.g. 'cpu', 'cuda' or 'cuda:1'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device} was asked for, but CUDA is not available on this machine.")
    return device


@dataclass(frozen=True)
class SeparationPlan:
    """How one song is cut into windows and passes (steps 3-5 of the module docstring).

    Build it with :meth:`make`; :meth:`run` separates the windows a reader gives it.
    """

    model: Separator
    rate: int
    channels: int
    length: int
    windows: list[Window]
    passes: list[list[int]]
    device: torch.device
    amp: bool

    @classmethod
    def make(cls, model: Separator, channels: int, length: int, rate: int, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
             context_seconds: float = DEFAULT_CONTEXT_SECONDS, device: torch.device | str | None = None,
             amp: bool | None = None, batch_channels: bool | None = None) -> SeparationPlan:
        """The plan for a song of ``length`` samples and ``channels`` channels at ``rate`` Hz (all checked first)."""
        if not isinstance(model, Separator):
            raise ValueError(f"separate() needs a Separator model (MetaTasNet, ConvTasNet), got a {type(model).__name__}.")
        check_duration(chunk_seconds, "chunk_seconds")
        if isinstance(context_seconds, bool) or not isinstance(context_seconds, (int, float)) or not 0 <= context_seconds < math.inf:
            raise ValueError(f"context_seconds must be a non-negative number of seconds, got {context_seconds!r}.")
        device = _resolve_device(model, device)
        amp = device.type == "cuda" if amp is None else bool(amp)
        if amp and device.type not in ("cuda", "cpu"):
            raise ValueError(f"bf16 autocast is offered on CUDA and CPU only; this run is on {device}.")
        together = device.type == "cuda" if batch_channels is None else bool(batch_channels)
        base = model.sample_rates[0]
        grid = math.lcm(model.stride, base // math.gcd(base, rate))  # chunk borders land on whole samples at every rate
        core = max(round(chunk_seconds * base / grid), 1) * grid
        context = math.ceil(context_seconds * base / grid) * grid
        total = -(-length * base // rate)  # samples at R_0 covering the song
        windows = plan_windows(total, core, context, model.stride, model.min_length)
        passes = [list(range(channels))] if together else [[c] for c in range(channels)]
        return cls(model, rate, channels, length, windows, passes, device, amp)

    def song_span(self, window: Window) -> tuple[int, int]:
        """The window's first and last-plus-one sample at the song's rate (the end may lie past the song)."""
        base = self.model.sample_rates[0]
        return window.start * self.rate // base, (window.start + window.length) * self.rate // base

    def run(self, windows: Iterable[WindowInput], progress: bool = False) -> Iterator[tuple[WindowInput, int, int, torch.Tensor]]:
        """Separate each window; yield ``(window input, begin, end, core)``.

        ``core`` ``(K, C, end - begin)`` holds the raw (not rescaled) estimates of song samples
        ``[begin, end)`` at the song's rate, every channel.
        """
        model, rates = self.model, self.model.sample_rates
        was_training = model.training
        model.to(self.device).eval()
        try:
            with torch.no_grad(), progress_bar(total=len(self.windows) * len(self.passes), unit="chunk", desc="separating",
                                               enabled=progress) as bar:
                for item in windows:
                    window = item.window
                    first, _ = self.song_span(window)
                    begin = window.core_start * self.rate // rates[0]
                    end = min(self.length, window.core_stop * self.rate // rates[0])
                    cores = []
                    for rows in self.passes:
                        mixtures = [x[rows].to(self.device) for x in item.inputs]
                        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):  # the model only
                            estimates = model.separate_stages(mixtures)
                        expected = window.length * 2 ** (len(rates) - 1)
                        if estimates.dim() != 4 or estimates.shape[0] != len(rows) or estimates.shape[2] != 1 or estimates.shape[3] != expected:
                            raise ValueError(
                                f"The model must return estimates of shape ({len(rows)}, sources, 1, {expected}), "
                                f"got {tuple(estimates.shape)}."
                            )
                        back = resample(estimates.float()[:, :, 0], rates[-1], self.rate)  # (rows, K, time at r)
                        cores.append(back[..., begin - first : end - first])
                        del mixtures, estimates, back
                        bar.update(1)
                    yield item, begin, end, torch.cat(cores).transpose(0, 1)  # (K, C, end - begin)
        finally:
            model.train(was_training)


def _check_mixture(mixture: object, sample_rate: object) -> int:
    rate = check_rate(sample_rate)
    if not isinstance(mixture, torch.Tensor) or mixture.dim() != 2:
        got = f"shape {tuple(mixture.shape)}" if isinstance(mixture, torch.Tensor) else type(mixture).__name__
        raise ValueError(f"The mixture must be a (channels, time) tensor with 1 or 2 channels, got {got}.")
    if mixture.shape[0] not in (1, 2):
        raise ValueError(f"The mixture must have 1 (mono) or 2 (stereo) channels, got {mixture.shape[0]} (shape {tuple(mixture.shape)}).")
    check_waveform(mixture, "The mixture")
    if not mixture.any():
        raise ValueError("The mixture is silent (all samples are zero): there is nothing to separate.")
    return rate


def _window_slice(x: torch.Tensor, window: Window, factor: int) -> torch.Tensor:
    """A stage input ``(C, T_s)`` cut to ``window`` (its samples scaled by ``factor`` = 2^s): ``(C, 1, length)``."""
    start, size = window.start * factor, window.length * factor
    piece = x[:, start : start + size]
    return torch.nn.functional.pad(piece, (0, size - piece.shape[-1])).unsqueeze(1)


def separate(
    model: Separator,
    mixture: torch.Tensor,
    sample_rate: int,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    progress: bool = False,
    device: torch.device | str | None = None,
    *,
    rescale: bool = True,
    amp: bool | None = None,
    batch_channels: bool | None = None,
) -> torch.Tensor:
    """Separate a whole song ``(C, T)`` at ``sample_rate`` into stems ``(K, C, T)`` (K = 4, SOURCES order).

    Args:
        model: a :class:`~metalearn_sep.models.separator.Separator` (MetaTasNet, ConvTasNet);
            it is run in eval mode under ``torch.no_grad``.
        mixture: ``(channels, time)``, 1 or 2 channels, any length, finite, not silent.
        sample_rate: the mixture's rate (Hz); the stems come back at it.
        chunk_seconds: core length of one window; the peak memory grows with
            ``chunk_seconds + 2 * context_seconds``, never with the song's length.
        context_seconds: signal added on each side of a core and cropped away afterwards.
        progress: show a tqdm bar over the windows.
        device: where the model runs (it is moved there); default the model's device.
        rescale: apply the least-squares rescaling (step 6); ``False`` returns the raw
            model output at the song's rate and length.
        amp: bf16 autocast of the model (resampling and rescaling stay float32); default on
            for CUDA, off elsewhere; also allowed on the CPU.
        batch_channels: run both channels of a window as one batch; default on CUDA only.

    Returns:
        float32 stems ``(K, C, T)`` on the mixture's device.

    Raises:
        ValueError: an empty, silent or non-finite mixture, more than 2 channels, a wrong
            rank, a non-positive rate, bad chunk or context lengths, or a model that is no
            Separator - all before any work is done.
    """
    rate = _check_mixture(mixture, sample_rate)
    plan = SeparationPlan.make(model, mixture.shape[0], mixture.shape[-1], rate, chunk_seconds, context_seconds,
                               device, amp, batch_channels)
    inputs = [unit_level(resample(mixture.float(), rate, stage_rate)) for stage_rate in model.sample_rates]
    windows = (WindowInput(w, [_window_slice(x, w, 2**s) for s, x in enumerate(inputs)]) for w in plan.windows)
    stems, heap = None, HeapGuard()
    for _, begin, end, core in plan.run(windows, progress):
        if stems is None:
            stems = torch.zeros(core.shape[0], plan.channels, plan.length, device=mixture.device)
        stems[..., begin:end] = core.to(stems.device)
        heap.after_window()
    if rescale:
        stems *= least_squares_gains(stems, mixture.float()).to(stems.device)[..., None]
    return stems
