"""benchmarks/profile_minutes.py: one record per chapter, written as it finishes; a rerun skips what exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_minutes.py"


def notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbformat.write(nb, path)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--profile", "ci", "--no-record", *args], capture_output=True, text=True)


def test_each_chapter_is_timed_once_and_a_rerun_skips_it(tmp_path):
    first = notebook(tmp_path / "00_first.ipynb", "import os; print(os.environ['METALEARN_SEP_PROFILE'])")
    done = run("--out", str(tmp_path / "out"), str(first))
    assert done.returncode == 0, done.stderr
    records = json.loads((tmp_path / "out" / "profile-ci.json").read_text())
    assert list(records) == ["00"] and records["00"]["seconds"] > 0 and 0.01 < records["00"]["peak_gib"] < 64
    again = run("--out", str(tmp_path / "out"), str(first))
    assert "skipped" in again.stdout and json.loads((tmp_path / "out" / "profile-ci.json").read_text()) == records


def test_a_failing_chapter_stops_the_sweep_and_records_nothing_for_it(tmp_path):
    broken = notebook(tmp_path / "01_broken.ipynb", "raise RuntimeError('no')")
    done = run("--out", str(tmp_path / "out"), str(broken))
    assert done.returncode == 1 and "01_broken.ipynb failed in the ci profile" in done.stderr
    assert not (tmp_path / "out" / "profile-ci.json").exists()
