"""The recorded runs of a chapter's experiment as tables and verdicts (``results/<chapter>.md``).

A run is one JSON file ``results/<chapter>/<variant>-seed<k>.json`` written by
``benchmarks/results.py``. :func:`summarize` turns a chapter's runs into Markdown: per
variant and source, the mean over seeds ± the spread (half the range: max - min over
2), for the SI-SDR improvement and for the SDR; then one verdict per comparison the
chapter asks about. A difference between two variants counts only when it exceeds the
seeds' spread: ``|mean_a - mean_b| > spread_a + spread_b`` on the mean over sources (the
two seed ranges do not overlap); otherwise the verdict says "no difference at this
scale". Notebooks print the same text with :func:`chapter_table`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import SOURCES

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
"""Where ``make results`` writes (the repository's ``results/``)."""

COMPARISONS: dict[str, list[tuple[str, str]]] = {
    "01": [("4-output", "4 dedicated")],
    "02": [("multi", "plain"), ("multi+spec", "plain"), ("multi+spec", "multi"), ("capacity control", "plain"),
           ("multi+spec", "capacity control")],
    "03": [("generated", "independent"), ("generated", "FiLM"), ("generated", "4-output"), ("generated", "4 dedicated"),
           ("4-output", "4 dedicated")],
    "04": [("2 stages", "1 stage"), ("3 stages", "1 stage"), ("3 stages", "2 stages")],
    "05": [("rec only", "none"), ("dis only", "none"), ("sim only", "none"), ("all three", "none")],
}
"""Per chapter, the pairs ``(a, b)`` its question compares; each gets a verdict."""


def slug(variant: str) -> str:
    """A variant's name as a file name: lower case, runs of other characters as one dash ("multi+spec" -> "multi-spec")."""
    return re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")


def run_path(chapter: str, variant: str, seed: int, root: Path = RESULTS_DIR) -> Path:
    """``root/<chapter>/<variant slug>-seed<seed>.json``."""
    return root / chapter / f"{slug(variant)}-seed{seed}.json"


@dataclass(frozen=True)
class Stat:
    """Mean over seeds and spread (half the range) of one figure; ``seeds`` values went in."""

    mean: float
    spread: float
    seeds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return cls(math.nan, math.nan, 0)
        return cls(float(np.mean(finite)), (max(finite) - min(finite)) / 2, len(finite))

    def __str__(self) -> str:
        if self.seeds == 0:
            return "n/a"
        return f"{self.mean:.2f} ± {self.spread:.2f}" if self.seeds > 1 else f"{self.mean:.2f}"


def read_runs(chapter: str, root: Path = RESULTS_DIR) -> list[dict]:
    """Every recorded run of ``chapter`` (its JSON files, sorted by name); a file that is not a run is named in a ValueError."""
    runs = []
    for path in sorted((root / chapter).glob("*-seed*.json")):
        try:
            run = json.loads(path.read_text())
            run["variant"], run["seed"], run["si_sdr_improvement"], run["sdr"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a recorded run ({type(err).__name__}: {err}); delete it and run make results again.") from None
        runs.append(run)
    return runs


def statistics(runs: Sequence[Mapping], metric: str, variants: Sequence[str]) -> dict[str, dict[str, Stat]]:
    """``{variant: {source or "mean": Stat}}`` of ``metric`` ("si_sdr_improvement" or "sdr") over the seeds of each variant."""
    table = {}
    for variant in variants:
        mine = [run[metric] for run in runs if run["variant"] == variant]
        if mine:
            table[variant] = {key: Stat.of([r.get(key, math.nan) for r in mine]) for key in (*SOURCES, "mean")}
    return table


def verdict(a: str, b: str, table: Mapping[str, Mapping[str, Stat]]) -> str:
    """One sentence comparing variants ``a`` and ``b`` on the mean over sources (see the module docstring)."""
    if a not in table or b not in table:
        return f"{a} vs {b}: not both recorded yet."
    x, y = table[a]["mean"], table[b]["mean"]
    if min(x.seeds, y.seeds) < 2:
        return f"{a} vs {b}: fewer than two seeds recorded, no verdict."
    difference, spread = x.mean - y.mean, x.spread + y.spread
    if abs(difference) <= spread:
        return f"{a} vs {b}: no difference at this scale ({difference:+.2f} dB, within the seeds' spread of ±{spread:.2f} dB)."
    better, worse = (a, b) if difference > 0 else (b, a)
    return f"{better} beats {worse} by {abs(difference):.2f} dB (beyond the seeds' spread of ±{spread:.2f} dB)."


def _markdown_table(table: Mapping[str, Mapping[str, Stat]]) -> list[str]:
    lines = ["| variant | " + " | ".join((*SOURCES, "mean")) + " | seeds |", "|---" * (len(SOURCES) + 3) + "|"]
    for variant, stats in table.items():
        lines.append(f"| {variant} | " + " | ".join(str(stats[k]) for k in (*SOURCES, "mean")) + f" | {stats['mean'].seeds} |")
    return lines


def summarize(chapter: str, variants: Sequence[str], question: str, root: Path = RESULTS_DIR,
              reference_rows: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The Markdown of ``results/<chapter>.md``: the question, both tables, the verdicts and the runs' provenance."""
    runs = read_runs(chapter, root)
    gains, sdr = statistics(runs, "si_sdr_improvement", variants), statistics(runs, "sdr", variants)
    lines = [f"# Chapter {chapter}: recorded answer at cpu scale", "", f"**Question.** {question}", "",
             "SI-SDR improvement on the held-out songs (dB), mean over seeds ± half their range:", "", *_markdown_table(gains)]
    if reference_rows:
        lines += ["", "Seed-independent reference rows (SI-SDR improvement, dB):", "",
                  "| reference | " + " | ".join((*SOURCES, "mean")) + " |", "|---" * (len(SOURCES) + 2) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{row[k]:.2f}" for k in (*SOURCES, "mean")) + " |" for name, row in reference_rows.items()]
    lines += ["", "SDR (BSS Eval v4, median over 1 s frames, then over songs; dB), mean over seeds ± half their range:", "",
              *_markdown_table(sdr), "", "**Verdicts** (SI-SDR improvement, mean over sources; a difference counts only "
              "when it exceeds the two variants' seed spreads added):", ""]
    lines += [f"- {verdict(a, b, gains)}" for a, b in COMPARISONS.get(chapter, [])]
    if runs:
        minutes = sum(run.get("seconds", 0.0) for run in runs) / 60
        commits = sorted({run.get("commit", "unknown") for run in runs})
        dates = sorted({run.get("date", "unknown") for run in runs})
        lines += ["", f"{len(runs)} runs, {minutes:.0f} min in all (training and scoring), on {runs[0].get('machine', 'unknown')}; "
                  f"commits {', '.join(commits)}; dates {', '.join(dates)}. Each run: `{runs[0].get('command', '')}` "
                  f"(its JSON holds its settings, steps and load)."]
    return "\n".join(lines) + "\n"


def chapter_table(chapter: str, root: Path = RESULTS_DIR) -> str:
    """The recorded tables and verdicts of ``chapter`` as ``results/<chapter>.md`` holds them (for a notebook to print)."""
    path = root / f"{chapter}.md"
    if not path.is_file():
        return f"No recorded results for chapter {chapter} yet: run `make results` (see benchmarks/results.py)."
    return path.read_text()
