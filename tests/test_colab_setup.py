"""scripts/colab_setup.py: what the first Colab cell keeps, installs and says, decided without Colab."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "colab_setup.py"
_spec = importlib.util.spec_from_file_location("colab_setup", SCRIPT)
colab_setup = sys.modules["colab_setup"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(colab_setup)

LOCK = (ROOT / "requirements.lock").read_text().splitlines()
DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
PINS = colab_setup.read_pins(LOCK)
COLAB = {  # a slice of Colab's GPU image (googlecolab/backend-info, pip-freeze.gpu.txt, 2026)
    "torch": "2.11.0+cu128", "torchaudio": "2.11.0+cu128", "numpy": "2.0.2", "matplotlib": "3.10.0",
    "ipywidgets": "7.7.1", "tqdm": "4.67.3", "soundfile": "0.13.1", "ipython": "7.34.0", "ipykernel": "6.17.1",
    "tornado": "6.5.1", "pyzmq": "26.2.1", "pandas": "2.2.2", "scipy": "1.16.3", "pytest": "8.4.2",
}
CUDA_INDEX = "https://download.pytorch.org/whl/cu128"


def plan(installed: dict[str, str | None] = COLAB, python: tuple[int, int] = (3, 12), gpu: bool = True, **changed: str | None):
    return colab_setup.plan_install({**installed, **changed}, python, LOCK, dependencies=DEPENDENCIES, gpu=gpu)


def names(changes) -> list[str]:
    return [change.name for change in changes]


def test_colabs_torch_of_the_courses_release_is_kept_and_the_rest_comes_at_the_locks_versions():
    p = plan()
    assert p.torch.keep == ("torch 2.11.0+cu128", "torchaudio 2.11.0+cu128") and p.torch.install == ()
    commands = p.commands("python", "/content/metalearn-sep", "/tmp/c.txt")
    assert commands == [
        ["python", "-m", "pip", "install", "--constraint", "/tmp/c.txt", *p.requested],
        ["python", "-m", "pip", "install", "--no-deps", "--editable", "/content/metalearn-sep"],
    ]
    assert set(p.requested) == {"numpy", "soundfile", "musdb", "museval", "ipywidgets", "matplotlib", "tqdm", "pyloudnorm"}
    assert "numpy==" + PINS["numpy"] in p.constraints and "musdb==" + PINS["musdb"] in p.constraints
    assert "numpy 2.0.2 -> " + PINS["numpy"] in map(str, p.packages) and "musdb " + PINS["musdb"] in map(str, p.packages)
    assert not any(line.startswith(("torch==", "torchaudio==")) for line in p.constraints)


def test_colabs_own_packages_are_left_alone_and_the_outside_colab_tools_skipped():
    p = plan()
    pinned = {line.split("==")[0] for line in p.constraints}
    assert pinned.isdisjoint({"ipython", "ipykernel", "tornado", "pyzmq", "pandas", "scipy"})
    assert {"comm", "stempeg", "simplejson"} <= pinned  # absent from the runtime: the lock's versions
    assert p.skipped == ("jupyterlab", "nbval", "pytest", "pytest-xdist", "playwright")
    assert not set(p.requested) & {"jupyterlab", "nbval", "pytest", "playwright", "torch", "torchaudio"}


def test_the_skipped_tools_are_declared_and_the_package_never_imports_them():
    declared = {re.match(r"[\w.-]+", dep).group().lower() for dep in DEPENDENCIES}
    assert set(colab_setup.OUTSIDE_COLAB) <= declared
    imports = re.compile(r"^\s*(?:import|from)\s+(jupyterlab|nbval|pytest|playwright)\b", re.M)
    offenders = [str(f) for f in (ROOT / "metalearn_sep").rglob("*.py") if imports.search(f.read_text())]
    assert offenders == []


def test_a_restart_is_asked_for_exactly_when_an_installed_package_changes_version():
    p = plan()
    assert set(names(p.restart_for)) == {"numpy", "matplotlib", "ipywidgets", "tqdm", "soundfile"}
    assert p.restart_line().startswith("restart: needed") and "numpy 2.0.2 -> " in p.restart_line()
    settled = plan(installed={**PINS, "torch": "2.11.0+cu128", "torchaudio": "2.11.0+cu128"})
    assert settled.restart_for == () and settled.packages == () and settled.restart_line() == "restart: not needed"


def test_a_patch_release_of_the_courses_torch_is_kept():
    p = plan(torch="2.11.1+cu128", torchaudio="2.11.1+cu128")
    assert p.torch.install == () and p.torch.keep[0] == "torch 2.11.1+cu128"


@pytest.mark.parametrize(("torch", "torchaudio", "says"), [
    (None, None, "torch is not installed"),
    ("2.9.0+cu126", "2.9.0+cu126", "older than the course's 2.11 release"),
    ("2.12.0+cu128", "2.12.0+cu128", "newer than the course's 2.11 release"),
    ("2.11.0+cpu", "2.11.0+cpu", "CPU-only build on a GPU runtime"),
])
def test_another_torch_is_replaced_by_the_locks_cuda_12_8_build(torch, torchaudio, says):
    p = plan(torch=torch, torchaudio=torchaudio)
    assert p.torch.keep == () and says in p.torch.reason and "CUDA 13.0" in p.torch.reason
    assert [str(c) for c in p.torch.install] == [
        f"torch {PINS['torch']}" if torch is None else f"torch {torch} -> {PINS['torch']}",
        f"torchaudio {PINS['torchaudio']}" if torch is None else f"torchaudio {torchaudio} -> {PINS['torchaudio']}",
    ]
    first = p.commands("python", "repo", "c.txt")[0]
    assert first == ["python", "-m", "pip", "install", "--index-url", CUDA_INDEX,
                     f"torch=={PINS['torch']}", f"torchaudio=={PINS['torchaudio']}"]
    assert ("torch" in names(p.restart_for)) == (torch is not None)


def test_without_a_gpu_a_cpu_build_is_kept_and_a_missing_torch_comes_from_the_cpu_index():
    assert plan(gpu=False, torch="2.11.0+cpu", torchaudio="2.11.0+cpu").torch.install == ()
    p = plan(gpu=False, torch=None, torchaudio=None)
    assert p.torch.index == "https://download.pytorch.org/whl/cpu" and "no GPU" in p.torch.reason


@pytest.mark.parametrize("torchaudio", ["2.10.0+cu128", "2.11.0", None])
def test_a_torchaudio_that_does_not_match_torch_is_replaced_by_torchs_own(torchaudio):
    p = plan(torchaudio=torchaudio)
    assert p.torch.keep == ("torch 2.11.0+cu128",) and [str(c) for c in p.torch.install] == [
        "torchaudio 2.11.0" if torchaudio is None else f"torchaudio {torchaudio} -> 2.11.0"]
    assert "must carry torch's exact version and build" in p.torch.reason
    assert p.commands("python", "repo", "c.txt")[0] == ["python", "-m", "pip", "install", "--index-url", CUDA_INDEX,
                                                        "torchaudio==2.11.0"]
    report = p.report("repo")
    assert report[0].startswith("keep:    torch 2.11.0+cu128 (") and report[1].startswith("install: torchaudio")


@pytest.mark.parametrize("python", [(3, 9), (3, 6)])
def test_python_older_than_3_10_is_refused_in_one_sentence(python):
    with pytest.raises(colab_setup.PlanError, match=r"needs Python 3\.10 or newer.*Python 3\.[69]\.$") as error:
        plan(python=python)
    assert str(error.value).count(". ") == 0


def test_a_lock_without_torch_is_refused():
    with pytest.raises(colab_setup.PlanError, match="not the course's lock file"):
        colab_setup.plan_install(COLAB, (3, 12), ["numpy==2.4.6"], dependencies=DEPENDENCIES, gpu=True)


def test_the_stdlib_reading_of_pyproject_matches_tomllib():
    assert colab_setup.read_dependencies((ROOT / "pyproject.toml").read_text()) == DEPENDENCIES


def test_the_report_is_one_line_per_subject():
    report = plan(torch="2.9.0+cu126", torchaudio="2.9.0+cu126").report("/content/metalearn-sep")
    assert [line.split(":")[0] for line in report] == ["keep", "install", "install", "skip"]
    assert all("\n" not in line for line in report)
    assert "editable" in report[2] and "/content/metalearn-sep" in report[2]


def test_dry_run_here_keeps_this_venvs_torch_and_runs_nothing():
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("keep:    torch 2.11.0")
    commands = [line for line in lines if line.startswith("would run: ")]
    assert len(commands) == 2 and "--constraint" in commands[0] and commands[1].endswith(f"--editable {ROOT}")
    assert not any("torch==" in line for line in commands)
    assert lines[-1].startswith("restart: ") and not any(line.startswith("$ ") for line in lines)


def test_outside_a_clone_it_stops_with_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(colab_setup, "ROOT", tmp_path)
    assert colab_setup.main(["--dry-run"]) == 1
    err = capsys.readouterr().err.strip()
    assert "requirements.lock" in err and colab_setup.REPOSITORY in err and err.endswith(".") and "\n" not in err
