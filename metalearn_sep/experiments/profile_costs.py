"""What a Run All of each chapter costs in each profile: measured on 2 CPU cores, estimated on a GPU.

Two kinds of record, both in ``benchmarks/results/`` and both written by a script with its
command, date, commit and machine:

* ``profile-<profile>.json`` (``python benchmarks/profile_minutes.py --profile cpu``): per
  chapter, the wall-clock seconds of Run All in a fresh kernel and the kernel's peak resident
  memory. Measured, for the profiles that run on a CPU (``ci``, ``cpu``).
* ``plan-gpu.json`` (``python benchmarks/plan_gpu.py --json benchmarks/results/plan-gpu.json``):
  per chapter and GPU profile, the training minutes and memory :mod:`metalearn_sep.cost`
  estimates on a T4 and an A100. An estimate of training alone, not a measurement; chapter 06's
  ``gpu`` run is sized to 15 minutes of training on the GPU it finds.

Chapter 00 prints :func:`profile_table`, so a student sees what a chapter will cost before
choosing a profile.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..scales import CHAPTER_06_MINUTES

RECORDS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
"""Where ``benchmarks/profile_minutes.py`` and ``benchmarks/plan_gpu.py --json`` write."""

CHAPTERS = ("00", "01", "02", "03", "04", "05", "06", "07")
MEASURED = ("ci", "cpu")
ESTIMATED = {"gpu": "T4", "paper": "A100"}
"""The GPU each GPU profile is priced on: ``gpu`` is sized for a T4 (Colab), ``paper`` needs more than 16 GB."""
_RECIPE_ROWS = {"gpu": "one GPU (06)", "paper": "paper (06)"}


def measured(profile: str, folder: Path = RECORDS) -> dict[str, dict]:
    """Chapter -> ``{"seconds", "peak_gib", "date", "commit", "machine", ...}`` recorded for ``profile``."""
    path = Path(folder) / f"profile-{profile}.json"
    if not path.exists():
        raise FileNotFoundError(f"No measured Run All times for the {profile} profile at {path}: "
                                f"run `python benchmarks/profile_minutes.py --profile {profile}`.")
    return json.loads(path.read_text(encoding="utf-8"))


def estimated(folder: Path = RECORDS) -> dict[tuple[str, str], dict]:
    """``(chapter, profile)`` -> the plan's row (``T4_min``, ``A100_gib``, ...), chapter 06 from its recipe rows."""
    path = Path(folder) / "plan-gpu.json"
    if not path.exists():
        raise FileNotFoundError(f"No GPU plan at {path}: run `python benchmarks/plan_gpu.py --json {path}`.")
    recipes = {label: profile for profile, label in _RECIPE_ROWS.items()}
    rows = {}
    for row in json.loads(path.read_text(encoding="utf-8")):
        recipe = recipes.get(row["chapter"])
        rows[("06", recipe) if recipe else (row["chapter"], row["profile"])] = row
    return rows


def duration(minutes: float) -> str:
    """``minutes`` in the unit a reader takes in at a glance: minutes, hours past 2 h, days past 2 d."""
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h" if minutes < 2880 else f"{minutes / 1440:.1f} d"


def _gpu_cell(chapter: str, profile: str, plan: dict[tuple[str, str], dict]) -> str:
    gpu = ESTIMATED[profile]
    row = plan.get((chapter, profile))
    if row is None:
        return "no training"
    minutes = CHAPTER_06_MINUTES if (chapter, profile) == ("06", "gpu") else row[f"{gpu}_min"]
    return f"{duration(minutes)}, {row[f'{gpu}_gib']:.1f} GiB"


def profile_table(folder: Path = RECORDS) -> str:
    """The chapters' costs per profile as aligned text, then where each figure comes from."""
    runs = {profile: measured(profile, folder) for profile in MEASURED}
    plan = estimated(folder)
    head = ["chapter", *(f"{p}: measured" for p in MEASURED), *(f"{p}: {g} estimate" for p, g in ESTIMATED.items())]
    rows = []
    for chapter in CHAPTERS:
        cells = [chapter]
        for profile in MEASURED:
            run = runs[profile].get(chapter)
            cells.append("not measured" if run is None else f"{run['seconds'] / 60:.1f} min, {run['peak_gib']:.1f} GiB")
        cells += [_gpu_cell(chapter, profile, plan) for profile in ESTIMATED]
        rows.append(cells)
    totals = ["all"] + [duration(sum(r["seconds"] for r in runs[p].values()) / 60) for p in MEASURED]
    rows.append(totals + ["", ""])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    for profile in MEASURED:
        records = runs[profile].values()
        dates = sorted({r["date"] for r in records})
        commits = sorted({r["commit"] for r in records})
        machines = sorted({r["machine"] for r in records})
        lines.append(f"{profile}: Run All in a fresh kernel, wall clock and the kernel's peak memory; "
                     f"{', '.join(machines)}; {', '.join(dates)}; commit {', '.join(commits)}")
    lines.append("gpu, paper: training steps only, estimated by metalearn_sep.cost (not measured); "
                 f"chapter 06's gpu run is sized to {CHAPTER_06_MINUTES:g} minutes of training on the GPU it finds")
    return "\n".join(lines)
