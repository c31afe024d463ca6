"""make checkpoints, at the tests' tiny scale: it ships the best recorded model again, deterministically, and the default separator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metalearn_sep.experiments import chapter
from metalearn_sep.experiments.recorded import variant_estimates
from metalearn_sep.experiments.summary import read_runs, statistics
from metalearn_sep.pretrained import DEFAULT_SEPARATOR, held_out_scores, pretrained, read_manifest, variant_excerpts
from metalearn_sep.shipped import compare_variants

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = {
    "model": {"class": "MetaTasNet", "stages": 2, "N": 40, "B": 16, "H": 16, "X": 2, "R": 1, "spec_channels": 16},
    "data": {"segment": 0.5, "song_seconds": 1.0, "stereo": True, "valid_songs": 1, "valid_seconds": 0.5, "statistics_examples": 4},
    "training": {"steps": 2, "batch_size": 2, "lr": 0.01, "valid_every": 1},
}


def test_the_best_recorded_model_is_trained_again_and_shipped_with_its_scores(tmp_path: Path) -> None:
    results, assets, recipe = tmp_path / "results", tmp_path / "assets", tmp_path / "tiny.json"
    recipe.write_text(json.dumps(TINY_RECIPE))
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results.py"), "--out", str(results), "--scale", "ci",
                    "--chapters", "05", "--seeds", "0", "1", "--threads", "1"], check=True, capture_output=True)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_checkpoints.py"), "--only", "chapter-05", DEFAULT_SEPARATOR, "chapter-05-variants",
                           "--scale", "ci", "--results", str(results), "--assets", str(assets), "--recipe", str(recipe),
                           "--recipe-steps", "2", "--threads", "1"], check=True, capture_output=True, text=True)
    assert "make checkpoints: 3 file(s) in" in done.stdout
    manifest = read_manifest(assets)
    assert set(manifest) == {"chapter-05", DEFAULT_SEPARATOR, "chapter-05-variants"}
    excerpts, entry = variant_excerpts("05", assets)
    assert list(excerpts) == list(chapter("05").VARIANTS) and (entry["seed"], entry["song"], entry["scale"]) == (0, 0, "ci")
    recorded = variant_estimates("05", seconds=entry["seconds"], root=results, scale="ci")
    for variant, estimates in excerpts.items():  # what the sweep's weights estimate, stored in float16
        assert estimates.shape == recorded[variant].shape == (4, 1, round(entry["seconds"] * entry["sample_rate"]))
        torch.testing.assert_close(estimates, recorded[variant], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="'chapter-05-variants' is a set of recorded excerpts, not a model"):
        pretrained("chapter-05-variants", assets)
    player = compare_variants("05", root=assets)  # a column per variant, scored against the re-rendered song
    assert list(player.si_sdr_improvement) == list(chapter("05").VARIANTS)
    manifest.pop("chapter-05-variants")

    runs = read_runs("05", results)
    table = statistics(runs, "si_sdr_improvement", chapter("05").VARIANTS)
    best = max(table, key=lambda v: table[v]["mean"].mean)
    entry = manifest["chapter-05"]
    assert (entry["chapter"], entry["variant"], entry["scale"]) == ("05", best, "ci")
    best_seed = max((r for r in runs if r["variant"] == best), key=lambda r: r["si_sdr_improvement"]["mean"])
    assert entry["seed"] == best_seed["seed"]
    assert abs(entry["margin_db"] - best_seed["si_sdr_improvement"]["mean"]) < 0.01  # trained again: the same model

    for name, entry in manifest.items():
        assert entry["dtype"] == ("float16" if abs(entry["fp16_change_db"]) < 0.05 else "float32"), name
        gains, sdr = held_out_scores(name, assets)
        assert abs(gains["mean"] - entry["margin_db"]) <= 0.1, name
        assert set(entry["scores"]["sdr"]) == set(sdr)
    assert "never heard real music" in manifest[DEFAULT_SEPARATOR]["about"]
    assert pretrained(DEFAULT_SEPARATOR, assets).sample_rates == [8000, 16000]


def test_the_variant_chapter_03_takes_apart_is_shipped_whichever_scores_best(tmp_path: Path) -> None:
    results, assets = tmp_path / "results", tmp_path / "assets"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results.py"), "--out", str(results), "--scale", "ci",
                    "--chapters", "03", "--seeds", "0", "--threads", "1"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_checkpoints.py"), "--only", "chapter-03-generated",
                    "--scale", "ci", "--results", str(results), "--assets", str(assets), "--threads", "1"],
                   check=True, capture_output=True, text=True)
    entry = read_manifest(assets)["chapter-03-generated"]
    recorded = next(r for r in read_runs("03", results) if r["variant"] == "generated")
    assert (entry["chapter"], entry["variant"], entry["seed"]) == ("03", "generated", 0)
    assert abs(entry["margin_db"] - recorded["si_sdr_improvement"]["mean"]) < 0.01
    assert pretrained("chapter-03-generated", assets).stages[0].embedding is not None  # a generator to take apart
