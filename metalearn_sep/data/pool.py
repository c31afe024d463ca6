"""A song pool: random training crops of a fixed set of songs, each rendered once and kept in memory.

Rendering the synthetic-band crops of a batch costs about a third of the model's training
step for chapter 01's cpu model on one core (0.021 s a 2 s crop at 8 kHz, two a batch, against
0.12 s for the model's step on that batch), so a run that renders every crop afresh spends a fifth to two fifths of its time
making data. :class:`SongPool` renders (or loads) each of ``len(songs)`` whole songs once,
the first time an item needs it, and then serves crops at random offsets of them: for 128
songs of 8 s at 8 kHz, 131 MB of float32 stems, rendered in 7 s on one core (``SongPool(...).fill()``),
after which a crop costs a slice.

The price is variety: the same songs are seen again and again, at other offsets. In
``benchmarks/bench_conv_tasnet_train.py --songs 128`` (5 minutes on 2 cores) the pool gave
1,950-2,000 steps against 1,260-1,600 with fresh crops, and no better separation: 8.62-8.82
dB of mean SI-SDR improvement over seeds 0-2 (mean 8.71), against 8.22-9.73 dB (mean 8.77)
for the same seeds of fresh crops; step for step the pool learns less. So the course's recipes render fresh crops,
and the pool is there for runs where rendering, not the model, limits the step rate.

Item ``i`` is a pure function of ``(seed, i)`` and the songs: the song and the offset are
drawn from a generator seeded with both, so a :class:`~metalearn_sep.train.Trainer` run
resumes exactly and DataLoader workers agree (each keeps its own copy of what it rendered).
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_duration
from .band import DEFAULT_SIZES

DEFAULT_SIZE = DEFAULT_SIZES["train"]
"""Items of a pool when ``size`` is not given: as many as a BandDataset's training split."""


class SongPool(Dataset):
    """Random ``segment``-second crops of the songs of ``songs``: item ``i`` is ``(mixture, stems)``.

    ``songs[j]`` must be a whole song ``(mixture (channel, time), stems (4, channel, time))``
    at ``sample_rate``, e.g. ``BandDataset("train", rate, segment=None, size=128)``. Item
    ``i`` is ``stems[..., start : start + n]`` of song ``j`` (``n = round(segment *
    sample_rate)``), with ``j`` and ``start`` drawn from ``(seed, i)``, and its mixture is
    the sum of the cropped stems. Songs are fetched from ``songs`` on first use and kept;
    :meth:`fill` fetches them all at once.

    Args:
        songs: a dataset of whole songs, all at least ``segment`` seconds long.
        sample_rate: Hz, the rate of ``songs``.
        segment: crop length in seconds.
        size: number of items (an epoch of the Trainer's sampler); default 100 000.
        seed: seeds the choice of song and offset.
    """

    def __init__(self, songs: Dataset, sample_rate: int, segment: float, size: int = DEFAULT_SIZE, seed: int = 0) -> None:
        if len(songs) < 1:
            raise ValueError("A SongPool needs at least one song.")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}.")
        self.songs = songs
        self.segment = check_duration(segment, "segment")
        self.segment_samples = max(1, round(self.segment * sample_rate))
        self.size, self.seed = int(size), operator.index(seed)
        self._stems: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.size

    def song(self, j: int) -> torch.Tensor:
        """The stems ``(4, channel, time)`` of song ``j``, fetched from ``songs`` on first use."""
        if j not in self._stems:
            stems = self.songs[j][1]
            if stems.shape[-1] < self.segment_samples:
                raise ValueError(
                    f"Song {j} of the pool has {stems.shape[-1]} samples, fewer than one {self.segment:g} s crop "
                    f"({self.segment_samples} samples)."
                )
            self._stems[j] = stems
        return self._stems[j]

    def fill(self) -> SongPool:
        """Fetch every song now (e.g. before timing a run); returns the pool."""
        for j in range(len(self.songs)):
            self.song(j)
        return self

    def crop(self, index: int) -> tuple[int, int]:
        """``(song, first sample)`` of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        j = int(rng.integers(len(self.songs)))
        spare = self.song(j).shape[-1] - self.segment_samples
        return j, int(rng.integers(spare + 1))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = operator.index(index)
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} is out of range for a SongPool of {self.size} items.")
        j, start = self.crop(index % self.size)
        stems = self.song(j)[..., start : start + self.segment_samples].clone()
        return stems.sum(0), stems

    def __repr__(self) -> str:
        return (f"SongPool({len(self._stems)}/{len(self.songs)} songs fetched, {self.segment:g} s crops, "
                f"{self.size} items, seed {self.seed})")
