"""Minutes and peak memory of each chapter, Run All in one profile, as a student would run it.

Each notebook runs top to bottom in a fresh kernel (the way ``make notebooks PROFILE=...`` runs
it) in a child process of this script; the child reports the notebook's wall time and the peak
resident memory of its kernel (``ru_maxrss`` of the reaped kernel process), and nothing is
written back into the notebook. Each chapter's figures are written atomically to
``benchmarks/results/profile-<profile>.json`` as soon as it finishes, with the date, commit and
machine, so an interrupted sweep resumes: a rerun skips chapters already recorded (``--again``
measures them anew); each also gets a row in ``benchmarks/RESULTS.md`` (``--no-record`` skips
that). Chapter 00 prints its table of profiles from the JSON files.

    python benchmarks/profile_minutes.py --profile cpu [--again] [--out DIR] [--no-record] [notebooks/01_conv_tasnet.ipynb ...]

Run it alone on the machine: a second torch job on 2 cores makes both many times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from results_table import add_no_record_flag, command_line, git_commit, load_average, machine, record, today

from metalearn_sep.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def run_one(path: Path) -> dict:
    """Execute ``path`` in a fresh kernel (outputs discarded); its seconds and the kernel's peak memory."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=4 * 3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the kernel, reaped at shutdown (Linux: KiB)
    return {"seconds": round(seconds, 1), "peak_gib": round(peak_kib / 2**20, 2)}


def record_path(profile: str, folder: Path = OUT) -> Path:
    return folder / f"profile-{profile}.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    parser.add_argument("--profile", required=True, choices=["ci", "cpu", "gpu", "paper"])
    parser.add_argument("--again", action="store_true", help="measure chapters already recorded anew")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the JSON records (default benchmarks/results)")
    add_no_record_flag(parser)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # the child's job: one notebook, JSON on stdout
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one)))
        return 0
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    path = record_path(args.profile, args.out)
    recorded = json.loads(path.read_text()) if path.exists() else {}
    env = {**os.environ, "METALEARN_SEP_PROFILE": args.profile}
    for notebook in notebooks:
        chapter = notebook.name[:2]
        if chapter in recorded and not args.again:
            print(f"{notebook.name}: recorded {recorded[chapter]['date']}, skipped (--again measures it anew)")
            continue
        load_before = load_average()
        child = subprocess.run([sys.executable, __file__, "--profile", args.profile, "--one", str(notebook)],
                               env=env, capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            print(f"{notebook.name} failed in the {args.profile} profile; nothing recorded for it.", file=sys.stderr)
            return 1
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        load = f"{load_before} -> {load_average()}"
        recorded[chapter] = {**figures, "notebook": notebook.name, "date": today(), "commit": git_commit(),
                             "machine": machine(), "load": load}
        atomic_write_text(path, json.dumps(dict(sorted(recorded.items())), indent=1) + "\n")
        if not args.no_record:
            record("profile_minutes", {f"{notebook.name}, Run All, {args.profile} profile":
                                       f"{figures['seconds'] / 60:.1f} min, kernel peak {figures['peak_gib']:.2f} GiB"},
                   command=command_line(), load=load)
        print(f"{notebook.name}: {figures['seconds'] / 60:.1f} min, peak {figures['peak_gib']:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
