"""Write the student edition of notebooks: every solution replaced by `raise NotImplementedError`.

Exercise cells mark the instructor's solution with `### BEGIN SOLUTION` and
`### END SOLUTION` (nbgrader's convention); the lines between them are replaced by one
:data:`metalearn_sep.exercises.STUB` at the same indentation, and all outputs are cleared so
students run everything themselves; in markdown cells (the "Check your understanding" answers) a
block becomes :data:`ANSWER`. Each exercise function is decorated with
``@course.exercise(chapter)``: while its body is the stub the chapter runs on the package's
reference implementation, so Run All reaches the end (see :mod:`metalearn_sep.exercises`).

    python scripts/student_edition.py notebooks/*.ipynb --out student/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from metalearn_sep.exercises import STUB

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


ANSWER = "*Your answer:*"
"""What a markdown cell's answer block becomes (the "Check your understanding" answers)."""


def strip_solutions(source: str, placeholder: str = STUB) -> str:
    """The cell source with each solution block replaced by ``placeholder`` (the stub; :data:`ANSWER` in markdown)."""
    out, inside = [], False
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError("A solution block opens twice without closing.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + placeholder)
        elif marker == END:
            if not inside:
                raise ValueError("A solution block closes without opening.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("A solution block is never closed.")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = strip_solutions(cell.source, ANSWER)
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("student"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        nb = student_notebook(nbformat.read(path, as_version=4))
        nbformat.write(nb, args.out / path.name)
        print(f"{args.out / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
