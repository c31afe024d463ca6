"""The models and excerpts the repository ships in assets/checkpoints/: present, hashed, and as good as their manifest says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from metalearn_sep import SOURCES, metrics
from metalearn_sep.experiments import MODULES, chapter
from metalearn_sep.experiments import test_songs as held_out_songs
from metalearn_sep.pretrained import ASSETS, DEFAULT_SEPARATOR, excerpts_name, held_out_scores, pretrained, read_manifest, variant_excerpts
from metalearn_sep.listen import residual_db
from metalearn_sep.shipped import compare_variants, shipped_estimates, variant_grid, variant_song

MANIFEST = read_manifest()
MODELS = [name for name, entry in MANIFEST.items() if entry.get("kind") != "excerpts"]
EXCERPTS = [entry["chapter"] for entry in MANIFEST.values() if entry.get("kind") == "excerpts"]


def test_the_course_ships_its_models_and_excerpts_under_25_mb() -> None:
    expected = {"chapter-01", "chapter-03", "chapter-03-generated", "chapter-04", "chapter-05", DEFAULT_SEPARATOR} | {excerpts_name(n) for n in MODULES}
    assert set(MANIFEST) == expected
    assert sum(entry["bytes"] for entry in MANIFEST.values()) < 25e6
    assert sum(path.stat().st_size for path in ASSETS.iterdir()) < 25e6  # nothing unlisted beside them


@pytest.mark.parametrize("name", MODELS)
def test_each_model_beats_the_mixture_by_its_recorded_margin(name: str) -> None:
    entry = MANIFEST[name]
    gains, sdr = held_out_scores(name)
    assert entry["margin_db"] > 0
    assert abs(gains["mean"] - entry["margin_db"]) <= 0.1, (gains, entry["margin_db"])
    assert entry["dtype"] == ("float16" if abs(entry["fp16_change_db"]) < 0.05 else "float32")
    assert set(sdr) == {*SOURCES, "mean"}


def test_a_corrupted_copy_is_refused(tmp_path: Path) -> None:
    for name in (DEFAULT_SEPARATOR, excerpts_name("02")):
        shutil.copy(ASSETS / "MANIFEST.json", tmp_path / "MANIFEST.json")
        data = bytearray((ASSETS / MANIFEST[name]["file"]).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tmp_path / MANIFEST[name]["file"]).write_bytes(bytes(data))
        with pytest.raises(ValueError, match="does not match its SHA-256"):
            pretrained(name, tmp_path) if name == DEFAULT_SEPARATOR else variant_excerpts("02", tmp_path)


@pytest.mark.parametrize("number", EXCERPTS)
def test_every_chapter_compares_its_variants_on_one_excerpt(number: str) -> None:
    estimates, entry = variant_excerpts(number)
    module = chapter(number)
    assert list(estimates) == list(module.VARIANTS) and entry["sample_rate"] == module.RATE
    player = compare_variants(number)
    assert list(player.si_sdr_improvement) == list(module.VARIANTS)
    means = [torch.tensor([v for v in gains.values() if v == v]).mean().item() for gains in player.si_sdr_improvement.values()]
    assert all(mean > 0 for mean in means), dict(zip(module.VARIANTS, means))  # every recorded variant separates
    grid = variant_grid(number, sources=["vocals"], max_seconds=1.0)
    for variant in module.VARIANTS:  # the grid scores the same clips the player does, over its first second
        assert grid.si_sdr_improvement[variant]["vocals"] == pytest.approx(
            compare_variants(number, sources=["vocals"], max_seconds=1.0).si_sdr_improvement[variant]["vocals"], abs=1e-9)
    song, n = variant_song(number), round(1.0 * module.RATE)
    drums = {v: metrics.si_sdr(x[0, ..., :n].double(), song.references[0, ..., :n].double()).mean().item()
             for v, x in song.estimates.items()}
    assert grid.best["drums"] == max(drums, key=drums.get)  # rows not shown are scored too,
    # and the residual subtracts all four estimates
    assert grid.residual_db == pytest.approx({v: residual_db(song.mixture[..., :n], x[..., :n]) for v, x in song.estimates.items()})


def test_a_chapter_model_separates_a_held_out_song_as_scored() -> None:
    entry = MANIFEST["chapter-01"]
    module = chapter("01")
    mixture, stems = held_out_songs(module.SETTINGS[entry["scale"]], module.RATE)[0]
    estimates = shipped_estimates("chapter-01", mixture)
    assert estimates.shape == stems.shape
    gains = metrics.si_sdr_improvement(estimates[None], stems[None], mixture[None])[0]
    assert gains.nanmean() > 3.0, gains  # its recorded margin over 8 songs is about 8.7 dB
    with pytest.raises(ValueError, match="is not a shipped chapter model"):
        shipped_estimates(DEFAULT_SEPARATOR, mixture)
