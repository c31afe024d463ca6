"""Chapter 00's table of what each profile costs, read from the records the benchmarks write."""

from __future__ import annotations

import json

import pytest

from metalearn_sep.experiments.profile_costs import CHAPTERS, RECORDS, estimated, measured, profile_table


def run(seconds: float, peak: float) -> dict:
    return {"seconds": seconds, "peak_gib": peak, "date": "2026-12-07", "commit": "abc1234", "machine": "AMD EPYC, 2 cores"}


def plan_row(chapter: str, profile: str, t4: float, a100: float) -> dict:
    return {"chapter": chapter, "profile": profile, "T4_min": t4, "A100_min": a100, "T4_gib": 3.0, "A100_gib": 5.0}


@pytest.fixture
def records(tmp_path):
    (tmp_path / "profile-ci.json").write_text(json.dumps({c: run(30.0, 1.25) for c in CHAPTERS}))
    (tmp_path / "profile-cpu.json").write_text(json.dumps({"00": run(18.0, 1.3), "01": run(1200.0, 2.5)}))
    rows = [plan_row("01", "gpu", 11.7, 2.0), plan_row("01", "paper", 900.0, 200.0),
            plan_row("one GPU (06)", "configs/meta_tasnet_gpu.json", 1272.0, 270.0),
            plan_row("paper (06)", "configs/meta_tasnet_paper.json", 32000.0, 3744.0)]
    (tmp_path / "plan-gpu.json").write_text(json.dumps(rows))
    return tmp_path


def test_the_table_shows_each_measured_and_estimated_figure(records):
    lines = profile_table(records).splitlines()
    row = {line.split()[0]: line for line in lines[1:10]}
    assert "0.5 min, 1.2 GiB" in row["01"] and "20.0 min, 2.5 GiB" in row["01"]  # ci and cpu, measured
    assert "11.7 min, 3.0 GiB" in row["01"] and "3.3 h, 5.0 GiB" in row["01"]   # T4 for gpu, A100 for paper
    assert "15.0 min, 3.0 GiB" in row["06"]  # chapter 06's gpu run is sized to 15 minutes, whatever the recipe's steps
    assert "2.6 d, 5.0 GiB" in row["06"]     # its paper run is the whole paper recipe
    assert row["00"].count("no training") == 2 and "not measured" in row["02"]
    assert "4.0 min" in row["all"] and "20.3 min" in row["all"]  # 8 x 30 s; 18 s + 1200 s
    assert any("commit abc1234" in line for line in lines) and any("not measured" in line for line in lines[-1:])


def test_a_missing_record_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"profile_minutes.py --profile cpu"):
        measured("cpu", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"plan_gpu.py --json"):
        estimated(tmp_path)


def test_the_course_ships_every_chapter_measured_in_both_cpu_profiles():
    for profile in ("ci", "cpu"):
        assert set(measured(profile, RECORDS)) == set(CHAPTERS), profile
    assert {chapter for chapter, _ in estimated(RECORDS)} == {"01", "02", "03", "04", "05", "06"}
