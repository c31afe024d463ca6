"""Whole-song separation at any sample rate: Meta-TasNet's inference protocol.

:func:`separate` turns a mixture ``(C, T)`` at any rate r (44.1, 22.05, 8 kHz, ...; C = 1
or 2) into four stems ``(4, C, T)`` at the same rate and length, in ``SOURCES`` order. It
follows the original code's evaluation (``MultiTasNet.inference`` and ``evaluate.py``):

1. **Resample** the mixture to every stage's rate R_s = R_0 2^s (8, 16, 32 kHz for three
   stages) with torchaudio, once for the whole song.
2. **Normalise** each stage's input by its own standard deviation, per channel, computed
   over the *whole song* (as the original does). Because the divisor does not depend on
   the chunk, chunking changes nothing for a model whose receptive field is shorter than
   the context (see 3); a per-chunk std would rescale every chunk differently.
3. **Chunk** the song into cores of ``chunk_seconds`` (default 18 s), each run with
   ``context_seconds`` (default 2 s; the original uses 8 s) of real signal on both sides
   (less at the song's ends, where there is no signal to add). The context is cropped
   away and the cores are laid side by side, with no crossfade, as in the original. Why
   no crossfade: for a model whose receptive field fits in the context, a core is
   *exactly* the whole-song output, and a crossfade would only average it with a worse
   estimate made with less context.
   Meta-TasNet's GroupNorm layers, however, take statistics over a whole window, so its
   cores are not exact; the context keeps neighbouring windows' statistics nearly equal,
   which is what the original relies on to keep the borders inaudible. Its masking
   network sees 0.95 s (about 0.5 s on each side of a frame), so 2 s of context covers the
   receptive field four times over; the original's 8 s (``context_seconds=8``) costs three
   times the compute at 8 s cores (chapter 04 compares both with a single window).
   Window lengths are made multiples of the model's stride and at least its
   minimum length (zeros are appended at the song's end and cropped off again). Chunk
   borders lie on a grid of ``lcm(stride, R_0 / gcd(R_0, r))`` samples at R_0 (10 ms for
   44.1 kHz), so that they fall on whole samples at every rate and each window is
   resampled in phase with the whole song: for a local model, chunked and whole-song
   outputs are then identical (the tests check it).
4. **Separate**: a mono model sees left and right as two mono signals (the paper's model is
   mono). On CUDA both channels of a window run as one batch of 2. On the CPU they run one
   after the other: a batch of 2 is faster there too (about 1.4 times, measured on 2 cores)
   but doubles the peak memory, and with the default windows of 22 s it does not fit
   in 4 GB (``batch_channels=True`` chooses it when memory allows). Only the
   *last* stage's estimates are used.
5. **Resample back** each window's estimates from the last stage's rate to r and keep its
   core (for the last core, up to the song's length T) - the original's answer to issue #3
   ("the output is 32 kHz and shorter than the input").
6. **Rescale** (:func:`least_squares_gains`): training is scale invariant and the input was
   normalised, so each stem is multiplied by the c_i minimising ||x - sum_i c_i s_i||^2
   against the mixture x at rate r, per channel (the paper's evaluation step; SDR is not
   scale invariant).

Models. A *multi-stage* model (it has ``sample_rates``, like :class:`MetaTasNet`) has one
module per stage in ``.stages``; stage s maps its mixture ``(batch, 1, T_0 2^s)`` and the
previous stage's ``.latents`` (None for the first) to an output whose ``.estimates`` is
``(batch, K, 1, T_s)`` (:class:`~metalearn_sep.models.meta_tasnet.Stage`'s interface; the
stages are chained exactly as ``MetaTasNet.forward`` chains them). A *single-rate* model
(like ConvTasNet) maps ``(batch, 1, T) -> (batch, K, 1, T)`` at one rate, found, in order,
from the ``model_rate`` argument, ``model.config["sample_rate"]`` or ``model.sample_rate``
(ConvTasNet records none: pass ``model_rate``, ``--model-rate`` on the command line).
Either may declare ``stride`` (window lengths are made multiples of it) and ``min_length``
(the shortest window, in samples at its first rate; for Meta-TasNet it is read from the
spectrogram branches: 513 samples at 8 kHz). Both go through the same code: a single-rate
model is a one-stage model.

Memory. The model's memory is bounded by the window (core plus twice the context), not by
the song. :func:`separate` also holds song-length buffers: the input, its resampled copies
(1.3 times the input at 44.1 kHz) and the returned stems (about 4 MiB per second of stereo
44.1 kHz song in all, measured). :func:`separate_file`, the command line's path, holds none:
it reads the song piece by piece (:class:`StreamedSong`) and streams the stems to disk, so
its peak does not grow with the song's length. When the resident set has grown by more
than 10 % since the first window, the freed heap memory is handed back to the operating
system (``malloc_trim`` on glibc): otherwise heap fragmentation lets the peak creep up
from window to window (measured: +25 % over six windows of the full model).
``python benchmarks/bench_separate.py`` measures speed and peak memory for the full model.
"""

from __future__ import annotations

import ctypes
import importlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import soundfile as sf
import torch
from torch import nn

from . import SOURCES
from .audio import resample, write_audio
from .checks import check_duration, check_rate, check_waveform
from .models.meta_tasnet import MetaTasNet
from .train import load_checkpoint

DEFAULT_CHUNK_SECONDS = 18.0
"""Core length. With 2 s of context on each side the windows are 22 s. Measured for the full
default Meta-TasNet on a 3-minute stereo 44.1 kHz song, 2 CPU threads, fp32: peak RSS
3,234-3,721 MiB over three runs, under the 4 GB target (3,815 MiB), and 0.80 and 0.96 times
real time (1.11 in the third, on a busy machine): the model runs (18 + 4) / 18 = 1.2
window-seconds per channel and song-second, where the original's 8 s cores with 8 s of
context run 3 and took 1.93 times real time. ``benchmarks/bench_separate.py`` measures
these."""

DEFAULT_CONTEXT_SECONDS = 2.0
"""Context on each side of a core: four times the masking network's one-sided receptive
field (the original code uses 8 s; pass ``context_seconds=8`` to reproduce it)."""

MODEL_CLASSES = {
    "MetaTasNet": "metalearn_sep.models.meta_tasnet",
    "ConvTasNet": "metalearn_sep.models.conv_tasnet",
}
"""Model classes a checkpoint may name, and the modules that define them."""


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`separate` needs to know about a model.

    Attributes:
        rates: the rate of each stage's input, R_0 2^s (one entry for a single-rate model).
        multiple: window lengths (samples at R_0) are multiples of it (the stride).
        minimum: the shortest window the model accepts (samples at R_0).
        multi_stage: the model's ``.stages`` are chained, one mixture per stage.
    """

    rates: tuple[int, ...]
    multiple: int
    minimum: int
    multi_stage: bool

    @classmethod
    def of(cls, model: nn.Module, model_rate: int | None = None) -> ModelSpec:
        """Read the rates and length constraints of ``model`` (see the module docstring)."""
        multi_stage = hasattr(model, "sample_rates")
        if multi_stage:
            rates = tuple(int(rate) for rate in model.sample_rates)
            if len(getattr(model, "stages", ())) != len(rates):
                raise ValueError(f"A multi-stage model needs one module in .stages per rate in .sample_rates {list(rates)}.")
            if any(rate != rates[0] * 2**s for s, rate in enumerate(rates)):
                raise ValueError(f"A multi-stage model's rates must double from stage to stage, got {list(rates)}.")
            if model_rate is not None and check_rate(model_rate, "model_rate") != rates[0]:
                raise ValueError(f"model_rate={model_rate} contradicts the model's own stage rates {list(rates)}.")
        else:
            config = getattr(model, "config", None) or {}
            rate = model_rate if model_rate is not None else config.get("sample_rate", getattr(model, "sample_rate", None))
            if rate is None:
                raise ValueError(
                    f"Cannot tell at which rate this {type(model).__name__} works: pass model_rate= (Hz; --model-rate "
                    "on the command line), or give the model a sample_rate attribute or config entry."
                )
            rates = (check_rate(rate, "model_rate"),)
        multiple = int(getattr(model, "stride", 1))
        minimum = getattr(model, "min_length", None)
        if minimum is None and isinstance(model, MetaTasNet):
            # The spectrogram branch of stage s needs n_fft/2 + 1 samples at R_s.
            minimum = max(-(-stage.encoder.spectrogram.min_length // 2**s) for s, stage in enumerate(model.stages))
        return cls(rates, multiple, max(int(minimum or 1), 1), multi_stage)

    def run(self, model: nn.Module, mixtures: list[torch.Tensor]) -> torch.Tensor:
        """The last stage's estimates ``(batch, K, 1, T_S)`` for stage inputs ``(batch, 1, T_0 2^s)``.

        A multi-stage model's stages are called one by one, keeping only the latents the next
        stage needs: ``model(mixtures)`` would hold every stage's masks, latents and estimates
        until the last stage is done (about 15 % more peak memory for Meta-TasNet).
        """
        if not self.multi_stage:
            return model(mixtures[0])
        previous = None
        for stage, mixture in zip(model.stages[:-1], mixtures):
            previous = stage(mixture, previous).latents
        return model.stages[-1](mixtures[-1], previous).estimates


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


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


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
        length = max(_round_up(stop - start, multiple), _round_up(minimum, multiple))
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


def _resolve_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
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


def separate(
    model: nn.Module,
    mixture: torch.Tensor,
    sample_rate: int,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    progress: bool = False,
    device: torch.device | str | None = None,
    *,
    model_rate: int | None = None,
    rescale: bool = True,
    amp: bool | None = None,
    batch_channels: bool | None = None,
) -> torch.Tensor:
    """Separate a whole song ``(C, T)`` at ``sample_rate`` into stems ``(K, C, T)`` (K = 4, SOURCES order).

    Args:
        model: a multi-stage model (:class:`MetaTasNet`) or a single-rate one (ConvTasNet);
            see the module docstring. It is run in eval mode under ``torch.no_grad``.
        mixture: ``(channels, time)``, 1 or 2 channels, any length, finite, not silent.
        sample_rate: the mixture's rate (Hz); the stems come back at it.
        chunk_seconds: core length of one window; the peak memory grows with
            ``chunk_seconds + 2 * context_seconds``, never with the song's length.
        context_seconds: signal added on each side of a core and cropped away afterwards.
        progress: show a tqdm bar over the windows.
        device: where the model runs (it is moved there); default the model's device.
        model_rate: a single-rate model's rate when it does not declare one.
        rescale: apply the least-squares rescaling (step 6); ``False`` returns the raw
            model output at the song's rate and length.
        amp: bf16 autocast of the model (resampling and rescaling stay float32); default on
            for CUDA, off elsewhere; also allowed on the CPU.
        batch_channels: run both channels of a window as one batch; default on CUDA only.

    Returns:
        float32 stems ``(K, C, T)`` on the mixture's device.

    Raises:
        ValueError: an empty, silent, non-finite mixture, more than 2 channels, a wrong rank,
            a non-positive rate, bad chunk/context lengths or a model whose rate is unknown
            - all before any work is done.
    """
    rate = _check_mixture(mixture, sample_rate)
    plan = _Plan.make(model, mixture.shape[0], mixture.shape[-1], rate, chunk_seconds, context_seconds, device,
                      model_rate, amp, batch_channels)
    inputs = [normalised_stage_input(mixture, rate, stage_rate) for stage_rate in plan.spec.rates]
    stems = None
    for rows, begin, end, core in plan.run(model, lambda w, rows: [_window_slice(x, rows, w, 2**s) for s, x in enumerate(inputs)], progress):
        if stems is None:
            stems = torch.zeros(core.shape[1], plan.channels, plan.length, device=mixture.device)
        stems[:, rows, begin:end] = core.transpose(0, 1).to(stems.device)
    if rescale:
        stems *= least_squares_gains(stems, mixture.float()).to(stems.device)[..., None]
    return stems


@dataclass(frozen=True)
class _Plan:
    """How one song is cut into windows and passes (steps 3-5 of the module docstring)."""

    spec: ModelSpec
    rate: int
    channels: int
    length: int
    windows: list[Window]
    passes: list[list[int]]
    device: torch.device
    amp: bool

    @classmethod
    def make(cls, model: nn.Module, channels: int, length: int, rate: int, chunk_seconds: float, context_seconds: float,
             device: torch.device | str | None, model_rate: int | None, amp: bool | None, batch_channels: bool | None) -> _Plan:
        check_duration(chunk_seconds, "chunk_seconds")
        if isinstance(context_seconds, bool) or not isinstance(context_seconds, (int, float)) or not 0 <= context_seconds < math.inf:
            raise ValueError(f"context_seconds must be a non-negative number of seconds, got {context_seconds!r}.")
        spec = ModelSpec.of(model, model_rate)
        device = _resolve_device(model, device)
        amp = device.type == "cuda" if amp is None else bool(amp)
        if amp and device.type not in ("cuda", "cpu"):
            raise ValueError(f"bf16 autocast is offered on CUDA and CPU only; this run is on {device}.")
        together = device.type == "cuda" if batch_channels is None else bool(batch_channels)
        base = spec.rates[0]
        grid = math.lcm(spec.multiple, base // math.gcd(base, rate))  # chunk borders land on whole samples at every rate
        core = max(round(chunk_seconds * base / grid), 1) * grid
        context = math.ceil(context_seconds * base / grid) * grid
        total = -(-length * base // rate)  # samples at R_0 covering the song
        windows = plan_windows(total, core, context, spec.multiple, spec.minimum)
        passes = [list(range(channels))] if together else [[c] for c in range(channels)]
        return cls(spec, rate, channels, length, windows, passes, device, amp)

    def song_samples(self, window: Window) -> tuple[int, int]:
        """The window's first and last-plus-one sample at the song's rate (the end may lie past the song)."""
        base = self.spec.rates[0]
        return window.start * self.rate // base, (window.start + window.length) * self.rate // base

    def run(self, model: nn.Module, window_inputs, progress: bool):
        """Yield ``(rows, begin, end, core)`` per window and pass: the raw estimates ``core``
        ``(len(rows), K, end - begin)`` of song samples ``[begin, end)`` of channels ``rows``.

        ``window_inputs(window, rows)`` gives the model's normalised stage inputs, one
        ``(len(rows), 1, window.length * 2**s)`` per stage.
        """
        base, stages = self.spec.rates[0], len(self.spec.rates)
        was_training = model.training
        model.to(self.device).eval()
        heap = _HeapGuard()
        try:
            with torch.no_grad(), _progress(len(self.windows) * len(self.passes), progress) as bar:
                for window in self.windows:
                    first, _ = self.song_samples(window)  # output sample of the window's start
                    begin, end = window.core_start * self.rate // base, min(self.length, window.core_stop * self.rate // base)
                    for rows in self.passes:
                        mixtures = [x.to(self.device) for x in window_inputs(window, rows)]
                        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):  # the model only
                            estimates = self.spec.run(model, mixtures)
                        expected = window.length * 2 ** (stages - 1)
                        if estimates.dim() != 4 or estimates.shape[0] != len(rows) or estimates.shape[2] != 1 or estimates.shape[3] != expected:
                            raise ValueError(
                                f"The model must return estimates of shape ({len(rows)}, sources, 1, {expected}), "
                                f"got {tuple(estimates.shape)}."
                            )
                        back = resample(estimates.float()[:, :, 0], self.spec.rates[-1], self.rate)  # (batch, K, time at r)
                        yield rows, begin, end, back[..., begin - first : end - first]
                        del mixtures, estimates, back
                        heap.after_window()
                        bar.update(1)
        finally:
            model.train(was_training)


def normalised_stage_input(mixture: torch.Tensor, rate: int, stage_rate: int) -> torch.Tensor:
    """``mixture`` ``(C, T)`` resampled to ``stage_rate`` and divided by its std, per channel, over the whole song.

    A silent channel stays silent (it is divided by 1).
    """
    x = resample(mixture.float(), rate, stage_rate)
    std = x.std(dim=-1, keepdim=True)
    return x / torch.where(std > 0, std, torch.ones_like(std))


def _window_slice(x: torch.Tensor, rows: list[int], window: Window, factor: int) -> torch.Tensor:
    """Rows of a stage input ``(C, T_s)`` cut to ``window`` (scaled by ``factor`` = 2^s): ``(rows, 1, length)``."""
    start, size = window.start * factor, window.length * factor
    piece = x[rows, start : start + size]
    return torch.nn.functional.pad(piece, (0, size - piece.shape[-1])).unsqueeze(1)


@cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None on other C libraries and systems."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _resident_bytes() -> int | None:
    """This process's resident set size in bytes (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _HeapGuard:
    """Keeps heap fragmentation from letting the resident set creep up from window to window.

    After the first window it records the resident set; after each later one it calls
    ``malloc_trim`` (glibc) only when the resident set has grown more than ``slack`` above
    that. Trimming after *every* window would also bound the memory, but each trim hands
    pages back that the next window must fault in again: measured, five times slower for a
    small model (whose windows are cheap), and no faster for the full one.
    """

    def __init__(self, slack: float = 0.1) -> None:
        self.slack, self.limit = slack, None

    def after_window(self) -> None:
        trim, resident = _malloc_trim(), _resident_bytes()
        if trim is None or resident is None:
            return
        if self.limit is None:
            self.limit = (1 + self.slack) * resident
        elif resident > self.limit:
            trim(0)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="chunk", desc="separating", dynamic_ncols=True)


def load_model(checkpoint: str | os.PathLike) -> nn.Module:
    """Rebuild the model a course checkpoint holds (its ``model_class`` and ``model_config``) with its weights.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (one sentence) for a
    corrupt file, an unknown class, a configuration that does not build, or weights that
    do not fit the configuration.
    """
    state = load_checkpoint(checkpoint)
    name, config = state.get("model_class"), state.get("model_config")
    if not isinstance(name, str) or name not in MODEL_CLASSES:
        raise ValueError(f"{checkpoint} holds a {name!r} model; this command separates with {' or '.join(MODEL_CLASSES)}.")
    if not isinstance(config, dict):
        raise ValueError(f"{checkpoint} has no model configuration (model_config is {config!r}).")
    cls = getattr(importlib.import_module(MODEL_CLASSES[name]), name)
    try:
        model = cls(**config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{checkpoint}: its {name} configuration does not build a model ({err})") from None
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{checkpoint}: the weights do not fit its {name} configuration ({first})") from None
    return model


@contextmanager
def _atomic_folder(folder: Path):
    """Yield a temporary folder next to ``folder`` that replaces ``folder`` once the block succeeds.

    On any failure the temporary folder is removed, and so are the parent folders this call
    created: nothing is left half-written, and a previous ``folder`` stays as it was.
    """
    created = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes the folder private; give it the usual mode
        yield tmp
        old = tmp.with_name(tmp.name + ".old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:  # deepest first
            try:
                parent.rmdir()
            except OSError:
                break
        raise


def _stem_names(count: int) -> list[str]:
    return list(SOURCES) if count == len(SOURCES) else [f"source{i}" for i in range(count)]


def write_stems(stems: torch.Tensor, sample_rate: int, folder: str | os.PathLike, names: Sequence[str] | None = None) -> list[Path]:
    """Write ``stems`` ``(K, C, T)`` as ``folder/<name>.wav`` (32-bit float), all or nothing.

    The files are written into a temporary folder next to ``folder``, which is renamed into
    place once every file is complete (replacing a previous ``folder``). On any failure the
    temporary folder is removed, and so are the parent folders this call created: nothing is
    left half-written.
    """
    folder = Path(folder)
    names = list(names) if names is not None else _stem_names(stems.shape[0])
    if len(names) != stems.shape[0]:
        raise ValueError(f"Got {len(names)} names for {stems.shape[0]} stems.")
    with _atomic_folder(folder) as tmp:
        for name, stem in zip(names, stems):
            write_audio(tmp / f"{name}.wav", stem, sample_rate)
    return [folder / f"{name}.wav" for name in names]


STATISTICS_BLOCK_SECONDS = 30.0
"""Length of the pieces the first pass over a song file reads to measure each stage input's std."""


class StreamedSong:
    """A song file read piece by piece, so that separating it needs memory for a window, not for the song.

    :func:`separate` resamples the whole song once per stage. Here each piece is resampled
    on its own, with ``margin`` samples of real signal on both sides that are cropped away
    afterwards, and every piece starts on a multiple of ``align`` = lcm over the stages of
    r / gcd(r, R_s): a point where the resampling kernels are in phase with those of the
    whole song. A piece's samples then equal the whole song's resampled at once, up to
    float rounding (the tests check it). :meth:`measure` makes the first pass: each stage
    input's standard deviation per channel, accumulated in float64 over 30 s pieces,
    checking every piece for NaN and the whole song for silence.

    Args:
        path: an audio file soundfile can read, 1 or 2 channels.
        rates: the stage rates R_s (Hz).
    """

    def __init__(self, path: str | os.PathLike, rates: Sequence[int]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"Audio file {self.path} does not exist.")
        try:
            self.file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise ValueError(f"Cannot read {self.path} as audio: {err}.") from None
        self.rate, self.channels, self.length = self.file.samplerate, self.file.channels, self.file.frames
        if self.channels not in (1, 2):
            self.file.close()
            raise ValueError(f"The mixture must have 1 (mono) or 2 (stereo) channels, {self.path} has {self.channels}.")
        if self.length == 0:
            self.file.close()
            raise ValueError(f"The mixture is empty: {self.path} holds no samples.")
        self.rates = list(rates)
        self.align = math.lcm(*(self.rate // math.gcd(self.rate, r) for r in self.rates))
        self.margin = self.align * math.ceil(4096 / self.align)  # well beyond the resampling kernel's reach
        self.step = self.align * max(1, round(STATISTICS_BLOCK_SECONDS * self.rate / self.align))  # samples per pass piece
        self.scales: list[torch.Tensor] | None = None
        self._cached: tuple[Window, int, torch.Tensor, list[torch.Tensor]] | None = None  # window, block start, block, pieces

    def close(self) -> None:
        self.file.close()

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``[start, stop)`` as ``(C, stop - start)`` float32 (zeros past the end), checked for NaN."""
        self.file.seek(min(start, self.length))
        data = self.file.read(max(0, min(stop, self.length) - start), dtype="float32", always_2d=True)
        x = torch.from_numpy(data.T.copy())
        if x.numel() and not torch.isfinite(x).all():
            raise ValueError(f"The mixture contains NaN or infinite samples ({self.path}, from sample {start}).")
        return torch.nn.functional.pad(x, (0, stop - start - x.shape[-1]))

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """The samples to read for song samples ``[start, stop)``: with the margins, within the song."""
        return max(0, start - self.margin), min(self.length, stop + self.margin)

    def stage_piece(self, start: int, size: int, stage: int, block: torch.Tensor, block_start: int) -> torch.Tensor:
        """``size`` samples of stage ``stage``'s input from song sample ``start`` (a multiple of ``align``): ``(C, size)``.

        ``block`` holds the song from sample ``block_start`` on and must cover :meth:`span` of
        the piece; past the song's end the piece is zero, as :func:`separate` pads it.
        """
        rate = self.rates[stage]
        stop = start + -(-size * self.rate // rate)
        first, last = self.span(start, stop)
        y = resample(block[:, first - block_start : last - block_start], self.rate, rate)
        offset = (start - first) * rate // self.rate
        piece = y[:, offset : offset + size]
        return torch.nn.functional.pad(piece, (0, size - piece.shape[-1]))

    def measure(self) -> None:
        """First pass: every stage input's std per channel (``self.scales``, 1 for a silent channel)."""
        sums = torch.zeros(len(self.rates), self.channels, 2, dtype=torch.float64)
        counts = [0] * len(self.rates)
        for start in range(0, self.length, self.step):
            stop = min(start + self.step, self.length)
            first, last = self.span(start, stop + self.align)  # a piece's last sample may need one more input sample
            block = self.read(first, last)
            for s, rate in enumerate(self.rates):
                piece = self.stage_piece(start, -(-(stop - start) * rate // self.rate), s, block, first).double()
                sums[s, :, 0] += piece.sum(-1)
                sums[s, :, 1] += piece.pow(2).sum(-1)
                counts[s] += piece.shape[-1]
        if not sums[..., 1].any():
            raise ValueError(f"The mixture is silent (all samples are zero): there is nothing to separate ({self.path}).")
        self.scales = []
        for s, n in enumerate(counts):
            variance = (sums[s, :, 1] - sums[s, :, 0] ** 2 / n) / max(n - 1, 1)
            std = variance.clamp_min(0).sqrt().float()[:, None]  # (C, 1)
            self.scales.append(torch.where(std > 0, std, torch.ones_like(std)))

    def window_inputs(self, plan: _Plan, window: Window, rows: list[int]) -> list[torch.Tensor]:
        """The normalised stage inputs of ``window`` for channels ``rows``, as :meth:`_Plan.run` wants them."""
        if self._cached is None or self._cached[0] is not window:
            start, stop = plan.song_samples(window)
            first, last = self.span(start, stop + self.align)  # the end may fall between song samples
            block = self.read(first, last)
            pieces = [self.stage_piece(start, window.length * 2**s, s, block, first) / self.scales[s] for s in range(len(self.rates))]
            self._cached = (window, first, block, pieces)
        return [piece[rows].unsqueeze(1) for piece in self._cached[3]]

    def window_samples(self, begin: int, end: int) -> torch.Tensor:
        """Song samples ``[begin, end)`` ``(C, end - begin)`` of the window last given to :meth:`window_inputs`."""
        _, first, block, _ = self._cached
        return block[:, begin - first : end - first]


def separate_file(
    song: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    device: torch.device | str | None = None,
    model_rate: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """``python -m metalearn_sep separate``: separate ``song`` into ``out_dir/<song stem>/<source>.wav``.

    The same protocol as :func:`separate` (equal results up to float rounding), streamed, so
    that memory does not grow with the song's length: the song is read piece by piece
    (:class:`StreamedSong`: a first pass measures each stage input's std), each window's raw
    stems go to temporary 32-bit float files while the least-squares normal equations are
    accumulated (:class:`NormalEquations`), and a last pass writes the rescaled stems. The
    checkpoint and the song are checked before anything is written; the output folder
    appears all or nothing (a failed run leaves no partial files). The progress bar shows
    when the song needs more than one window. Returns the written paths.
    """
    model = load_model(checkpoint)
    spec = ModelSpec.of(model, model_rate)
    reader = StreamedSong(song, spec.rates)
    try:
        reader.measure()
        device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        plan = _Plan.make(model, reader.channels, reader.length, reader.rate, chunk_seconds, context_seconds, device,
                          model_rate, None, None)
        several = reader.length / reader.rate > chunk_seconds
        with _atomic_folder(Path(out_dir) / Path(song).stem) as tmp:
            names = _stream_raw_stems(model, plan, reader, tmp, progress and several)
    finally:
        reader.close()
    return [Path(out_dir) / Path(song).stem / f"{name}.wav" for name in names]


def _stream_raw_stems(model: nn.Module, plan: _Plan, reader: StreamedSong, folder: Path, progress: bool) -> list[str]:
    """Separate ``reader``'s song window by window into ``folder/<name>.wav``, rescaled; returns the names."""
    raw, equations, names, pending = [], None, [], {}
    try:
        for rows, begin, end, core in plan.run(model, lambda w, rows: reader.window_inputs(plan, w, rows), progress):
            if not raw:
                names = _stem_names(core.shape[1])
                raw = [sf.SoundFile(str(folder / f".{name}.raw.wav"), "w", reader.rate, plan.channels, "FLOAT") for name in names]
                equations = NormalEquations(len(names), plan.channels)
            for row, estimate in zip(rows, core):
                pending[row] = estimate  # (K, end - begin)
            if len(pending) == plan.channels:  # every channel of this window is done
                stems = torch.stack([pending[c] for c in range(plan.channels)], dim=1)  # (K, C, end - begin)
                equations.add(stems, reader.window_samples(begin, end))
                for file, stem in zip(raw, stems):
                    file.write(stem.T.numpy())
                pending = {}
    finally:
        for file in raw:
            file.close()
    gains = equations.gains().float()  # (K, C)
    for name, gain in zip(names, gains):
        with sf.SoundFile(str(folder / f".{name}.raw.wav")) as source, \
                sf.SoundFile(str(folder / f"{name}.wav"), "w", reader.rate, plan.channels, "FLOAT") as target:
            for block in source.blocks(blocksize=reader.step, dtype="float32", always_2d=True):
                target.write(block * gain.numpy())
        (folder / f".{name}.raw.wav").unlink()
    return names
