"""``make results``: every chapter's experiment at cpu scale, 3 seeds, recorded in ``results/``.

For each chapter (01-05), variant and seed, :mod:`metalearn_sep.experiments` trains and
scores the variant and this script writes ``results/<chapter>/<variant>-seed<k>.json``
atomically: the command, commit, date, machine, load average before and after, wall
seconds (training and scoring), training seconds, steps, the settings, and per source the
SI-SDR improvement and the SDR on the held-out songs. The trained weights go next to it
(``.pt``, not committed). A run whose JSON exists is skipped, so the sweep can be done in
slices (``--chapters``, ``--minutes``) and resumed after an interruption. After every run the
chapter's ``results/<chapter>.md`` (tables and verdicts, :mod:`metalearn_sep.experiments.summary`)
is written again.

Before starting it prints an estimate of the time left (recorded runs' own times where a
variant has one, else the measured seconds per step in :data:`STEP_SECONDS`) and at the end
the measured total. Run one torch job at a time on a 2-core machine.

    python benchmarks/results.py [--chapters 01 02 ...] [--seeds 0 1 2] [--minutes M] [--estimate] [--tables] [--time-steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from results_table import command_line, git_commit, load_average, machine, record, today

from metalearn_sep.atomic import atomic_write_text
from metalearn_sep.checkpoint import model_state, save_checkpoint
from metalearn_sep.experiments import MODULES, RunResult, chapter
from metalearn_sep.experiments.summary import RESULTS_DIR, read_runs, run_path, summarize

SEEDS = (0, 1, 2)
STEP_SECONDS: dict[tuple[str, str], tuple[float, float]] = {
    ("01", "4-output"): (0.159, 2.6), ("01", "4 dedicated"): (0.134, 1.0),
    ("02", "plain"): (0.235, 1.0), ("02", "multi"): (0.264, 1.2), ("02", "multi+spec"): (0.263, 1.8),
    ("02", "capacity control"): (0.411, 1.8),
    ("03", "4 dedicated"): (0.251, 1.4), ("03", "4-output"): (0.264, 1.4), ("03", "generated"): (1.057, 2.6),
    ("03", "independent"): (1.339, 3.1), ("03", "FiLM"): (1.291, 2.6),
    ("04", "1 stage"): (0.100, 3.5), ("04", "2 stages"): (0.238, 5.9), ("04", "3 stages"): (0.427, 7.9),
    ("05", "none"): (0.121, 1.7), ("05", "rec only"): (0.128, 1.4), ("05", "dis only"): (0.143, 1.3),
    ("05", "sim only"): (0.124, 1.3), ("05", "all three"): (0.138, 1.5),
}
"""``(training seconds per step, scoring seconds)`` of one model of each ``(chapter, variant)``, measured on 2
cores over 10 steps (``--time-steps 10``; ``benchmarks/RESULTS.md``, table ``results``): the estimate before any run
of the variant is recorded."""
PREPARE_SECONDS = 25.0
"""Seconds to render a chapter's shared crops and test songs (measured 8-21 s)."""


def expected_seconds(number: str, variant: str, runs: list[dict]) -> float:
    """One run's expected wall time: the mean of the recorded runs of the same variant, else the step-time estimate."""
    done = [run["seconds"] for run in runs if run["variant"] == variant]
    if done:
        return sum(done) / len(done)
    step, scoring = STEP_SECONDS[number, variant]
    return (4 if variant == "4 dedicated" else 1) * (step * chapter(number).SETTINGS["cpu"]["steps"] + scoring)


def record_run(number: str, variant: str, seed: int, result: RunResult, wall: float, load_before: str, root: Path,
               scale: str = "cpu") -> Path:
    """Write the run's JSON (and its weights) atomically; returns the JSON's path."""
    path = run_path(number, variant, seed, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, model in result.models.items():
        save_checkpoint(model_state(model), path.with_name(f"{path.stem}-{name.replace(' ', '-')}.pt"))
    figures = {
        "chapter": number, "variant": variant, "seed": seed, "command": command_line(), "commit": git_commit(),
        "date": today(), "machine": machine(), "load": [load_before, load_average()], "threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "seconds": wall, "train_seconds": result.seconds,
        "steps": result.steps, "scale": scale, "settings": chapter(number).SETTINGS[scale], "si_sdr_improvement": result.scores,
        "sdr": result.sdr, **result.extra,
    }
    atomic_write_text(path, json.dumps(figures, indent=1) + "\n")
    return path


def write_summary(number: str, root: Path, data: dict | None) -> Path:
    """``root/<chapter>.md`` from the chapter's recorded runs (reference rows when the chapter has them and data is ready)."""
    module = chapter(number)
    rows = module.reference_rows(data) if data is not None and hasattr(module, "reference_rows") else None
    if rows is None and hasattr(module, "reference_rows"):
        previous = root / f"{number}-reference.json"
        rows = json.loads(previous.read_text()) if previous.is_file() else None
    elif rows is not None:
        atomic_write_text(root / f"{number}-reference.json", json.dumps(rows, indent=1) + "\n")
    return atomic_write_text(root / f"{number}.md", summarize(number, module.VARIANTS, module.QUESTION, root, rows))


def time_steps(steps: int, chapters: list[str]) -> None:
    """Train every variant for ``steps`` steps (seed 0, cpu scale) and print and record the seconds per step and for scoring."""
    rows = []
    for number in chapters:
        module = chapter(number)
        began = time.perf_counter()
        data = module.prepare("cpu")
        prepared = time.perf_counter() - began
        data["settings"] = dict(data["settings"], steps=steps)
        for variant in module.VARIANTS:
            began = time.perf_counter()
            result = module.run(variant, 0, data)
            models = len(result.models)
            step, scoring = result.seconds / steps / models, (time.perf_counter() - began - result.seconds) / models
            rows.append((f"chapter {number} {variant}: seconds per step, scoring (one model; {steps} steps)",
                         f"{step:.3f} s, {scoring:.1f} s (prepare {prepared:.1f} s)"))
            print(": ".join(rows[-1]), flush=True)
    record("results", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="+", default=list(MODULES), choices=list(MODULES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--minutes", type=float, default=None, help="start no new run after this many minutes (a slice; it does one run at least)")
    parser.add_argument("--estimate", action="store_true", help="print the estimate and stop")
    parser.add_argument("--tables", action="store_true", help="rewrite results/<chapter>.md from the recorded runs and stop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-steps", type=int, default=None, metavar="N",
                        help="measure seconds per step of every variant over N steps (recorded in RESULTS.md) and stop")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--scale", default="cpu", choices=("cpu", "ci"), help=argparse.SUPPRESS)  # ci: the tests' tiny runs
    args = parser.parse_args()
    root = args.out
    torch.set_num_threads(args.threads)
    if args.time_steps:
        time_steps(args.time_steps, args.chapters)
        return 0
    if args.tables:
        for number in args.chapters:
            print(f"wrote {write_summary(number, root, None)}")
        return 0
    pending = [(n, v, s) for n in args.chapters for s in args.seeds for v in chapter(n).VARIANTS  # a seed of every variant, then the next
               if not run_path(n, v, s, root).is_file()]
    recorded = {n: read_runs(n, root) for n in args.chapters}
    estimate = sum(expected_seconds(n, v, recorded[n]) for n, v, _ in pending) + PREPARE_SECONDS * len({n for n, _, _ in pending})
    print(f"{len(pending)} run(s) to do ({sum(len(r) for r in recorded.values())} recorded); estimate {estimate / 60:.0f} min "
          f"on {args.threads} threads", flush=True)
    if args.estimate:
        return 0
    start, done, data = time.perf_counter(), 0, {}
    for number, variant, seed in pending:
        if done and args.minutes is not None and time.perf_counter() - start > args.minutes * 60:
            print(f"--minutes {args.minutes:g} reached: stopping before chapter {number} {variant} seed {seed}", flush=True)
            break
        if number not in data:
            data = {number: chapter(number).prepare(args.scale)}  # one chapter's data held at a time
        load_before, began = load_average(), time.perf_counter()
        result = chapter(number).run(variant, seed, data[number])
        wall = time.perf_counter() - began
        path = record_run(number, variant, seed, result, wall, load_before, root, args.scale)
        write_summary(number, root, data[number])
        done += 1
        print(f"chapter {number} {variant:16s} seed {seed}: SI-SDRi {result.scores['mean']:6.2f} dB, SDR {result.sdr['mean']:6.2f} dB "
              f"({wall / 60:.1f} min) -> {path.relative_to(root.parent) if root.parent in path.parents else path}", flush=True)
    print(f"{done} run(s) in {(time.perf_counter() - start) / 60:.1f} min (measured); load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
