"""The decoded MUSDB18 cache (prepare_musdb, CachedMusdb) on tiny folders built here; nothing downloads."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from metalearn_sep import SOURCES
from metalearn_sep.__main__ import main
from metalearn_sep.audio import fit_length
from metalearn_sep.data import cache as cache_module
from metalearn_sep.data.augment import AugmentedDataset
from metalearn_sep.data.cache import FORMAT, MANIFEST, CachedMusdb, musdb_dataset, prepare_musdb, verify_cache
from metalearn_sep.data.musdb import MusdbDataset
from metalearn_sep.recipe import build_data, parse_recipe
from musdb_fixtures import RATE, write_hq, write_stems

pytestmark = pytest.mark.usefixtures("one_thread")

HQ_SONGS = {
    "train/Alpha - One": 2.0,
    "train/Beta - Two": 0.4,  # shorter than a 0.5 s crop
    "train/Actions - One Minute Smile": 1.5,  # one of musdb's validation tracks
    "test/Gamma - Three": 1.0,
}
RATES = (8000, RATE)


@pytest.fixture(scope="module")
def hq_root(tmp_path_factory) -> Path:
    return write_hq(tmp_path_factory.mktemp("musdb18hq"), HQ_SONGS)


@pytest.fixture(scope="module")
def stems_root(tmp_path_factory) -> Path:
    return write_stems(tmp_path_factory.mktemp("musdb18"), {"train/Alpha - One": 1.0, "test/Gamma - Three": 0.5})


@pytest.fixture(scope="module")
def cache(hq_root, tmp_path_factory) -> Path:
    return prepare_musdb(hq_root, tmp_path_factory.mktemp("built") / "cache", RATES, progress=False)


@pytest.fixture(scope="module")
def stems_cache(stems_root, tmp_path_factory) -> Path:
    """A cache of the .stem.mp4 folder, which has no validation track."""
    return prepare_musdb(stems_root, tmp_path_factory.mktemp("built_stems") / "cache", 8000, progress=False)


@pytest.fixture
def copy(cache, tmp_path) -> Path:
    """A copy of the cache this test may damage."""
    return Path(shutil.copytree(cache, tmp_path / "copy"))


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.npy"))}


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*.npy")}


# ----------------------------------------------------------------------------- the items


@pytest.mark.parametrize("rate", RATES)
def test_whole_tracks_equal_musdb_dataset_bit_for_bit(hq_root, cache, rate):
    for split in ("train", "valid", "test"):
        whole = dict(segment=None, samples_per_track=1)  # item i = track i
        cached, decoded = CachedMusdb(cache, split, rate, **whole), MusdbDataset(hq_root, split, rate, **whole)
        assert cached.names == decoded.names and len(cached) == len(decoded)
        for i in range(len(cached)):
            (mix, stems), (mix_ref, stems_ref) = cached[i], decoded[i]
            assert stems.dtype == torch.float32 and stems.shape == (4, 2, stems_ref.shape[-1])
            assert torch.equal(stems, stems_ref) and torch.equal(mix, mix_ref)
    mono = dict(segment=None, stereo=False)
    mono, mono_ref = CachedMusdb(cache, "test", rate, **mono)[0], MusdbDataset(hq_root, "test", rate, **mono)[0]
    assert mono[1].shape[1] == 1 and torch.allclose(mono[1], mono_ref[1], atol=1e-6)


def test_crops_are_musdb_dataset_excerpts(hq_root, cache):
    args = dict(segment=0.5, samples_per_track=5, seed=3)
    native, decoded = CachedMusdb(cache, "train", RATE, **args), MusdbDataset(hq_root, "train", RATE, **args)
    assert len(native) == len(decoded) == 10
    for i in range(len(native)):
        assert native.excerpt(i) == decoded.excerpt(i)
        assert all(torch.equal(a, b) for a, b in zip(native[i], decoded[i]))  # no resampling: the same samples
    low, whole = CachedMusdb(cache, "train", 8000, **args), CachedMusdb(cache, "train", 8000, segment=None, samples_per_track=1)
    for i in (0, 7):
        track, start, _ = low.excerpt(i)
        first = round(start * 8000 / RATE)
        assert low.excerpt(i) == decoded.excerpt(i) and low[i][1].shape == (4, 2, 4000)
        assert torch.equal(low[i][1], fit_length(whole[track][1][..., first:first + 4000], 4000))
    short = low[9][1]  # Beta - Two: 0.4 s, zero-padded to 0.5 s
    assert short[..., 3200:].abs().max() == 0 and short[..., :3200].abs().max() > 0
    valid = CachedMusdb(cache, "valid", RATE, segment=1.0)
    assert valid.excerpt(0) == MusdbDataset(hq_root, "valid", RATE, segment=1.0).excerpt(0) == (0, int(0.25 * RATE), RATE)
    assert [low.excerpt(i) for i in range(10)] == [CachedMusdb(cache, "train", 8000, **args).excerpt(i) for i in range(10)]
    reseeded = CachedMusdb(cache, "train", 8000, **{**args, "seed": 4})
    assert [low.excerpt(i).start for i in range(5)] != [reseeded.excerpt(i).start for i in range(5)]


def test_the_stems_variant_is_exact_too(stems_root, stems_cache):
    assert manifest(stems_cache)["variant"] == "stems" and manifest(stems_cache)["source"] == str(stems_root)
    cached, decoded = CachedMusdb(stems_cache, "test", 8000, segment=None), MusdbDataset(stems_root, "test", 8000, segment=None)
    assert torch.equal(cached[0][1], decoded[0][1])


def test_the_manifest_names_every_file_and_its_checksum(hq_root, cache):
    saved = manifest(cache)
    assert (saved["format"], saved["variant"], saved["source"], saved["rates"]) == (FORMAT, "hq", str(hq_root), list(RATES))
    assert [(t["name"], t["split"]) for t in saved["tracks"]] == [
        ("Alpha - One", "train"), ("Beta - Two", "train"), ("Actions - One Minute Smile", "valid"), ("Gamma - Three", "test")]
    alpha = saved["tracks"][0]
    assert (alpha["native_rate"], alpha["native_samples"]) == (RATE, 2 * RATE)
    assert {rate: entry["samples"] for rate, entry in alpha["rates"].items()} == {"8000": 16000, str(RATE): 2 * RATE}
    array = np.load(cache / alpha["rates"]["8000"]["file"], mmap_mode="r")
    assert isinstance(array, np.memmap) and array.dtype == np.float32 and array.shape == (len(SOURCES), 2, 16000)
    assert verify_cache(cache) == []
    assert not list(cache.rglob("*.tmp"))


# ----------------------------------------------------------------------------- resuming


def test_an_interrupted_prepare_resumes_to_the_same_files(hq_root, cache, tmp_path, monkeypatch):
    save, calls = np.save, []

    def dies_on_the_third_file(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        save(*args, **kwargs)

    monkeypatch.setattr(np, "save", dies_on_the_third_file)
    with pytest.raises(KeyboardInterrupt):
        prepare_musdb(hq_root, tmp_path / "cache", RATES, progress=False)
    monkeypatch.setattr(np, "save", save)
    out = tmp_path / "cache"
    assert manifest(out)["rates"] == [] and len(files(out)) == 2 and not list(out.rglob("*.tmp"))
    with pytest.raises(ValueError, match=r"is unfinished .*rerun `python -m metalearn_sep prepare-musdb .*`, which resumes it\."):
        CachedMusdb(out, "train", 8000)
    done = stamps(out)
    (out / str(RATE) / ".Gamma - Three.npy.x1y2.tmp").write_bytes(b"left by a killed run")
    prepare_musdb(hq_root, out, RATES, progress=False)
    assert files(out) == files(cache) and manifest(out) == manifest(cache)
    assert all(stamps(out)[name] == stamp for name, stamp in done.items())  # finished files were kept
    assert not list(out.rglob("*.tmp"))


def test_a_rerun_redoes_missing_and_damaged_files_only(hq_root, cache, copy):
    before = stamps(copy)
    (copy / "8000" / "Alpha - One.npy").unlink()
    damaged = copy / str(RATE) / "Gamma - Three.npy"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    prepare_musdb(hq_root, copy, [8000], progress=False)  # the rates the cache holds are all kept complete
    assert files(copy) == files(cache)
    assert {name for name, stamp in stamps(copy).items() if before.get(name) != stamp} == {
        "8000/Alpha - One.npy", f"{RATE}/Gamma - Three.npy"}


def test_another_rate_is_added_and_the_others_kept(hq_root, cache, copy):
    before = stamps(copy)
    prepare_musdb(hq_root, copy, [16000], progress=False)
    assert manifest(copy)["rates"] == [8000, 16000, RATE] and stamps(copy).items() >= before.items()
    whole = CachedMusdb(copy, "test", 16000, segment=None)[0][1]
    assert torch.equal(whole, MusdbDataset(hq_root, "test", 16000, segment=None)[0][1])


# ----------------------------------------------------------------------------- bad input


def test_a_missing_or_foreign_folder_says_how_to_build_a_cache(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"MUSDB18 cache folder {tmp_path / 'none'} does not exist: "
                                                          "build it with `python -m metalearn_sep prepare-musdb")):
        CachedMusdb(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path} holds no {MANIFEST}, so it is no MUSDB18 cache")):
        CachedMusdb(tmp_path)


def test_a_missing_rate_names_the_rates_held_and_the_command(hq_root, cache):
    message = (f"Cache {cache} holds 8000, 44100 Hz, not 16000 Hz: add that rate with "
               f"`python -m metalearn_sep prepare-musdb {hq_root} --out {cache} --rate 16000` (the others stay).")
    with pytest.raises(ValueError, match=re.escape(message)):
        CachedMusdb(cache, "train", 16000)


def test_a_missing_or_partial_track_file_is_named(copy):
    (copy / "8000" / "Alpha - One.npy").unlink()
    with pytest.raises(ValueError, match=r"no intact file for track 'Alpha - One' at 8000 Hz .*which resumes and redoes it\."):
        CachedMusdb(copy, "train", 8000)
    partial = copy / str(RATE) / "Gamma - Three.npy"
    partial.write_bytes(partial.read_bytes()[:1000])
    with pytest.raises(ValueError, match="no intact file for track 'Gamma - Three' at 44100 Hz"):
        CachedMusdb(copy, "test", RATE)


def test_a_checksum_mismatch_is_found_by_verify_not_by_opening(copy):
    path = copy / str(RATE) / "Gamma - Three.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    CachedMusdb(copy, "test", RATE)  # headers and sizes only: opening stays fast on 37 GB
    (problem,) = verify_cache(copy)
    assert problem.startswith(f"Track 'Gamma - Three' at {RATE} Hz ({RATE}/Gamma - Three.npy) is missing or does not match")


def test_resuming_refuses_another_variant_format_or_copy(stems_root, hq_root, copy, tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"Cache {copy} holds MUSDB18-HQ (wav) but {stems_root} is MUSDB18 (.stem.mp4)")):
        prepare_musdb(stems_root, copy, progress=False)
    other = write_hq(tmp_path / "other", {"train/Alpha - One": 1.0, "test/Gamma - Three": 1.0})
    with pytest.raises(ValueError, match=re.escape(f"Cache {copy} was built from another MUSDB18 copy than {other}")):
        prepare_musdb(other, copy, progress=False)
    saved = manifest(copy)
    (copy / MANIFEST).write_text(json.dumps({**saved, "format": 99}))
    with pytest.raises(ValueError, match=re.escape(f"{copy / MANIFEST} is cache format 99, this code reads format {FORMAT}")):
        prepare_musdb(hq_root, copy, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files but no manifest.json, so it is not a cache"):
        prepare_musdb(hq_root, tmp_path / "busy", progress=False)


def test_a_split_without_tracks_is_refused(stems_cache):
    message = f"Cache {stems_cache} holds no 'valid' tracks (its tracks: train 1, valid 0, test 1)"
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        CachedMusdb(stems_cache, "valid", 8000)


# ----------------------------------------------------------------------------- in training


def test_augmented_dataset_and_workers_over_the_cache(cache):
    crops = CachedMusdb(cache, "train", 8000, segment=0.25, samples_per_track=4)
    assert len(pickle.dumps(crops)) < 10_000  # no audio travels to workers
    crops[0]
    assert len(pickle.dumps(crops)) < 10_000  # not even once mapped
    augmented = AugmentedDataset(crops, seed=1)
    batches = [list(DataLoader(augmented, batch_size=4, num_workers=workers)) for workers in (0, 1)]
    for (mix, stems), (mix_w, stems_w) in zip(*batches):
        assert mix.shape == (4, 1, 2000) and stems.shape == (4, 4, 1, 2000)
        assert torch.equal(mix, mix_w) and torch.equal(stems, stems_w)
        assert torch.allclose(mix, stems.sum(1), atol=1e-6)


def test_build_data_trains_from_a_cache_and_hints_without_one(hq_root, cache, capsys):
    recipe = parse_recipe({"model": {"class": "ConvTasNet", "N": 16, "L": 16, "B": 8, "H": 16, "Sc": 8, "X": 1, "R": 1},
                           "data": {"segment": 0.5, "valid_seconds": 0.5, "valid_songs": 1}})
    train, valid = build_data(recipe, cache)
    assert isinstance(train, CachedMusdb) and isinstance(valid.dataset, CachedMusdb)
    assert (train.sample_rate, train.segment, train.stereo) == (8000, 0.5, False) and valid[0][0].shape == (1, 4000)
    assert capsys.readouterr().err == ""
    cache_module._hinted.discard(str(hq_root))
    train, valid = build_data(recipe, hq_root)
    assert isinstance(train, MusdbDataset) and isinstance(valid.dataset, MusdbDataset)
    assert capsys.readouterr().err.count(f"`python -m metalearn_sep prepare-musdb {hq_root} --out {hq_root}-cache --rate 8000`") == 1
    musdb_dataset(hq_root, "test", 8000)
    assert capsys.readouterr().err == ""  # once per folder


def test_the_command_line_prepares_and_trains_on_a_cache(hq_root, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["prepare-musdb", str(hq_root), "--out", str(out), "--rate", "8000"]) == 0
    printed = capsys.readouterr()
    assert "wrote 4 file(s), kept 0 intact one(s)" in printed.out and f"--musdb {out}" in printed.out
    assert manifest(out)["rates"] == [8000]
    config = tmp_path / "conv.json"
    config.write_text(json.dumps({
        "model": {"class": "ConvTasNet", "N": 16, "L": 16, "B": 8, "H": 16, "Sc": 8, "X": 1, "R": 1},
        "data": {"segment": 0.5, "valid_songs": 1, "valid_seconds": 0.5}, "training": {"steps": 2, "batch_size": 2}}))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--musdb", str(out), "--device", "cpu"]) == 0
    assert "prepare-musdb" not in capsys.readouterr().err
    assert main(["prepare-musdb", str(tmp_path / "none"), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"error: MUSDB18 folder {tmp_path / 'none'} does not exist or is not a folder."
    config.write_text(json.dumps({**json.loads(config.read_text()), "data": {"sample_rate": 16000, "segment": 0.5}}))
    assert main(["train", str(config), "--out", str(tmp_path / "run2"), "--musdb", str(out), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: Cache {out} holds 8000 Hz, not 16000 Hz: add that rate with "
        f"`python -m metalearn_sep prepare-musdb {hq_root} --out {out} --rate 16000` (the others stay).")
