"""SongPool: crops equal to slices of the pooled songs, each song fetched once, determinism, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from metalearn_sep.data.band import BandDataset
from metalearn_sep.data.pool import SongPool

RATE = 8000


class Counting(Dataset):
    """Wraps a dataset and counts how often each item is fetched."""

    def __init__(self, data: Dataset) -> None:
        self.data, self.fetched = data, [0] * len(data)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.fetched[j] += 1
        return self.data[j]


def band_songs(count: int = 3, seconds: float = 1.0) -> BandDataset:
    return BandDataset("train", RATE, segment=None, song_duration=seconds, size=count)


def test_items_are_slices_of_the_pooled_songs_and_each_song_is_fetched_once():
    songs = Counting(band_songs())
    pool = SongPool(songs, RATE, segment=0.25, size=50)
    whole = [songs.data[j][1] for j in range(len(songs))]
    used = set()
    for i in range(len(pool)):
        mixture, stems = pool[i]
        j, start = pool.crop(i)
        used.add(j)
        assert stems.shape == (4, 1, 2000)
        assert torch.equal(stems, whole[j][..., start : start + 2000])
        assert torch.equal(mixture, stems.sum(0))
    assert used == {0, 1, 2}, "50 draws should reach all three songs"
    assert songs.fetched == [1, 1, 1]
    assert {pool.crop(i)[1] for i in range(len(pool))} != {0}, "offsets are random"


def test_items_depend_only_on_seed_and_index():
    a = SongPool(band_songs(), RATE, segment=0.25, size=20, seed=3)
    b = SongPool(band_songs(), RATE, segment=0.25, size=20, seed=3).fill()
    c = SongPool(band_songs(), RATE, segment=0.25, size=20, seed=4)
    order = [7, 2, 19, 0, 7]
    for i in order:  # any order of access, a filled pool or not
        assert torch.equal(a[i][1], b[i][1])
    assert any(a.crop(i) != c.crop(i) for i in range(20))
    assert torch.equal(a[-1][1], a[19][1])
    # the cropped stems are copies: changing one never changes the pool
    _, stems = a[5]
    stems.zero_()
    assert a[5][1].abs().sum() > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one song"):
        SongPool([], RATE, segment=0.25)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        SongPool(band_songs(), RATE, segment=0.25, size=0)
    with pytest.raises(ValueError, match="fewer than one 2 s crop"):
        SongPool(band_songs(seconds=1.0), RATE, segment=2.0)[0]
    with pytest.raises(IndexError, match="out of range"):
        SongPool(band_songs(), RATE, segment=0.25, size=4)[4]
