"""The recorded experiments: each chapter's variants train and score, runs are recorded once, tables and verdicts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import torch

from metalearn_sep import SOURCES, config
from metalearn_sep.data.band import BandDataset
from metalearn_sep.experiments import MODULES, chapter, conv_tasnet_outputs, rendered_pool, with_mean
from metalearn_sep.experiments.summary import Stat, read_runs, run_path, slug, statistics, summarize, verdict

ROOT = Path(__file__).resolve().parents[1]


def write_run(root: Path, number: str, variant: str, seed: int, mean: float) -> None:
    scores = {name: mean + i for i, name in enumerate(SOURCES)}
    path = run_path(number, variant, seed, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"variant": variant, "seed": seed, "si_sdr_improvement": with_mean(scores),
                                "sdr": with_mean({k: v - 1 for k, v in scores.items()}), "seconds": 60.0,
                                "commit": "abc1234", "date": "2026-12-06", "machine": "test", "command": "x"}))


def test_stat_is_mean_and_half_range() -> None:
    stat = Stat.of([1.0, 2.0, 4.0])
    assert (stat.mean, stat.spread, stat.seeds) == (pytest.approx(7 / 3), 1.5, 3)
    assert str(stat) == "2.33 ± 1.50"
    assert Stat.of([math.nan]).seeds == 0 and str(Stat.of([])) == "n/a"


def test_verdict_counts_a_difference_only_beyond_the_spread() -> None:
    table = {"a": {"mean": Stat.of([5.0, 6.0])}, "b": {"mean": Stat.of([3.0, 3.2])}, "c": {"mean": Stat.of([5.2, 5.4])},
             "d": {"mean": Stat.of([1.0])}}
    assert verdict("a", "b", table) == "a beats b by 2.40 dB (beyond the seeds' spread of ±0.60 dB)."
    assert verdict("b", "a", table).startswith("a beats b by 2.40 dB")
    assert verdict("a", "c", table) == "a vs c: no difference at this scale (+0.20 dB, within the seeds' spread of ±0.60 dB)."
    assert "fewer than two seeds" in verdict("a", "d", table)
    assert "not both recorded" in verdict("a", "e", table)


def test_summary_tables_hold_the_recorded_means(tmp_path: Path) -> None:
    for seed, mean in enumerate([4.0, 5.0, 6.0]):
        write_run(tmp_path, "04", "3 stages", seed, mean)
        write_run(tmp_path, "04", "1 stage", seed, mean - 3.5)
    text = summarize("04", ("1 stage", "2 stages", "3 stages"), "Q?", tmp_path, {"oracle": with_mean(dict.fromkeys(SOURCES, 9.0))})
    gains = statistics(read_runs("04", tmp_path), "si_sdr_improvement", ("1 stage", "3 stages"))
    assert gains["3 stages"]["mean"].mean == pytest.approx(6.5) and gains["3 stages"]["drums"].spread == pytest.approx(1.0)
    assert "| 3 stages | 5.00 ± 1.00 | 6.00 ± 1.00 | 7.00 ± 1.00 | 8.00 ± 1.00 | 6.50 ± 1.00 | 3 |" in text
    assert "| oracle | 9.00 | 9.00 | 9.00 | 9.00 | 9.00 |" in text
    assert "- 3 stages beats 1 stage by 3.50 dB (beyond the seeds' spread of ±2.00 dB)." in text
    assert "- 2 stages vs 1 stage: not both recorded yet." in text
    assert "6 runs, 6 min in all" in text


def test_a_file_that_is_not_a_run_is_named(tmp_path: Path) -> None:
    (tmp_path / "05").mkdir()
    (tmp_path / "05" / "none-seed0.json").write_text("{truncated")
    with pytest.raises(ValueError, match=r"none-seed0.json is not a recorded run"):
        read_runs("05", tmp_path)


def test_slugs_are_distinct_file_names() -> None:
    for number in MODULES:
        names = [slug(v) for v in chapter(number).VARIANTS]
        assert len(set(names)) == len(names), number
    assert slug("multi+spec") == "multi-spec" and slug("4 dedicated") == "4-dedicated"
    with pytest.raises(ValueError, match="No recorded experiment for chapter '06'"):
        chapter("06")


@pytest.mark.parametrize("number", list(MODULES))
def test_every_variant_trains_and_scores(number: str) -> None:
    module = chapter(number)
    data = module.prepare("ci")
    for variant in module.VARIANTS:
        result = module.run(variant, 0, data)
        assert set(result.scores) == {*SOURCES, "mean"} and set(result.sdr) == {*SOURCES, "mean"}
        assert all(math.isfinite(v) for v in result.scores.values()), (variant, result.scores)
        assert result.steps == module.SETTINGS["ci"]["steps"] and result.seconds > 0
        assert set(result.models) == (set(SOURCES) if variant == "4 dedicated" else {"all"})
    with pytest.raises(ValueError, match=f"Chapter {number} has no variant 'nope'"):
        module.run("nope", 0, data)


def test_the_sweep_records_each_run_once_and_resumes(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "results.py"), "--out", str(tmp_path), "--scale", "ci",
               "--chapters", "05", "--seeds", "0", "1", "--threads", "1"]
    first = subprocess.run([*command, "--minutes", "0"], capture_output=True, text=True, check=True)
    assert "10 run(s) to do (0 recorded)" in first.stdout and "stopping before chapter 05 rec only seed 0" in first.stdout
    recorded = sorted(p.name for p in (tmp_path / "05").glob("*.json"))
    assert recorded == ["none-seed0.json"]  # one run, then the slice ended
    before = (tmp_path / "05" / "none-seed0.json").read_text()
    second = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "9 run(s) to do (1 recorded)" in second.stdout and "9 run(s) in" in second.stdout
    assert (tmp_path / "05" / "none-seed0.json").read_text() == before  # skipped, not redone
    run = json.loads((tmp_path / "05" / "all-three-seed1.json").read_text())
    assert {"command", "commit", "date", "machine", "load", "seconds", "steps", "si_sdr_improvement", "sdr"} <= set(run)
    assert (tmp_path / "05" / "all-three-seed1-all.pt").is_file()
    table = (tmp_path / "05.md").read_text()
    assert "| all three |" in table and "- all three vs none:" in table


def test_a_rendered_pool_holds_the_crops_in_order() -> None:
    crops = BandDataset("train", 8000, segment=0.5, song_duration=1.0, size=3)
    pool = rendered_pool(crops)
    assert len(pool) == 3
    for index in range(3):
        mixture, stems = crops[index]
        assert torch.equal(pool[index][0], mixture) and torch.equal(pool[index][1], stems)


def test_chapter_01_builds_both_variants_at_every_scale() -> None:
    """The ci runs above use other sizes than the sweep (the cpu size has a softmax mask)."""
    for profile in ("ci", "cpu"):
        sizes = config.CONV_TASNET_SIZES[profile]
        assert conv_tasnet_outputs.build(sizes).mask_network.num_sources == 4
        dedicated = conv_tasnet_outputs.build(sizes, [2])
        assert (dedicated.mask_network.num_sources, dedicated.config["mask"]) == (1, "sigmoid")


def test_every_one_stage_variant_deploys_an_extractor_of_the_same_size():
    from metalearn_sep.experiments.masking_variants import extractor_parameters
    from metalearn_sep.models import ConvTasNet, MetaTasNet

    sizes = dict(stages=1, N=16, B=8, H=8, X=2, R=1, spec_channels=8)
    extractors = {name: extractor_parameters(MetaTasNet(**sizes, **options))
                  for name, options in {"generated": {}, "independent": {"generated": False}, "FiLM": {"film": True}}.items()}
    assert len(set(extractors.values())) == 1, extractors  # one instrument's masking network, whatever made its weights
    dedicated = ConvTasNet(num_sources=1, N=16, L=40, B=8, H=8, Sc=8, X=2, R=1)
    assert extractor_parameters(dedicated) == sum(p.numel() for p in dedicated.parameters())
