"""Execute notebooks in place and save their outputs (what `make notebooks` runs).

Each notebook runs top to bottom in a fresh kernel of this environment, with the
profile from $METALEARN_SEP_PROFILE (default ci). The file is replaced atomically only
when every cell ran; the script prints the time and size of each notebook and fails
when one exceeds 1 MiB.

    python scripts/execute_notebooks.py notebooks/00_separation_basics.ipynb [...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from metalearn_sep.atomic import atomic_write

LIMIT = 1 << 20


def execute(path: Path, timeout: int) -> tuple[float, int]:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=False,  # the static fallback of each widget is saved; its state would double the file
    )
    client.execute()
    seconds = time.perf_counter() - start
    atomic_write(path, lambda tmp: nbformat.write(nb, tmp))
    return seconds, path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()
    os.environ.setdefault("METALEARN_SEP_PROFILE", "ci")
    failed = False
    for path in args.notebooks:
        seconds, size = execute(path, args.timeout)
        too_big = size > LIMIT
        failed |= too_big
        print(f"{path}: {seconds:.0f} s, {size / 1024:.0f} KiB{'  <-- over 1 MiB' if too_big else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
