"""The band as a dataset: disjoint train / valid / test seed ranges and crops of their songs."""

from __future__ import annotations

import operator

import torch

from ...checks import check_duration, check_rate, is_int
from .common import CROP, stream
from .render import render_window

SPLIT_SIZE = 1_000_000
"""Songs in each split; split ``s`` uses seeds ``SPLIT_OFFSETS[s] + [0, SPLIT_SIZE)``."""
SPLIT_OFFSETS: dict[str, int] = {"train": 0, "valid": 1_000_000, "test": 2_000_000}
DEFAULT_SIZES: dict[str, int] = {"train": 100_000, "valid": 16, "test": 16}


def _check_split(split: str) -> str:
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_OFFSETS)}, got {split!r}.")
    return split


def split_seed(split: str, index: int) -> int:
    """The song seed of item ``index`` of ``split`` (train, valid, test: disjoint ranges of SPLIT_SIZE)."""
    _check_split(split)
    if not is_int(index, 0) or index >= SPLIT_SIZE:
        raise IndexError(f"index must be an integer in [0, {SPLIT_SIZE}) for the {split} split, got {index!r}.")
    return SPLIT_OFFSETS[split] + int(index)


class BandDataset(torch.utils.data.Dataset):
    """Songs of the synthetic band, generated on the fly: item ``i`` is ``(mixture, stems)``.

    ``mixture`` is ``(channel, time)`` and ``stems`` ``(4, channel, time)`` float32, with
    ``mixture == stems.sum(0)`` exactly: ``segment`` seconds of the ``song_duration`` s song
    of seed ``split_seed(split, i)``, from sample :meth:`crop_start` on. Only the crop is
    rendered; it equals ``synthesize(seed, sample_rate, song_duration, stereo)[..., start:
    start + n]``. Random crops start at an offset drawn from the item's seed, so an item is
    a pure function of ``(split, i, constructor arguments)`` and a run resumes exactly;
    shuffle with the DataLoader's sampler.

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"`` (disjoint seeds).
        sample_rate: Hz.
        segment: crop length in seconds (at most ``song_duration``), or None for whole songs.
        song_duration: length of each generated song in seconds.
        stereo: two channels instead of one.
        size: number of items; default 100 000 for train, 16 for valid and test.
        random_crop: crop at a random offset; default True for train, False (offset 0) otherwise.
    """

    def __init__(self, split: str = "train", sample_rate: int = 8000, segment: float | None = 1.0,
                 song_duration: float = 4.0, stereo: bool = False, size: int | None = None,
                 random_crop: bool | None = None) -> None:
        self.split = _check_split(split)
        self.sample_rate = check_rate(sample_rate)
        self.song_duration = check_duration(song_duration, "song_duration")
        self.segment = None if segment is None else check_duration(segment, "segment")
        if self.segment is not None and self.segment > self.song_duration:
            raise ValueError(f"segment ({self.segment} s) must not be longer than song_duration ({self.song_duration} s).")
        size = DEFAULT_SIZES[split] if size is None else size
        if not is_int(size, 1) or size > SPLIT_SIZE:
            raise ValueError(f"size must be an integer in [1, {SPLIT_SIZE}], got {size!r}.")
        self.size = int(size)
        self.stereo = bool(stereo)
        self.random_crop = split == "train" if random_crop is None else bool(random_crop)
        self.song_samples = round(self.song_duration * self.sample_rate)
        self.segment_samples = self.song_samples if self.segment is None else max(1, round(self.segment * self.sample_rate))

    def __len__(self) -> int:
        return self.size

    def crop_start(self, index: int) -> int:
        """The first sample of item ``index``'s crop within its song."""
        spare = self.song_samples - self.segment_samples
        if not self.random_crop or spare <= 0:
            return 0
        return int(stream(split_seed(self.split, index), CROP).integers(0, spare + 1))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = operator.index(index)
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} is out of range for a {self.split} BandDataset of {self.size} songs.")
        index %= self.size
        seed, start = split_seed(self.split, index), self.crop_start(index)
        stems = render_window(seed, self.sample_rate, start, self.segment_samples, self.stereo)
        return stems.sum(0), stems
