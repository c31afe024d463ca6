"""The student edition: built by ``make student``'s script, no solution inside, and it runs to the end.

Executing every chapter in the ci profile takes about 6 minutes on 2 cores. Under ``make test``
this module runs on one pytest-xdist worker while the others run the rest of the suite;
``make student-test`` runs it alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from metalearn_sep.exercises import EXERCISES, STUB

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from student_edition import ANSWER  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    chapters = [next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb")) for chapter in EXERCISES]
    subprocess.run([sys.executable, str(ROOT / "scripts" / "student_edition.py"), *map(str, chapters), "--out", str(out)],
                   check=True, capture_output=True)
    return out


def solution_lines(notebook: Path) -> list[str]:
    """The stripped lines between the solution markers of an instructor notebook."""
    lines, inside = [], False
    for cell in json.loads(notebook.read_text())["cells"]:
        for line in "".join(cell["source"]).splitlines():
            marker = line.strip()
            if marker in (BEGIN, END):
                inside = marker == BEGIN
            elif inside and marker and not marker.startswith("#"):
                lines.append(marker)
    return lines


def instructor_notebook(chapter: str) -> Path:
    return next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))


@pytest.mark.parametrize("chapter", list(EXERCISES))
def test_the_student_edition_holds_stubs_and_no_solution(edition, chapter):
    instructor = instructor_notebook(chapter)
    student = json.loads((edition / instructor.name).read_text())
    code = ["".join(c["source"]) for c in student["cells"] if c["cell_type"] == "code"]
    prose = ["".join(c["source"]) for c in student["cells"] if c["cell_type"] == "markdown"]
    blocks = solution_count(instructor)
    assert sum(cell.count(STUB) for cell in code) == blocks["code"] >= len(EXERCISES[chapter])
    assert sum(cell.count(ANSWER) for cell in prose) == blocks["markdown"]
    student_lines = {line.strip() for cell in code + prose for line in cell.splitlines()}
    leaked = [line for line in solution_lines(instructor) if line in student_lines]
    assert not leaked, f"solution lines in the student edition of {chapter}: {leaked}"
    assert all(not c.get("outputs") for c in student["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("chapter", list(EXERCISES))
def test_the_student_edition_runs_to_the_end_and_says_what_is_not_done(edition, chapter, monkeypatch):
    student = edition / instructor_notebook(chapter).name
    notebook = nbformat.read(student, as_version=4)
    monkeypatch.setenv("METALEARN_SEP_PROFILE", "ci")  # the kernel inherits it
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    checks = ["".join("".join(o.get("text", "")) for o in cell.outputs)
              for cell in notebook.cells if cell.cell_type == "code" and "course.self_check(" in cell.source]
    for item in EXERCISES[chapter]:
        assert any(f"exercise {item.number} ({item.name}) is not done yet" in text for text in checks), (chapter, item.name)
    assert not any("✓" in text for text in checks), "a self-check of a stub claimed a match"


def solution_count(notebook: Path) -> dict[str, int]:
    """Solution blocks per cell type: exercises in code, answers in markdown."""
    counts = {"code": 0, "markdown": 0}
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] in counts:
            counts[cell["cell_type"]] += "".join(cell["source"]).count(BEGIN)
    return counts


@pytest.mark.parametrize("chapter", ["00", "01", "02", "03", "04", "05", "06", "07"])
def test_the_chapter_ends_with_questions_answered_for_instructors_only_and_references(edition, chapter):
    instructor = json.loads(instructor_notebook(chapter).read_text())
    questions, references = ("".join(c["source"]) for c in instructor["cells"][-2:])
    assert questions.startswith("## Check your understanding") and 4 <= questions.count(BEGIN) <= 6
    assert references.startswith("## References") and references.count("](https://") >= 3
    student = json.loads((edition / instructor_notebook(chapter).name).read_text())
    assert "".join(student["cells"][-2]["source"]).count(ANSWER) == questions.count(BEGIN)
