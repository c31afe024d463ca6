"""Records a benchmark's figures in ``benchmarks/RESULTS.md``, one Markdown table per benchmark.

Every table has the columns of :data:`COLUMNS`: the figure, its value, the command that
measured it, the date (ISO), the commit (``git rev-parse --short HEAD``, ``+dirty`` when
tracked files other than RESULTS.md differ from it, ``unknown`` without git), the machine
(CPU model and usable cores, and the GPU when torch sees one) and the load average (1, 5
and 15 minutes) when the row was written. A benchmark calls :func:`record` after printing
its report; ``--no-record`` (:func:`add_no_record_flag`) skips it.

Rows are appended: a new run adds its rows at the bottom of its benchmark's table and
older rows stay, so the table is the history of the figure. ``record(..., replace=True)``
first drops the rows whose figure and command both equal a new row's (the benchmarks do
not use it). A benchmark without a section gets one at the end of the file; every other
section, and any prose under a table, is left byte for byte. The file is written
atomically (:func:`metalearn_sep.atomic.atomic_write_text`): a failed write leaves the
previous file as it was.

    from results_table import add_no_record_flag, record
    add_no_record_flag(parser)
    ...
    if not args.no_record:
        record("bench_band", [("44.1 kHz stereo 8 s song, median render time", "0.098 s")])
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from metalearn_sep.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
COLUMNS = ("figure", "value", "command", "date", "commit", "machine", "load")
TABLE_HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|" + "---|" * len(COLUMNS) + "\n"
NEW_FILE = "# Benchmark results\n"


# ------------------------------------------------------------------ what a row records


def today() -> str:
    """The local date, ISO 8601 (``YYYY-MM-DD``)."""
    return datetime.date.today().isoformat()


def git_commit(where: str | os.PathLike = ROOT, results: str | os.PathLike | None = RESULTS) -> str:
    """The short hash of HEAD of the repository at ``where``, with ``+dirty`` when a tracked file differs.

    ``results`` (the table itself) does not count as a change: a run that has just written
    its rows must not mark the next benchmark's rows dirty. ``"unknown"`` when git is
    missing or ``where`` is not in a repository.
    """
    where = Path(where)
    if not where.is_dir():
        where = where.parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        commit = head.stdout.strip()
        pathspec = [":/"]
        if results is not None:
            pathspec.append(f":(exclude){os.path.relpath(Path(results).resolve(), where.resolve())}")
        status = git("status", "--porcelain", "--untracked-files=no", "--", *pathspec)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if status.returncode == 0 and status.stdout.strip():
        commit += "+dirty"
    return commit


def machine() -> str:
    """CPU model and usable cores, plus the CUDA device's name when the caller's torch sees one.

    torch is not imported here: a benchmark that never imported it has no GPU figure to explain.
    """
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("model name", "Hardware", "Processor")) and ":" in line:
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    total = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = total
    text = f"{model}, {usable} cores" if usable == total else f"{model}, {usable} of {total} cores"
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            text += f"; GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # a broken CUDA set-up must not lose the figures
        pass
    return text


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or ``"n/a"`` where the OS has none."""
    try:
        return "{:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def command_line(argv: Iterable[str] | None = None) -> str:
    """``python benchmarks/X.py ARGS``: the command that is running (``sys.argv``), the script relative to the repository."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]) if argv else Path("?")
    try:
        script = script.resolve().relative_to(ROOT)
    except (ValueError, OSError):
        pass
    return " ".join(["python", *(shlex.quote(str(a)) for a in [script.as_posix(), *argv[1:]])])


# ------------------------------------------------------------------ the Markdown table


def cell(text: object) -> str:
    """``text`` as one table cell: on one line, ``|`` escaped."""
    return " ".join(str(text).split()).replace("|", r"\|")


def code(text: str) -> str:
    """``text`` as inline code (a longer fence when it holds a backtick)."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def row(values: Iterable[object]) -> str:
    """One table line (with its newline) from the cells of :data:`COLUMNS`."""
    values = [cell(v) for v in values]
    if len(values) != len(COLUMNS):
        raise ValueError(f"A results row has {len(COLUMNS)} cells ({', '.join(COLUMNS)}), got {len(values)}.")
    return "| " + " | ".join(values) + " |\n"


def cells(line: str) -> list[str]:
    """The cells of a table line, unescaped and stripped."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith(r"\|") else body
    return [c.strip().replace(r"\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _heading(line: str) -> str | None:
    """The section name of a ``## name`` heading line (its first word), else None."""
    match = re.match(r"##(?!#)\s+(\S+)", line)
    return match.group(1).rstrip(":") if match else None


def update_section(text: str, benchmark: str, rows: Iterable[str], replace: bool = False) -> str:
    """``text`` (RESULTS.md) with ``rows`` (lines from :func:`row`) at the bottom of ``benchmark``'s table.

    The section is the ``## benchmark`` heading up to the next heading of level 1 or 2; its
    table is the first one under the heading, and rows go right after its last line, above
    any prose that follows. Without a table the section gets one at its end; without a
    section the file gets one at its end. With ``replace``, rows of the table whose figure
    and command equal a new row's are dropped first. Nothing outside that table changes.
    """
    rows = list(rows)
    if not re.fullmatch(r"[^\s#|]+", benchmark):
        raise ValueError(f"A benchmark's section name is one word without '#' or '|', got {benchmark!r}.")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = next((i for i, line in enumerate(lines) if _heading(line) == benchmark), None)
    if start is None:
        tail = "" if not lines or lines[-1].strip() == "" else "\n"
        return "".join(lines) + tail + f"## {benchmark}\n\n" + TABLE_HEADER + "".join(rows)
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"#{1,2}(?!#)\s", lines[i])), len(lines))
    header = next((i for i in range(start + 1, end) if lines[i].startswith("|")), None)
    if header is None:
        last = end
        while last > start + 1 and lines[last - 1].strip() == "":
            last -= 1
        block = ["\n", TABLE_HEADER, *rows]
        if last == end < len(lines):  # no blank line before the next heading
            block.append("\n")
        return "".join(lines[:last] + block + lines[last:])
    stop = header
    while stop < end and lines[stop].startswith("|"):
        stop += 1
    table = lines[header:stop]
    if replace:
        names = cells(table[0])
        at = (names.index("figure"), names.index("command")) if {"figure", "command"} <= set(names) else (0, 2)

        def key(line: str, at: tuple[int, int] = at) -> tuple[str, ...]:
            values = cells(line)
            return tuple(values[i] if i < len(values) else "" for i in at)

        new_keys = {key(r, (0, 2)) for r in rows}
        table = table[:2] + [line for line in table[2:] if key(line) not in new_keys]
    return "".join(lines[:header] + table + rows + lines[stop:])


# ------------------------------------------------------------------ recording


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on its descriptor) so two runs do not interleave their updates."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # no flock here: a lost update is the worst case
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def record(
    benchmark: str,
    figures: Mapping[str, object] | Iterable[tuple[str, object]],
    *,
    command: str | None = None,
    load: str | None = None,
    path: str | os.PathLike = RESULTS,
    replace: bool = False,
) -> Path:
    """Append one row per ``(figure, value)`` to ``benchmark``'s table in ``path`` (RESULTS.md) and return it.

    Args:
        benchmark: the section, the script's name without ``.py`` (``"bench_band"``).
        figures: what was measured: figure (what, at which size) -> value (with its unit,
            and the target's verdict where the benchmark has one).
        command: the command that measured them; default :func:`command_line` (``sys.argv``).
        load: the load column; default :func:`load_average` now (pass e.g. the averages before
            and after a long run).
        path: the results file (tests write to a copy).
        replace: drop the table's rows whose figure and command equal a new row's first.

    The date, the commit (:func:`git_commit`) and the machine (:func:`machine`) are filled in.
    """
    path = Path(path)
    pairs = list(figures.items() if isinstance(figures, Mapping) else figures)
    if not pairs:
        raise ValueError(f"record({benchmark!r}) needs at least one (figure, value) pair.")
    shared = (code(command or command_line()), today(), git_commit(path.parent, path), machine(), load or load_average())
    lines = [row((figure, value, *shared)) for figure, value in pairs]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        old = path.read_text(encoding="utf-8") if path.exists() else NEW_FILE
        atomic_write_text(path, update_section(old, benchmark, lines, replace=replace))
    print(f"recorded {len(lines)} row(s) under {benchmark} in {path}")
    return path


def add_no_record_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-record``: measure and print, but leave RESULTS.md alone."""
    parser.add_argument("--no-record", action="store_true", help=f"do not append the figures to {RESULTS.relative_to(ROOT)}")
