"""Whole-song files separated piece by piece, from disk to disk: what ``python -m metalearn_sep separate`` runs.

:func:`~metalearn_sep.separate.separate` holds the song, its resampled copies and the stems
in memory (about 4 MiB per second of stereo 44.1 kHz song). :func:`separate_file` follows
the same protocol with none of those: :class:`StreamedSong` reads and resamples the song
a window at a time, each window's raw stems go to temporary files while the least-squares
normal equations are accumulated, and a last pass writes the rescaled stems. Its peak
memory is that of one window, whatever the song's length.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import soundfile as sf
import torch

from . import SOURCES
from .atomic import atomic_folder
from .audio import read_audio, resample, write_audio
from .checkpoint import load_model
from .heap import HeapGuard
from .rescale import NormalEquations
from .separate import DEFAULT_CHUNK_SECONDS, SeparationPlan, separate
from .windows import WindowInput

STATISTICS_BLOCK_SECONDS = 30.0
"""Length of the pieces the first pass over a song file reads to measure each stage input's std."""


class StreamedSong:
    """A song file read piece by piece, so that separating it needs memory for a window, not for the song.

    :func:`~metalearn_sep.separate.separate` resamples the whole song once per stage. Here
    each piece is resampled on its own, with ``margin`` samples of real signal on both
    sides that are cropped away afterwards, and every piece starts on a multiple of
    ``align`` = lcm over the stages of r / gcd(r, R_s): a point where the resampling
    kernels are in phase with those of the whole song. A piece's samples then equal the
    whole song's resampled at once, up to float rounding. :meth:`measure` makes the first
    pass: each stage input's standard deviation per channel, accumulated in float64 over
    30 s pieces, checking every piece for NaN and the whole song for silence.

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

    def windows(self, plan: SeparationPlan) -> Iterator[WindowInput]:
        """Each window of ``plan`` with its normalised stage inputs and the song samples around it (call :meth:`measure` first)."""
        if self.scales is None:
            raise ValueError("StreamedSong.measure() must run before the windows are read.")
        for window in plan.windows:
            start, stop = plan.song_span(window)
            first, last = self.span(start, stop + self.align)  # the end may fall between song samples
            block = self.read(first, last)
            inputs = [(self.stage_piece(start, window.length * 2**s, s, block, first) / self.scales[s]).unsqueeze(1)
                      for s in range(len(self.rates))]
            yield WindowInput(window, inputs, song=block, song_start=first)


def stem_names(count: int) -> list[str]:
    """File names of ``count`` stems: the source names for four, ``source<i>`` otherwise."""
    return list(SOURCES) if count == len(SOURCES) else [f"source{i}" for i in range(count)]


def separate_file(
    song: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    chunk_seconds: float | None = None,
    context_seconds: float | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    protocol: str = "course",
    amp: bool | None = None,
) -> list[Path]:
    """``python -m metalearn_sep separate``: separate ``song`` into ``out_dir/<song stem>/<source>.wav``.

    The protocol of :func:`~metalearn_sep.separate.separate` (equal results up to float
    rounding), streamed so that memory does not grow with the song's length. The checkpoint
    and the song are checked before anything is written; the output folder appears all or
    nothing (a failed run leaves no partial files). The progress bar shows when the song
    needs more than one window. Returns the written paths (32-bit float WAV at the song's rate).
    ``amp``: bf16 autocast of the model, as in :func:`~metalearn_sep.separate.separate`.

    ``protocol="original"`` (the original code's evaluation) joins the whole song's output
    before resampling it once, so it reads the song into memory and calls
    :func:`~metalearn_sep.separate.separate`: its memory grows with the song.
    """
    model, _ = load_model(checkpoint)
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    folder = Path(out_dir) / Path(song).stem
    if protocol == "original":
        mixture, rate = read_audio(song)
        stems = separate(model, mixture, rate, chunk_seconds, context_seconds, progress, device, amp=amp, protocol=protocol)
        names = stem_names(stems.shape[0])
        with atomic_folder(folder) as tmp:
            for name, stem in zip(names, stems):
                write_audio(tmp / f"{name}.wav", stem, rate)
        return [folder / f"{name}.wav" for name in names]
    reader = StreamedSong(song, model.sample_rates)
    try:
        reader.measure()
        plan = SeparationPlan.make(model, reader.channels, reader.length, reader.rate, chunk_seconds, context_seconds,
                                   device, amp, protocol=protocol)
        several = reader.length / reader.rate > (chunk_seconds or DEFAULT_CHUNK_SECONDS)
        with atomic_folder(folder) as tmp:
            names = _write_stems(plan, reader, tmp, progress and several)
    finally:
        reader.close()
    return [folder / f"{name}.wav" for name in names]


def _write_stems(plan: SeparationPlan, reader: StreamedSong, folder: Path, progress: bool) -> list[str]:
    """Separate ``reader``'s song window by window into ``folder/<name>.wav``, rescaled; returns the names."""
    raw, equations, names, heap = [], None, [], HeapGuard()
    try:
        for item, begin, end, core in plan.run(reader.windows(plan), progress, reuse_heap=True):
            core = core.cpu()  # (K, C, end - begin)
            if not raw:
                names = stem_names(core.shape[0])
                raw = [sf.SoundFile(str(folder / f".{name}.raw.wav"), "w", reader.rate, plan.channels, "FLOAT") for name in names]
                equations = NormalEquations(len(names), plan.channels)
            equations.add(core, item.mixture(begin, end))
            for file, stem in zip(raw, core):
                file.write(stem.T.numpy())
            heap.after_window()
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
