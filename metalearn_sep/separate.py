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

``protocol="original"`` reproduces the original repository's ``evaluate.py`` instead, for
comparing with the paper's figures. It differs from the course's steps in four places:

* resampling (1, 5) with librosa's ``kaiser_best`` filter (:data:`~metalearn_sep.audio.KAISER_BEST`
  in torchaudio) instead of torchaudio's default;
* stage inputs (2) of exactly (T_0 + 1) 2^s samples, T_0 = floor(T R_0 / r) (cut or
  zero-padded), the std taken after padding;
* windows (3) of the original ``MultiTasNet.inference(n_chunks=8)``: the song in 8 equal
  cores, each with 8 s of context, not aligned to the resampling grid (:func:`original_windows`);
* the cores are joined at the last stage's rate and resampled to r once (5), since their
  borders fall between samples at r.

Both separate each channel on its own and rescale (6) the same way. ``benchmarks/bench_protocols.py``
measures what the differences cost in SDR and time.

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
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .audio import fit_length, resample, unit_level
from .checks import check_duration, check_rate, check_waveform
from .heap import HeapGuard, reused_heap
from .precision import resolve_amp
from .models.separator import Separator
from .progress import progress_bar
from .rescale import least_squares_gains
from .windows import Window, WindowInput, original_windows, plan_windows, window_slice

DEFAULT_CHUNK_SECONDS = 18.0
"""Core length. With 2 s of context on each side the windows are 22 s: the model runs
(18 + 4) / 18 = 1.2 window-seconds per song-second, where the original's 8 s cores with 8 s
of context run 3. It keeps the full model's peak under 4 GB on a 3-minute stereo song
(``benchmarks/bench_separate.py``; figures in ``benchmarks/RESULTS.md``)."""

DEFAULT_CONTEXT_SECONDS = 2.0
"""Context on each side of a core: four times the masking network's one-sided receptive
field (the original code uses 8 s; pass ``context_seconds=8`` to reproduce it)."""


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


PROTOCOLS = ("course", "original")
"""The separation protocols :func:`separate` offers (see the module docstring)."""

ORIGINAL_CHUNKS = 8
"""The original code's evaluation splits every song into 8 cores (``n_chunks=8``)..."""

ORIGINAL_CONTEXT_SECONDS = 8.0
"""... each run with 8 s of context on both sides (``base_sr * 8`` samples at R_0)."""


@dataclass(frozen=True)
class SeparationPlan:
    """How one song is cut into windows and passes (steps 3-5 of the module docstring).

    Build it with :meth:`make`; :meth:`stage_inputs` prepares the whole song's normalised
    stage inputs and :meth:`run` separates the windows a reader gives it. ``protocol``
    ``"course"`` resamples each window's core back to the song's rate; ``"original"`` keeps
    the cores at the last stage's rate R_S, to be joined and resampled once
    (:meth:`output_length` samples at R_S).
    """

    model: Separator
    rate: int
    channels: int
    length: int
    windows: list[Window]
    passes: list[list[int]]
    device: torch.device
    amp: bool
    protocol: str = "course"

    @classmethod
    def make(cls, model: Separator, channels: int, length: int, rate: int, chunk_seconds: float | None = None,
             context_seconds: float | None = None, device: torch.device | str | None = None, amp: bool | None = None,
             batch_channels: bool | None = None, protocol: str = "course") -> SeparationPlan:
        """The plan for a song of ``length`` samples and ``channels`` channels at ``rate`` Hz (all checked first).

        ``chunk_seconds`` and ``context_seconds`` (default :data:`DEFAULT_CHUNK_SECONDS` and
        :data:`DEFAULT_CONTEXT_SECONDS`) belong to the course protocol: the original one has
        its own fixed windows and refuses them.
        """
        if not isinstance(model, Separator):
            raise ValueError(f"separate() needs a Separator model (MetaTasNet, ConvTasNet), got a {type(model).__name__}.")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {protocol!r}.")
        if protocol == "original" and (chunk_seconds is not None or context_seconds is not None):
            raise ValueError("The original protocol has its own windows (8 cores, 8 s of context): "
                             "pass no chunk_seconds or context_seconds with it.")
        chunk_seconds = check_duration(DEFAULT_CHUNK_SECONDS if chunk_seconds is None else chunk_seconds, "chunk_seconds")
        context_seconds = DEFAULT_CONTEXT_SECONDS if context_seconds is None else context_seconds
        if isinstance(context_seconds, bool) or not isinstance(context_seconds, (int, float)) or not 0 <= context_seconds < math.inf:
            raise ValueError(f"context_seconds must be a non-negative number of seconds, got {context_seconds!r}.")
        device = _resolve_device(model, device)
        amp = resolve_amp(device, amp)
        together = device.type == "cuda" if batch_channels is None else bool(batch_channels)
        base, stride = model.sample_rates[0], model.stride
        if protocol == "original":
            total = length * base // rate + 1  # the original's stage inputs: T_0 + 1 samples at R_0
            context = round(ORIGINAL_CONTEXT_SECONDS * base)
            windows = original_windows(total, ORIGINAL_CHUNKS, context, stride, model.min_length)
        else:
            grid = math.lcm(stride, base // math.gcd(base, rate))  # chunk borders land on whole samples at every rate
            core = max(round(chunk_seconds * base / grid), 1) * grid
            context = math.ceil(context_seconds * base / grid) * grid
            total = -(-length * base // rate)  # samples at R_0 covering the song
            windows = plan_windows(total, core, context, stride, model.min_length)
        passes = [list(range(channels))] if together else [[c] for c in range(channels)]
        return cls(model, rate, channels, length, windows, passes, device, amp, protocol)

    @property
    def scale(self) -> int:
        """Samples of the last stage's output per sample at R_0 (2^(S-1))."""
        return self.model.sample_rates[-1] // self.model.sample_rates[0]

    def output_length(self) -> int:
        """The joined cores' length: the song's at its rate (course), or (T_0 + 1) 2^(S-1) at R_S (original)."""
        return self.length if self.protocol == "course" else self.windows[-1].core_stop * self.scale

    def stage_inputs(self, mixture: torch.Tensor) -> list[torch.Tensor]:
        """The whole song's stage inputs ``(C, T_s)``, each divided by its std per channel (steps 1-2).

        Course: resampled with torchaudio's default filter, T_s = ceil(T R_s / r), the std
        over the song. Original: resampled with the kaiser_best filter and cut or
        zero-padded to (T_0 + 1) 2^s samples, T_0 = floor(T R_0 / r), before the std is taken
        (as the original's ``librosa.util.fix_length`` does).
        """
        rates = self.model.sample_rates
        if self.protocol == "course":
            return [unit_level(resample(mixture.float(), self.rate, r)) for r in rates]
        total = self.windows[-1].core_stop
        return [unit_level(fit_length(resample(mixture.float(), self.rate, r, "kaiser_best"), total * 2**s))
                for s, r in enumerate(rates)]

    def song_span(self, window: Window) -> tuple[int, int]:
        """The window's first and last-plus-one sample at the song's rate (the end may lie past the song)."""
        base = self.model.sample_rates[0]
        return window.start * self.rate // base, (window.start + window.length) * self.rate // base

    def _core(self, window: Window) -> tuple[int, int, int]:
        """Where a window's core goes in the output: ``(begin, end, offset)``, offset = begin's index in the window's output."""
        if self.protocol == "original":
            begin, end = window.core_start * self.scale, window.core_stop * self.scale
            return begin, end, begin - window.start * self.scale
        base = self.model.sample_rates[0]
        begin, end = window.core_start * self.rate // base, min(self.length, window.core_stop * self.rate // base)
        return begin, end, begin - self.song_span(window)[0]

    def run(self, windows: Iterable[WindowInput], progress: bool = False,
            reuse_heap: bool = False) -> Iterator[tuple[WindowInput, int, int, torch.Tensor]]:
        """Separate each window; yield ``(window input, begin, end, core)``.

        ``core`` ``(K, C, end - begin)`` holds the raw (not rescaled) estimates of output
        samples ``[begin, end)`` (see :meth:`output_length`), every channel. ``reuse_heap``
        keeps the windows' large buffers in the C heap (:func:`~metalearn_sep.heap.reused_heap`):
        faster, but only the streamed path, which holds nothing song-sized, keeps its peak
        flat with it (``benchmarks/RESULTS.md``).
        """
        model, rates = self.model, self.model.sample_rates
        was_training = model.training
        model.to(self.device).eval()
        try:
            bar = progress_bar(total=len(self.windows) * len(self.passes), unit="chunk", desc="separating", enabled=progress)
            with torch.inference_mode(), reused_heap() if reuse_heap else nullcontext(), bar:
                for item in windows:
                    window = item.window
                    begin, end, offset = self._core(window)
                    cores = []
                    for rows in self.passes:
                        mixtures = [x[rows].to(self.device) for x in item.inputs]
                        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):  # the model only
                            estimates = model.separate_stages(mixtures)
                        expected = window.length * self.scale
                        if tuple(estimates.shape) != (len(rows), model.num_sources, 1, expected):
                            raise ValueError(
                                f"The model must return estimates of shape ({len(rows)}, {model.num_sources}, 1, {expected}), "
                                f"got {tuple(estimates.shape)}."
                            )
                        out = estimates.float()[:, :, 0]  # (rows, K, window samples at R_S)
                        if self.protocol == "course":
                            out = resample(out, rates[-1], self.rate)
                        cores.append(out[..., offset : offset + end - begin])
                        del mixtures, estimates, out
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


def separate(
    model: Separator,
    mixture: torch.Tensor,
    sample_rate: int,
    chunk_seconds: float | None = None,
    context_seconds: float | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
    *,
    rescale: bool = True,
    amp: bool | None = None,
    batch_channels: bool | None = None,
    protocol: str = "course",
) -> torch.Tensor:
    """Separate a whole song ``(C, T)`` at ``sample_rate`` into stems ``(K, C, T)`` (K = 4, SOURCES order).

    Args:
        model: a :class:`~metalearn_sep.models.separator.Separator` (MetaTasNet, ConvTasNet);
            it is run in eval mode under ``torch.inference_mode``.
        mixture: ``(channels, time)``, 1 or 2 channels, any length, finite, not silent.
        sample_rate: the mixture's rate (Hz); the stems come back at it.
        chunk_seconds: core length of one window (default :data:`DEFAULT_CHUNK_SECONDS`); the
            peak memory grows with ``chunk_seconds + 2 * context_seconds``, never with the
            song's length.
        context_seconds: signal added on each side of a core and cropped away afterwards
            (default :data:`DEFAULT_CONTEXT_SECONDS`).
        progress: show a tqdm bar over the windows.
        device: where the model runs (it is moved there); default the model's device.
        rescale: apply the least-squares rescaling (step 6); ``False`` returns the raw
            model output at the song's rate and length.
        amp: bf16 autocast of the model (resampling and rescaling stay float32); default on
            for a GPU with native bf16, off elsewhere (:func:`~metalearn_sep.precision.resolve_amp`);
            also allowed on the CPU.
        batch_channels: run both channels of a window as one batch; default on CUDA only.
        protocol: ``"course"`` (the steps above) or ``"original"``, the original code's
            evaluation (see the module docstring; it takes no chunk or context length).

    Returns:
        float32 stems ``(K, C, T)`` on the mixture's device.

    Raises:
        ValueError: an empty, silent or non-finite mixture, more than 2 channels, a wrong
            rank, a non-positive rate, bad chunk or context lengths, an unknown protocol or
            a model that is no Separator - all before any work is done.
    """
    rate = _check_mixture(mixture, sample_rate)
    plan = SeparationPlan.make(model, mixture.shape[0], mixture.shape[-1], rate, chunk_seconds, context_seconds,
                               device, amp, batch_channels, protocol)
    inputs = plan.stage_inputs(mixture)
    windows = (WindowInput(w, [window_slice(x, w, 2**s) for s, x in enumerate(inputs)]) for w in plan.windows)
    stems = torch.zeros(model.num_sources, plan.channels, plan.output_length(), device=mixture.device)
    heap = HeapGuard()
    for _, begin, end, core in plan.run(windows, progress):
        stems[..., begin:end] = core.to(stems.device)
        heap.after_window()
    if protocol == "original":  # the joined last-stage output, resampled to the song's rate at once
        stems = fit_length(resample(stems, model.sample_rates[-1], rate, "kaiser_best"), mixture.shape[-1])
    if rescale:
        stems *= least_squares_gains(stems, mixture.float()).to(stems.device)[..., None]
    return stems
