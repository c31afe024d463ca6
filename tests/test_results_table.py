"""benchmarks/results_table.py: benchmarks append their figures to benchmarks/RESULTS.md, atomically."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = ("bench_band", "bench_metrics", "bench_conv_tasnet", "bench_conv_tasnet_layers", "bench_conv_tasnet_train",
           "bench_enhanced", "bench_generator", "bench_separate", "train_recipe_cpu")

_spec = importlib.util.spec_from_file_location("results_table", BENCHMARKS / "results_table.py")
results_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_table)


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A copy of RESULTS.md in a folder outside any git repository."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    copy = tmp_path / "RESULTS.md"
    shutil.copyfile(BENCHMARKS / "RESULTS.md", copy)
    return copy


def sections(text: str) -> dict[str, str]:
    """Section name -> its text, heading included (the preamble under '')."""
    parts = re.split(r"(?m)^(?=## )", text)
    return {("" if not p.startswith("## ") else p.split()[1]): p for p in parts}


def table_rows(text: str, name: str) -> list[list[str]]:
    body = sections(text)[name]
    return [results_table.cells(line) for line in body.splitlines() if line.startswith("| ")][1:]  # without the header


def test_results_file_has_a_table_per_benchmark_with_the_columns():
    text = (BENCHMARKS / "RESULTS.md").read_text(encoding="utf-8")
    found = sections(text)
    for name in SCRIPTS:
        assert name in found, f"RESULTS.md has no section for {name}"
        header = next(line for line in found[name].splitlines() if line.startswith("|"))
        assert results_table.cells(header) == list(results_table.COLUMNS), name
        rows = table_rows(text, name)
        assert rows, f"{name}'s table is empty"
        assert all(len(row) == len(results_table.COLUMNS) for row in rows), name


def test_record_appends_under_the_table_and_leaves_the_rest_byte_identical(results):
    old = results.read_text(encoding="utf-8")
    before = table_rows(old, "bench_conv_tasnet")
    results_table.record("bench_conv_tasnet", {"torchaudio / ours time": "1.50 | PASS"},
                         command="python benchmarks/bench_conv_tasnet.py --repeats 3", path=results)
    new = results.read_text(encoding="utf-8")
    after = table_rows(new, "bench_conv_tasnet")
    assert after[:-1] == before
    figure, value, command, date, commit, machine, load = after[-1]
    assert (figure, value, command) == ("torchaudio / ours time", "1.50 | PASS", "`python benchmarks/bench_conv_tasnet.py --repeats 3`")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
    assert commit == "unknown"  # not a git repository
    assert machine and load
    # the row went right under the table: the prose under it follows, and nothing else moved
    inserted = [line for line in new.splitlines(keepends=True) if line not in old.splitlines(keepends=True)]
    assert len(inserted) == 1
    assert new.replace(inserted[0], "", 1) == old
    table_end = new.index(inserted[0]) + len(inserted[0])
    assert new[table_end:].startswith("\nThe second and third rows")
    old_sections, new_sections = sections(old), sections(new)
    assert old_sections.keys() == new_sections.keys()
    assert all(old_sections[k] == new_sections[k] for k in old_sections if k != "bench_conv_tasnet")


def test_record_creates_a_missing_section_at_the_end(results):
    old = results.read_text(encoding="utf-8")
    results_table.record("bench_new", [("figure a", 1), ("figure b", "2 dB")], command="python benchmarks/bench_new.py",
                         load="0.00 / 0.00 / 0.00", path=results)
    new = results.read_text(encoding="utf-8")
    assert new.startswith(old)
    added = new[len(old):]
    assert added.startswith("\n## bench_new\n\n" + results_table.TABLE_HEADER)
    rows = table_rows(new, "bench_new")
    assert [r[:3] for r in rows] == [["figure a", "1", "`python benchmarks/bench_new.py`"],
                                     ["figure b", "2 dB", "`python benchmarks/bench_new.py`"]]
    assert rows[0][6] == "0.00 / 0.00 / 0.00"
    # a second run appends under the new table
    results_table.record("bench_new", {"figure a": 3}, command="python benchmarks/bench_new.py", path=results)
    assert [r[1] for r in table_rows(results.read_text(encoding="utf-8"), "bench_new")] == ["1", "2 dB", "3"]


def test_record_starts_a_new_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    path = tmp_path / "sub" / "RESULTS.md"
    results_table.record("bench_x", {"f": "v"}, command="c", path=path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark results\n\n## bench_x\n\n| figure |")
    assert table_rows(text, "bench_x")[0][:3] == ["f", "v", "`c`"]


def test_replace_drops_only_rows_of_the_same_figure_and_command(results):
    results_table.record("bench_band", {"f": "1"}, command="cmd A", path=results)
    results_table.record("bench_band", {"f": "2"}, command="cmd B", path=results)
    results_table.record("bench_band", {"g": "3"}, command="cmd A", path=results)
    results_table.record("bench_band", {"f": "4"}, command="cmd A", path=results, replace=True)
    rows = table_rows(results.read_text(encoding="utf-8"), "bench_band")
    assert [(r[0], r[1], r[2]) for r in rows[-3:]] == [("f", "2", "`cmd B`"), ("g", "3", "`cmd A`"), ("f", "4", "`cmd A`")]
    assert rows[0][0] == "44.1 kHz stereo 8 s song, median render time"  # the recorded history stays


def test_a_failing_write_leaves_the_old_file(results, monkeypatch):
    old = results.read_bytes()
    real_write_text = pathlib.Path.write_text

    def half_then_fail(self, data, *args, **kwargs):
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        results_table.record("bench_band", {"f": "v"}, command="c", path=results)
    monkeypatch.undo()
    assert results.read_bytes() == old
    assert sorted(p.name for p in results.parent.iterdir()) == ["RESULTS.md"]  # no temporary file left


def test_a_bad_section_name_or_no_figures_is_refused(results):
    with pytest.raises(ValueError, match="one word"):
        results_table.record("two words", {"f": "v"}, command="c", path=results)
    with pytest.raises(ValueError, match="at least one"):
        results_table.record("bench_band", {}, command="c", path=results)


def test_cells_escape_pipes_and_newlines():
    line = results_table.row(["a | b", "x\ny", "`c`", "d", "e", "f", "g"])
    assert line.count("\n") == 1
    assert results_table.cells(line) == ["a | b", "x y", "`c`", "d", "e", "f", "g"]
    with pytest.raises(ValueError, match="7 cells"):
        results_table.row(["too", "few"])


def test_commit_is_unknown_without_git(tmp_path, monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(results_table.subprocess, "run", no_git)
    assert results_table.git_commit(tmp_path) == "unknown"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_commit_names_head_and_a_dirty_tree(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    results = repo / "benchmarks" / "RESULTS.md"
    results.write_text("# Benchmark results\n")

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                              cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    head = git("rev-parse", "--short", "HEAD")
    assert results_table.git_commit(results.parent, results) == head
    results_table.record("bench_x", {"f": "v"}, command="c", path=results)  # the table itself is not a change
    assert table_rows(results.read_text(encoding="utf-8"), "bench_x")[0][4] == head
    assert results_table.git_commit(results.parent, results) == head
    (repo / "code.py").write_text("x = 2\n")
    assert results_table.git_commit(results.parent, results) == head + "+dirty"
    (repo / "notes.txt").write_text("untracked files do not count\n")
    (repo / "code.py").write_text("x = 1\n")
    assert results_table.git_commit(results.parent, results) == head


def test_machine_load_and_command_line():
    assert results_table.machine().strip()
    assert re.fullmatch(r"[\d.]+ / [\d.]+ / [\d.]+|n/a", results_table.load_average())
    command = results_table.command_line([str(BENCHMARKS / "bench_band.py"), "--model", '{"N": 1}'])
    assert command == "python benchmarks/bench_band.py --model '{\"N\": 1}'"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_records_its_figures_unless_told_not_to(name):
    source = (BENCHMARKS / f"{name}.py").read_text(encoding="utf-8")
    assert "from results_table import" in source
    assert "add_no_record_flag(parser)" in source
    assert re.search(r"record\(\s*\"" + name + '"', source), f"{name} does not record under its own section"
    assert "no_record" in source
