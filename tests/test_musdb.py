"""MusdbDataset on tiny MUSDB18-HQ (wav) and MUSDB18 (.stem.mp4) folders built here; nothing downloads."""

from __future__ import annotations

import importlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

import metalearn_sep.data
from metalearn_sep import SOURCES
from metalearn_sep.data.musdb import MusdbDataset
from musdb_fixtures import LEVELS, MIX_GAIN, RATE, fake_stems, write_hq, write_stems

HQ_SONGS = {
    "train/Alpha - One": 3.0,
    "train/Beta - Two": 2.5,
    "train/Actions - One Minute Smile": 2.0,  # one of musdb's 14 validation tracks
    "test/Delta - Four": 3.0,
    "test/Gamma - Three": 2.0,
}
STEM_SONGS = {"train/Alpha - One": 2.0, "test/Gamma - Three": 2.0}


@pytest.fixture(scope="module")
def hq_root(tmp_path_factory) -> Path:
    return write_hq(tmp_path_factory.mktemp("musdb18hq"), HQ_SONGS)


@pytest.fixture(scope="module")
def stems_root(tmp_path_factory) -> Path:
    return write_stems(tmp_path_factory.mktemp("musdb18"), STEM_SONGS)


def read_hq(root: Path, ds: MusdbDataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What soundfile reads from the wav files at item ``index``'s excerpt: mixture.wav [2, T], stems [4, 2, T]."""
    track, start, length = ds.excerpt(index)
    folder = root / ds.tracks[track].subset / ds.names[track]
    stop = None if length is None else start + length
    read = lambda name: torch.from_numpy(sf.read(folder / f"{name}.wav", dtype="float32")[0][start:stop].T)
    return read("mixture"), torch.stack([read(name) for name in SOURCES])


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().double().numpy(), b.flatten().double().numpy())[0, 1])


# ----------------------------------------------------------------------------- splits, shapes


def test_hq_splits_follow_musdb_validation_list(hq_root):
    train = MusdbDataset(hq_root, "train", samples_per_track=3)
    valid = MusdbDataset(hq_root, "valid", samples_per_track=3)
    test = MusdbDataset(hq_root, "test")
    assert train.is_wav and valid.is_wav and test.is_wav  # detected from the folders
    assert train.names == ["Alpha - One", "Beta - Two"]
    assert valid.names == ["Actions - One Minute Smile"]
    assert test.names == ["Delta - Four", "Gamma - Three"]
    assert (len(train), len(valid), len(test)) == (6, 1, 2)  # samples_per_track applies to train only
    assert [t.name for t in test.tracks] == test.names and {t.subset for t in test.tracks} == {"test"}
    assert [train.excerpt(i).track for i in range(6)] == [0, 0, 0, 1, 1, 1]


def test_root_defaults_to_musdb_path(hq_root, monkeypatch):
    monkeypatch.setenv("MUSDB_PATH", str(hq_root))
    assert MusdbDataset(split="test").names == ["Delta - Four", "Gamma - Three"]


@pytest.mark.parametrize("rate", [44100, 8000])
def test_item_shapes_and_dtype(hq_root, rate):
    crops = MusdbDataset(hq_root, "train", sample_rate=rate, segment=1.0, samples_per_track=2)
    mixture, stems = crops[3]
    assert mixture.shape == (2, rate) and stems.shape == (4, 2, rate)
    assert mixture.dtype == stems.dtype == torch.float32
    whole = MusdbDataset(hq_root, "valid", sample_rate=rate, segment=None)  # a 2.0 s song
    mixture, stems = whole[0]
    assert mixture.shape == (2, 2 * rate) and stems.shape == (4, 2, 2 * rate)


@pytest.mark.parametrize("rate", [44100, 8000])
def test_stems_come_in_sources_order(hq_root, rate):
    _, stems = MusdbDataset(hq_root, "train", sample_rate=rate, segment=1.0, samples_per_track=2)[1]
    levels = stems.std(dim=-1)  # (4, 2): each fake stem has its own level
    expected = torch.tensor([LEVELS[name] for name in SOURCES])[:, None].expand(4, 2)
    torch.testing.assert_close(levels, expected.float(), rtol=0.1, atol=0)


# ----------------------------------------------------------------------------- content


def test_hq_crops_equal_the_wav_files(hq_root):
    ds = MusdbDataset(hq_root, "train", segment=1.0, samples_per_track=3, mixture="file")
    for index in (0, 4, 5):
        mixture, stems = ds[index]
        file_mixture, file_stems = read_hq(hq_root, ds, index)
        assert ds.excerpt(index).start > 0  # a real crop, not the beginning
        assert torch.equal(stems, file_stems)
        assert torch.equal(mixture, file_mixture)


def test_sum_mixture_is_exact_and_file_mixture_is_the_file(hq_root):
    summed = MusdbDataset(hq_root, "test", segment=None)
    filed = MusdbDataset(hq_root, "test", segment=None, mixture="file")
    for index in range(2):
        mixture, stems = summed[index]
        assert torch.equal(mixture, stems.sum(dim=0))
        file_mixture, file_stems = filed[index]
        assert torch.equal(file_stems, stems)
        assert torch.equal(file_mixture, read_hq(hq_root, filed, index)[0])  # whole mixture.wav
        torch.testing.assert_close(file_mixture, MIX_GAIN * mixture, rtol=0, atol=3e-4)  # the file mix is not the sum
        assert (file_mixture - mixture).abs().max() > 0.01


def test_resampled_crop_matches_scipy(hq_root):
    native = MusdbDataset(hq_root, "train", segment=1.0, samples_per_track=2)
    low = MusdbDataset(hq_root, "train", sample_rate=8000, segment=1.0, samples_per_track=2)
    assert low.excerpt(2) == native.excerpt(2)  # the same excerpt, read at another rate
    _, stems = native[2]
    _, stems_8k = low[2]
    reference = torch.from_numpy(resample_poly(stems.double().numpy(), 80, 441, axis=-1))
    inner = slice(400, -400)  # each crop is resampled alone: its edges differ by method
    torch.testing.assert_close(stems_8k[..., inner].double(), reference[..., inner], rtol=0, atol=2e-3)
    assert corr(stems_8k[..., inner], reference[..., inner]) > 0.9999


def test_mono_is_the_mean_of_the_channels(hq_root):
    stereo = MusdbDataset(hq_root, "train", segment=1.0, samples_per_track=2)
    mono = MusdbDataset(hq_root, "train", segment=1.0, samples_per_track=2, stereo=False)
    mixture, stems = mono[1]
    assert mixture.shape == (1, RATE) and stems.shape == (4, 1, RATE)
    torch.testing.assert_close(stems, stereo[1][1].mean(dim=-2, keepdim=True))
    assert torch.equal(mixture, stems.sum(dim=0))


def test_track_shorter_than_segment_is_zero_padded(hq_root):
    ds = MusdbDataset(hq_root, "valid", segment=2.5, mixture="file")  # the song lasts 2.0 s
    assert ds.excerpt(0) == (0, 0, int(2.5 * RATE))
    mixture, stems = ds[0]
    file_mixture, file_stems = read_hq(hq_root, ds, 0)
    assert stems.shape == (4, 2, int(2.5 * RATE)) and file_stems.shape[-1] == 2 * RATE
    assert torch.equal(stems[..., : 2 * RATE], file_stems) and torch.equal(mixture[..., : 2 * RATE], file_mixture)
    assert not stems[..., 2 * RATE :].any() and not mixture[..., 2 * RATE :].any()


# ----------------------------------------------------------------------------- crops


def test_random_crops_are_a_pure_function_of_index_and_seed(hq_root):
    ds = MusdbDataset(hq_root, "train", segment=0.5, samples_per_track=8)
    first = [ds[i] for i in (5, 3)]
    again = MusdbDataset(hq_root, "train", segment=0.5, samples_per_track=8)
    for (mixture, stems), index in zip(first, (5, 3)):
        assert torch.equal(again[index][1], stems) and torch.equal(ds[index][0], mixture)
    assert torch.equal(pickle.loads(pickle.dumps(ds))[5][1], first[0][1])  # what a spawned worker reads
    excerpts = [ds.excerpt(i) for i in range(len(ds))]
    assert all(0 <= start <= ds.tracks[track].samples - length for track, start, length in excerpts)
    starts = [excerpt.start for excerpt in excerpts]
    assert len(set(starts[:8])) == 8 and len(set(starts[8:])) == 8  # different crops of one song
    reseeded = MusdbDataset(hq_root, "train", segment=0.5, samples_per_track=8, seed=1)
    assert sum(reseeded.excerpt(i).start != s for i, s in enumerate(starts)) >= 14


def test_fixed_crops_are_evenly_spread_and_valid_takes_the_middle(hq_root):
    train = MusdbDataset(hq_root, "train", segment=1.0, samples_per_track=3, random_crop=False)
    room = train.tracks[0].samples - RATE  # 3.0 s song, 1.0 s crops
    assert [train.excerpt(k).start for k in range(3)] == [round(room / 6), round(room / 2), round(5 * room / 6)]
    assert MusdbDataset(hq_root, "test", segment=1.0).excerpt(1).start == RATE // 2  # middle of a 2.0 s song
    valid = MusdbDataset(hq_root, "valid", segment=1.0, random_crop=True)
    assert valid.excerpt(0).start != RATE // 2 and valid.excerpt(0) == valid.excerpt(0)


# ----------------------------------------------------------------------------- MUSDB18 (.stem.mp4)


def test_stems_layout_reads_aac_with_sample_alignment(stems_root):
    ds = MusdbDataset(stems_root, "train", segment=1.0, samples_per_track=2, mixture="file")
    assert not ds.is_wav and ds.names == ["Alpha - One"] and len(ds) == 2
    assert MusdbDataset(stems_root, "test").names == ["Gamma - Three"]
    mixture, stems = ds[1]
    assert mixture.shape == (2, RATE) and stems.shape == (4, 2, RATE) and stems.dtype == torch.float32
    assert ds.tracks[0].chunk_start == 0 and ds.tracks[0].chunk_duration is None  # tracks left whole
    _, start, length = ds.excerpt(1)
    written = torch.from_numpy(fake_stems("Alpha - One", STEM_SONGS["train/Alpha - One"])).permute(0, 2, 1)
    written = written[..., start : start + length]
    similarity = torch.tensor([[corr(stems[i], written[j]) for j in range(4)] for i in range(4)])
    assert (similarity.diagonal() > 0.99).all()  # SOURCES order, aligned to the sample (1 sample off: ~0.97)
    assert (similarity - torch.diag(similarity.diagonal())).abs().max() < 0.1
    assert corr(mixture, MIX_GAIN * written.sum(0)) > 0.99


def test_stems_resampled_whole_track(stems_root):
    ds = MusdbDataset(stems_root, "test", sample_rate=8000, segment=None)
    mixture, stems = ds[0]
    assert mixture.shape == (2, 16000) and stems.shape == (4, 2, 16000)
    assert torch.equal(mixture, stems.sum(dim=0))
    expected = torch.tensor([LEVELS[name] for name in SOURCES])[:, None].expand(4, 2)
    torch.testing.assert_close(stems.std(dim=-1), expected.float(), rtol=0.1, atol=0)


# ----------------------------------------------------------------------------- bad input


def test_stems_folder_without_validation_tracks_has_no_valid_split(stems_root):
    with pytest.raises(FileNotFoundError, match="none of the 14 MUSDB18 validation tracks"):
        MusdbDataset(stems_root, "valid")


def test_train_split_empty_when_only_validation_tracks(tmp_path):
    write_hq(tmp_path, {"train/Leaf - Summerghost": 0.5})
    assert MusdbDataset(tmp_path, "valid").names == ["Leaf - Summerghost"]
    with pytest.raises(FileNotFoundError, match="validation track, so the 'train' split is empty"):
        MusdbDataset(tmp_path, "train")


def test_wrong_format_flag_says_which_to_pass(hq_root, stems_root):
    with pytest.raises(ValueError, match="holds MUSDB18-HQ wav folders.*pass is_wav=True"):
        MusdbDataset(hq_root, is_wav=False)
    with pytest.raises(ValueError, match=r"holds MUSDB18 \.stem\.mp4 files.*pass is_wav=False"):
        MusdbDataset(stems_root, is_wav=True)


def test_missing_or_empty_root(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MusdbDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="has no train/ folder"):
        MusdbDataset(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no MUSDB18 tracks"):
        MusdbDataset(tmp_path)
    (tmp_path / "train" / "notes.txt").write_text("no songs here")
    with pytest.raises(FileNotFoundError, match="has no test/ folder"):
        MusdbDataset(tmp_path, "test")
    monkeypatch.delenv("MUSDB_PATH", raising=False)
    with pytest.raises(ValueError, match="set \\$MUSDB_PATH"):
        MusdbDataset()


def test_incomplete_track_folder(tmp_path):
    write_hq(tmp_path, {"test/Delta - Four": 0.5})
    (tmp_path / "test" / "Delta - Four" / "vocals.wav").unlink()
    with pytest.raises(FileNotFoundError, match="lacks vocals.wav"):
        MusdbDataset(tmp_path, "test")


def test_stray_subfolder_is_named(tmp_path):
    write_hq(tmp_path, {"test/Delta - Four": 0.5})
    (tmp_path / "test" / "Delta - Four" / "old takes").mkdir()  # musdb would list it as a track
    with pytest.raises(FileNotFoundError, match="lists 'old takes' as a track but .* does not exist"):
        MusdbDataset(tmp_path, "test")


def test_mono_files_need_stereo_false(tmp_path):
    write_hq(tmp_path, {"test/Delta - Four": 0.5}, channels=1)
    with pytest.raises(ValueError, match="1 channel.*pass stereo=False"):
        MusdbDataset(tmp_path, "test")
    mixture, stems = MusdbDataset(tmp_path, "test", stereo=False, segment=None)[0]
    assert mixture.shape == (1, RATE // 2) and stems.shape == (4, 1, RATE // 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "validation"}, "split must be one of"),
        ({"sample_rate": 0}, "sample_rate must be a positive integer"),
        ({"sample_rate": -8000}, "sample_rate must be a positive integer"),
        ({"sample_rate": 8000.5}, "sample_rate must be a positive integer"),
        ({"segment": 0}, "segment must be a positive number"),
        ({"segment": -1.0}, "segment must be a positive number"),
        ({"segment": float("nan")}, "segment must be a positive number"),
        ({"samples_per_track": 0}, "samples_per_track must be a positive integer"),
        ({"mixture": "linear"}, "mixture must be one of"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"stereo": "yes"}, "stereo must be True or False"),
        ({"is_wav": 1}, "is_wav must be True, False or None"),
    ],
)
def test_bad_arguments_fail_early(hq_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MusdbDataset(hq_root, **kwargs)


def test_index_out_of_range(hq_root):
    ds = MusdbDataset(hq_root, "test")
    with pytest.raises(IndexError, match=r"in \[0, 2\)"):
        ds[2]


def test_missing_ffmpeg_is_one_clear_sentence(hq_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg, no ffprobe
    with pytest.raises(RuntimeError, match="needs the ffmpeg and ffprobe program.*install FFmpeg"):
        MusdbDataset(hq_root, "test")


def test_module_imports_without_musdb_or_stempeg(monkeypatch):
    for name in ("musdb", "stempeg"):  # importing these would fail, as stempeg does without FFmpeg
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "metalearn_sep.data.musdb")
    monkeypatch.setattr(metalearn_sep.data, "musdb", None, raising=False)
    module = importlib.import_module("metalearn_sep.data.musdb")
    assert module.MusdbDataset.__name__ == "MusdbDataset"
