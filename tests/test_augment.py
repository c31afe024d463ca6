"""The recipe's augmentation: channel and gain per stem, the remix across songs, presence, determinism."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from metalearn_sep.data.augment import AugmentedDataset, incoherent_remix, remix_plan
from metalearn_sep.data.band import BandDataset
from metalearn_sep.losses import presence
from metalearn_sep.train import StepBatchSampler

LENGTH = 16


def value(song: int, source: int, channel: int) -> float:
    """A recognisable constant: 100 * (song + 1) + 10 * source + channel + 1 (never zero)."""
    return 100.0 * (song + 1) + 10.0 * source + channel + 1


class Constants(Dataset):
    """Stereo songs whose stem j, channel c is the constant :func:`value` (optionally some stems silent)."""

    def __init__(self, songs: int = 12, silent: dict[int, int] | None = None, left_only: dict[int, int] | None = None) -> None:
        self.songs, self.silent, self.left_only = songs, silent or {}, left_only or {}

    def __len__(self) -> int:
        return self.songs

    def __getitem__(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        stems = torch.tensor([[value(n, j, c) for c in range(2)] for j in range(4)]).unsqueeze(-1).repeat(1, 1, LENGTH)
        if n in self.silent:
            stems[self.silent[n]] = 0.0
        if n in self.left_only:
            stems[self.left_only[n], 1] = 0.0
        return stems.sum(0), stems


def song_of(stem: torch.Tensor, source: int) -> int:
    """Which song a constant (gain 1) stem came from."""
    return int(round((stem[0, 0].item() - 10 * source - 1) // 100)) - 1


def test_channel_and_gain_per_stem_are_in_bounds_and_exactly_applied():
    data = Constants()
    augmented = AugmentedDataset(data, seed=5, remix=0.0)
    seen_channels, seen_gains = set(), []
    for n in range(len(data)):
        mixture, stems = augmented[n]
        choice = augmented.augmentation(n, channels=2)
        assert stems.shape == (4, 1, LENGTH) and mixture.shape == (1, LENGTH)
        for j in range(4):
            assert 0.75 <= choice.gains[j] <= 1.25
            expected = torch.full((1, LENGTH), value(n, j, choice.channels[j])) * torch.tensor(choice.gains[j], dtype=torch.float32)
            assert torch.equal(stems[j], expected)
        assert torch.equal(mixture, stems.sum(0))
        seen_channels.update(choice.channels)
        seen_gains.extend(choice.gains)
    assert seen_channels == {0, 1}  # both channels are picked, independently per stem
    assert len(set(seen_gains)) == len(seen_gains)  # one gain per stem, not per example


def test_item_is_a_pure_function_of_seed_and_index():
    data = Constants()
    first, again = AugmentedDataset(data, seed=3), AugmentedDataset(data, seed=3)
    torch.manual_seed(0)
    a = first[7]
    torch.manual_seed(99)  # the global RNG must not matter
    _ = first[2]
    b = again[7]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other = AugmentedDataset(data, seed=4)
    assert any(other.augmentation(n, 2) != first.augmentation(n, 2) for n in range(4))
    assert first.augmentation(7, 2) == again.augmentation(7, 2)


def test_options_keep_channels_and_turn_gains_off():
    data = Constants()
    plain = AugmentedDataset(data, gain=(1.0, 1.0), random_channel=False, remix=0.0)
    mixture, stems = plain[3]
    assert torch.equal(stems, data[3][1]) and torch.equal(mixture, data[3][0])
    assert plain.augmentation(3, 2).channels is None


def test_remix_plan_is_the_recipe():
    assert remix_plan(12).tolist()[:6] == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 0], [4, 5, 0, 1], [5, 0, 1, 2]]
    assert remix_plan(12).tolist()[6:] == [[k] * 4 for k in range(6, 12)]
    assert remix_plan(5).tolist() == [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0, 1, 2], [3, 3, 3, 3], [4, 4, 4, 4]]  # int(2.5 + 0.5) = 3
    assert remix_plan(4, 0.0).tolist() == [[k] * 4 for k in range(4)]
    assert remix_plan(1).tolist() == [[0, 0, 0, 0]]


def test_incoherent_remix_puts_stems_of_different_songs_together_as_specified():
    data = Constants(songs=12)
    stems = torch.stack([data[n][1] for n in range(12)])
    remixed = incoherent_remix(stems)
    for k in range(12):
        for j in range(4):
            song = (k + j) % 6 if k < 6 else k
            assert torch.equal(remixed[k, j], stems[song, j]), (k, j)


def test_a_batch_is_remixed_shuffled_and_rebuilt_from_the_augmented_items():
    data = Constants(songs=20)
    augmented = AugmentedDataset(data, seed=1, gain=(1.0, 1.0))
    indices = [13, 2, 7, 19, 4, 11, 0, 8]
    batch = augmented.__getitems__(indices)
    items = {n: augmented[n][1] for n in indices}
    rows = []
    for mixture, stems in batch:
        assert torch.equal(mixture, stems.sum(0))
        songs = [song_of(stems[j], j) for j in range(4)]
        for j, song in enumerate(songs):
            assert torch.equal(stems[j], items[song][j])  # each stem keeps its own item's channel and gain
        rows.append(songs)
    position = {n: p for p, n in enumerate(indices)}
    plans = sorted([position[s] for s in songs] for songs in rows)
    assert plans == sorted(remix_plan(len(indices)).tolist())  # the first half remixed as specified, the rest intact
    unshuffled = [[indices[p] for p in plan] for plan in remix_plan(len(indices)).tolist()]
    assert rows != unshuffled and sorted(rows) == sorted(unshuffled)  # shuffled: the remixes are not all first
    again = augmented.__getitems__(indices)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batch, again))


def test_presence_follows_the_augmented_stems():
    data = Constants(songs=8, silent={2: 1}, left_only={5: 3})
    augmented = AugmentedDataset(data, seed=2)
    assert presence(augmented[2][1].unsqueeze(0)).tolist() == [[True, False, True, True]]
    vocals_channel = augmented.augmentation(5, 2).channels[3]
    assert presence(augmented[5][1].unsqueeze(0))[0, 3].item() == (vocals_channel == 0)
    plain = AugmentedDataset(data, seed=2, gain=(1.0, 1.0), random_channel=False)
    batch = plain.__getitems__(list(range(8)))  # songs 0-3 remixed: bass of song 2 goes to the example led by song 1
    stems = torch.stack([s for _, s in batch])
    mask = presence(stems)
    assert mask.sum().item() == 8 * 4 - 1  # the one silent stem, wherever it went
    led_by_song_1 = [b for b in range(8) if song_of(stems[b, 0], 0) == 1]
    assert len(led_by_song_1) == 1 and mask[led_by_song_1[0]].tolist() == [True, False, True, True]


def test_batches_through_a_step_sampler_resume_exactly():
    band = BandDataset(stereo=True, segment=0.05, song_duration=0.1, size=8, sample_rate=8000)
    augmented = AugmentedDataset(band, seed=7)

    def batches(start: int, stop: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sampler = StepBatchSampler(len(augmented), 4, seed=0, start_step=start, stop_step=stop)
        return list(DataLoader(augmented, batch_sampler=sampler))

    torch.manual_seed(0)
    full = batches(0, 4)
    torch.manual_seed(123)
    resumed = batches(2, 4)  # a new epoch starts at step 2
    assert len(resumed) == 2
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[2:], resumed))
    mixture, stems = full[0]
    assert mixture.shape == (4, 1, 400) and stems.shape == (4, 4, 1, 400)
    torch.testing.assert_close(mixture, stems.sum(1))


def test_bad_arguments_and_items_are_named():
    data = Constants()
    with pytest.raises(ValueError, match="gain must be"):
        AugmentedDataset(data, gain=(1.2, 0.8))
    with pytest.raises(ValueError, match="gain must be"):
        AugmentedDataset(data, gain=0.5)
    with pytest.raises(ValueError, match="remix fraction"):
        AugmentedDataset(data, remix=1.5)
    with pytest.raises(ValueError, match="seed must be"):
        AugmentedDataset(data, seed=-1)
    with pytest.raises(IndexError, match=r"in \[0, 12\)"):
        AugmentedDataset(data)[12]
    with pytest.raises(ValueError, match=r"item 0 has stems \(3, 2, 16\)"):
        AugmentedDataset([(torch.zeros(2, LENGTH), torch.zeros(3, 2, LENGTH))])[0]
    with pytest.raises(ValueError, match="incoherent_remix expects"):
        incoherent_remix(torch.zeros(2, 3, 1, 4))
