"""Install the course into a Google Colab runtime (the first cell of a notebook on Colab runs it).

    !test -d metalearn-sep || git clone --depth 1 https://github.com/metalearn-sep/metalearn-sep metalearn-sep
    import sys
    !{sys.executable} metalearn-sep/scripts/colab_setup.py        # --dry-run: print the commands only

It keeps Colab's torch and torchaudio when they are the course's release and installs the rest,
rather than ``pip install --constraint requirements.lock -e .``, because:

* Colab already ships the course's release: its GPU image has torch and torchaudio 2.11.0+cu128
  (googlecolab/backend-info, pip-freeze.gpu.txt). Replacing them costs a 2.5 GB download and a
  restart for nothing.
* The build matters as much as the number: PyPI's torch 2.11.0 for Linux is built for CUDA 13.0,
  which needs an NVIDIA driver 580 or newer; Colab's is built for CUDA 12.8, which its T4 driver
  runs. So when torch must be replaced (absent, another minor release, or a CPU-only build on a
  GPU runtime) it comes at the lock's version from PyTorch's CUDA 12.8 index (its CPU index on a
  runtime without a GPU, a far smaller download).
* Torch is kept within the minor release the lock pins (2.11.x: patch releases fix bugs and keep
  the API); the course is tested with no other. torchaudio is released in lockstep with torch and
  built against one torch, so it must carry torch's exact version and build, or it is replaced.
* The whole lock would also install what runs and tests the course outside Colab (JupyterLab,
  nbval, pytest, pytest-xdist, Playwright) and with them IPython 9, ipykernel 7 and a newer tornado, which Colab's
  own kernel pins (google-colab requires ipython 7.34.0) and whose upgrade can crash the runtime.
  So the course's own dependencies, and whatever Colab lacks, come at the lock's versions; the
  packages Colab already has stay as they are unless a course package needs them newer.

A runtime restart is needed when a package the runtime already had changes version: the
notebook's Python may hold the old one in memory. Stdlib only, Python 3.10+ (nothing is installed
when it runs); the decision is :func:`plan_install`, which the tests exercise without Colab.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = "https://github.com/metalearn-sep/metalearn-sep"
ROOT = Path(__file__).resolve().parents[1]
TORCH = ("torch", "torchaudio")
OUTSIDE_COLAB = ("jupyterlab", "nbval", "pytest", "pytest-xdist", "playwright")
"""Declared dependencies that run and test the course outside Colab; Colab is its own front end."""
PYTORCH_INDEX = "https://download.pytorch.org/whl/"
GPU_BUILD = "cu128"
"""The CUDA build of torch installed on a GPU runtime: the one Colab ships, which its driver runs."""
CONSTRAINTS = Path(tempfile.gettempdir()) / "metalearn-sep-colab-constraints.txt"


class PlanError(ValueError):
    """The runtime or the course's files rule out an install; the message is one sentence."""


@dataclass(frozen=True)
class Change:
    """One package that pip installs: ``old`` is the version the runtime had, None when it had none."""

    name: str
    old: str | None
    new: str

    def __str__(self) -> str:
        return f"{self.name} {self.new}" if self.old is None else f"{self.name} {self.old} -> {self.new}"


@dataclass(frozen=True)
class TorchChoice:
    """What happens to torch and torchaudio: ``keep`` stays (``kept_because``), ``install`` comes from ``index``."""

    keep: tuple[str, ...] = ()
    kept_because: str = ""
    install: tuple[Change, ...] = ()
    index: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """What the set-up keeps, installs and skips, and the pip commands that do it."""

    torch: TorchChoice
    packages: tuple[Change, ...]
    requested: tuple[str, ...]
    constraints: tuple[str, ...]
    skipped: tuple[str, ...]

    @property
    def restart_for(self) -> tuple[Change, ...]:
        """The changes to packages the runtime already had: any of them calls for a restart."""
        return tuple(change for change in self.torch.install + self.packages if change.old is not None)

    def commands(self, python: str, repo: str, constraints: str) -> list[list[str]]:
        """pip's command lines, in order: torch/torchaudio, the course's dependencies, the course."""
        pip = [python, "-m", "pip", "install"]
        out = []
        if self.torch.install:
            index = ["--index-url", self.torch.index] if self.torch.index else []
            out.append(pip + index + [f"{c.name}=={c.new}" for c in self.torch.install])
        out.append(pip + ["--constraint", constraints, *self.requested])
        out.append(pip + ["--no-deps", "--editable", repo])
        return out

    def report(self, repo: str) -> list[str]:
        """One line each: what stays, what is installed and why, what is left out."""
        others = "the runtime's other packages (Colab's kernel among them) unless a course package needs one newer"
        kept = f"{', '.join(self.torch.keep)} ({self.torch.kept_because}) and " if self.torch.keep else ""
        lines = [f"keep:    {kept}{others}"]
        if self.torch.install:
            lines.append(f"install: {', '.join(map(str, self.torch.install))} from {self.torch.index or 'PyPI'} "
                         f"({self.torch.reason})")
        course = f"then metalearn-sep itself from {repo} (editable)"
        if self.packages:
            lines.append(f"install: {', '.join(map(str, self.packages))} (the course's dependencies at the versions in "
                         f"requirements.lock, which it is tested with, and what they need where missing), {course}")
        else:
            lines.append(f"install: nothing new (the course's dependencies are at requirements.lock's versions), {course}")
        lines.append(f"skip:    {', '.join(self.skipped)} (they run and test the course outside Colab)")
        return lines

    def restart_line(self) -> str:
        """Whether the runtime must restart before the course is imported, and why."""
        if not self.restart_for:
            return "restart: not needed"
        return (f"restart: needed when this cell ends (Runtime > Restart session, then go on with the next cell; "
                f"the install stays), because {', '.join(map(str, self.restart_for))} replace versions this "
                "runtime may already have loaded")


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version: ``"2.11.0+cu128"`` -> ``(2, 11, 0)``; ``()`` when there is none."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def build(version: str) -> str:
    """The local tag of a version, naming torch's build: ``"2.11.0+cu128"`` -> ``"cu128"``; ``""`` for PyPI's."""
    return version.partition("+")[2]


def read_pins(lock_lines: Iterable[str]) -> dict[str, str]:
    """``name==version`` lines of a pip constraints file, by normalized name, in file order."""
    pins = {}
    for line in lock_lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


def read_dependencies(pyproject: str) -> list[str]:
    """The ``[project] dependencies`` of a pyproject.toml, as written (tomllib is Python 3.11+)."""
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", pyproject, re.M | re.S)
    if block is None:
        raise PlanError("pyproject.toml has no [project] dependencies list.")
    return re.findall(r'"([^"]+)"', re.sub(r"#.*", "", block.group(1)))


def choose_torch(installed: dict[str, str | None], pins: dict[str, str], gpu: bool) -> TorchChoice:
    """Keep the installed torch of the lock's minor release (with its own torchaudio), else install the lock's."""
    want, want_audio = pins["torch"], pins["torchaudio"]
    have, have_audio = installed.get("torch"), installed.get("torchaudio")
    series = ".".join(map(str, release(want)[:2]))
    if have is None:
        reason = "torch is not installed"
    elif gpu and build(have) == "cpu":
        reason = f"torch {have} is a CPU-only build on a GPU runtime"
    elif release(have)[:2] < release(want)[:2]:
        reason = f"torch {have} is older than the course's {series} release"
    elif release(have)[:2] > release(want)[:2]:
        reason = f"torch {have} is newer than the course's {series} release, the one it is tested with"
    else:
        kept_because = f"the course's {series} release"
        if have_audio == have:
            return TorchChoice(keep=(f"torch {have}", f"torchaudio {have}"), kept_because=kept_because)
        found = f"torchaudio {have_audio} does not match torch {have}" if have_audio else "torchaudio is not installed"
        return TorchChoice(keep=(f"torch {have}",), kept_because=kept_because,
                           install=(Change("torchaudio", have_audio, have.partition("+")[0]),),
                           index=PYTORCH_INDEX + build(have) if build(have) else None,
                           reason=f"{found}: torchaudio must carry torch's exact version and build")
    where = ("the CUDA 12.8 build, which Colab's driver runs, not PyPI's CUDA 13.0 one, which needs driver 580 or newer"
             if gpu else "the CPU build, as this runtime has no GPU")
    return TorchChoice(install=(Change("torch", have, want), Change("torchaudio", have_audio, want_audio)),
                       index=PYTORCH_INDEX + (GPU_BUILD if gpu else "cpu"), reason=f"{reason}; {where}")


def plan_install(installed: dict[str, str | None], python: tuple[int, int], lock_lines: Sequence[str], *,
                 dependencies: Sequence[str], gpu: bool) -> Plan:
    """Decide what to keep and what to install.

    Args:
        installed: version of each installed distribution by normalized name (missing or None:
            not installed).
        python: the runtime's (major, minor).
        lock_lines: requirements.lock's lines (``name==version``).
        dependencies: pyproject.toml's ``[project] dependencies``.
        gpu: whether the runtime has an NVIDIA GPU.

    Raises:
        PlanError: Python older than 3.10, or a lock without torch and torchaudio.
    """
    if tuple(python) < (3, 10):
        raise PlanError(f"The course needs Python 3.10 or newer, and this runtime has Python {python[0]}.{python[1]}.")
    pins = read_pins(lock_lines)
    if not all(name in pins for name in TORCH):
        raise PlanError("requirements.lock pins no torch or no torchaudio, so it is not the course's lock file.")
    names = [normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", dep).group()) for dep in dependencies]
    requested = tuple(name for name in names if name not in TORCH and name not in OUTSIDE_COLAB)
    packages = tuple(Change(name, installed.get(name), pins[name]) for name in requested
                     if name in pins and installed.get(name) != pins[name])
    constraints = tuple(f"{name}=={version}" for name, version in pins.items()
                        if name not in TORCH and (name in requested or installed.get(name) is None))
    skipped = tuple(name for name in names if name in OUTSIDE_COLAB)
    return Plan(choose_torch(installed, pins, gpu), packages, requested, constraints, skipped)


def installed_versions() -> dict[str, str | None]:
    """Every installed distribution's version by normalized name (the first on sys.path wins, as in imports)."""
    found: dict[str, str | None] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist.version)
    return found


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name from ``nvidia-smi -L``; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"GPU 0: (.+?)(?: \(UUID|$)", listed.stdout, re.M)
    return match.group(1) if listed.returncode == 0 and match else None


def ffmpeg_line() -> str:
    """Whether ffmpeg and ffprobe are on PATH (musdb needs them to list and read MUSDB18, even its wav edition)."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if not missing:
        return f"ffmpeg:  {shutil.which('ffmpeg')} and ffprobe found (musdb reads MUSDB18 through them)"
    return (f"ffmpeg:  {' and '.join(missing)} missing: MUSDB18 cannot be read without them (install with "
            "`!apt-get install -y ffmpeg`); the synthetic band does not need them")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the decision, run pip (unless ``--dry-run``) and say whether to restart; 1 on an error."""
    parser = argparse.ArgumentParser(description="Install metalearn-sep into a Google Colab runtime.")
    parser.add_argument("--dry-run", action="store_true", help="print the decision and the commands, run nothing")
    args = parser.parse_args(argv)
    lock, pyproject = ROOT / "requirements.lock", ROOT / "pyproject.toml"
    try:
        if not (lock.is_file() and pyproject.is_file()):
            raise PlanError(f"{lock.name} or {pyproject.name} is missing from {ROOT}: run this script from a clone "
                            f"of the course (git clone {REPOSITORY}).")
        gpu = gpu_name()
        plan = plan_install(installed_versions(), sys.version_info[:2], lock.read_text().splitlines(),
                            dependencies=read_dependencies(pyproject.read_text()), gpu=gpu is not None)
    except PlanError as error:
        print(f"colab_setup: {error}", file=sys.stderr)
        return 1
    print(f"colab_setup: Python {sys.version_info[0]}.{sys.version_info[1]}, "
          f"{'GPU runtime (' + gpu + ')' if gpu else 'no GPU'}, course at {ROOT}")
    for line in plan.report(str(ROOT)) + [ffmpeg_line()]:
        print(line)
    commands = plan.commands(sys.executable, str(ROOT), str(CONSTRAINTS))
    if args.dry_run:
        print(f"would write {CONSTRAINTS}: {len(plan.constraints)} pins from requirements.lock")
        for command in commands:
            print("would run: " + shlex.join(command))
    else:
        CONSTRAINTS.write_text("\n".join(plan.constraints) + "\n")
        for command in commands:
            print("$ " + shlex.join(command), flush=True)
            done = subprocess.run(command)
            if done.returncode != 0:
                print(f"colab_setup: pip stopped with exit status {done.returncode} (its messages are above), "
                      "so the course is not installed.", file=sys.stderr)
                return 1
    print(plan.restart_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
