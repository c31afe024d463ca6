"""``python -m metalearn_sep doctor``: is this environment the one the course was tested with?

One line per check, with the fix when something is off: the Python version, every
pinned package against requirements.lock, ffmpeg/ffprobe (musdb needs them), the
compute device, the widget front end, and the MUSDB18 path if one is set.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import sys
import tomllib
from pathlib import Path

import torch
from packaging.requirements import Requirement

from .config import MUSDB_ENV, default_device

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    path = ROOT / "requirements.lock"
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def _declared() -> list[str]:
    path = ROOT / "pyproject.toml"
    if not path.is_file():
        return []
    deps = tomllib.loads(path.read_text())["project"]["dependencies"]
    return [Requirement(d).name.lower() for d in deps]


def checks() -> list[tuple[bool, str]]:
    """(ok, message) for every check; messages of failed checks say how to fix them."""
    out: list[tuple[bool, str]] = []
    py = ".".join(map(str, sys.version_info[:3]))
    out.append((sys.version_info >= (3, 10), f"python {py}" + ("" if sys.version_info >= (3, 10) else ": the course needs Python 3.10 or newer")))
    lock = _lock()
    for name in _declared():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            out.append((False, f"{name} is not installed: run `make lab` (or pip install -c requirements.lock -e .)"))
            continue
        want = lock.get(name)
        ok = want is None or have.split("+")[0] == want
        out.append((ok, f"{name} {have}" + ("" if ok else f": the course was tested with {want} (pip install -c requirements.lock -e .)")))
    for tool in ("ffmpeg", "ffprobe"):
        where = shutil.which(tool)
        out.append((where is not None, f"{tool} at {where}" if where else f"{tool} not found: musdb needs it (Debian: apt-get install ffmpeg; macOS: brew install ffmpeg; conda: conda install -c conda-forge ffmpeg)"))
    dev = default_device()
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else ("Apple GPU" if dev.type == "mps" else f"{torch.get_num_threads()} CPU threads")
    out.append((True, f"device {dev} ({name})"))
    musdb = os.environ.get(MUSDB_ENV)
    if musdb:
        ok = Path(musdb, "train").is_dir() and Path(musdb, "test").is_dir()
        out.append((ok, f"{MUSDB_ENV}={musdb}" + ("" if ok else ": expected train/ and test/ folders there")))
    else:
        out.append((True, f"{MUSDB_ENV} not set: chapters use the synthetic band"))
    return out


def main() -> int:
    results = checks()
    for ok, message in results:
        print(f"{'ok ' if ok else 'FIX'} {message}")
    return 0 if all(ok for ok, _ in results) else 1
