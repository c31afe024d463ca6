"""The set-up files agree with each other, so every way of installing gets the same course."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import metalearn_sep

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    return [line.strip()[2:].strip() for line in lines[start + 1 :] if line.strip().startswith("- ")]


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    declared = sorted(_pyproject()["project"]["dependencies"])
    conda = sorted(req for req in _environment_pip() if req != "-e .")
    assert conda == declared
    assert "-e ." in _environment_pip()
    text = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in text and re.search(r"^\s*- ffmpeg\s*$", text, re.M)


def test_lock_pins_every_dependency_and_matches_pyproject_pins():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[_name(name)] = version
    for req in _pyproject()["project"]["dependencies"]:
        assert _name(req) in lock, f"{req} is not pinned in requirements.lock"
        if "==" in req:
            assert lock[_name(req)] == req.split("==")[1], f"{req} disagrees with requirements.lock"


@pytest.mark.parametrize("pkg", ["torch", "torchaudio"])
def test_torch_and_torchaudio_are_matching_211_releases(pkg):
    pins = {_name(r): r.split("==")[1] for r in _pyproject()["project"]["dependencies"] if "==" in r}
    assert pins[pkg].startswith("2.11.")
    assert pins["torch"] == pins["torchaudio"]


def test_installed_versions_match_the_lock():
    import importlib.metadata as md

    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith(("torch==", "torchaudio==", "numpy==", "musdb==", "museval==", "nbval==")):
            name, version = line.split("==")
            assert md.version(name).split("+")[0] == version, f"installed {name} differs from the lock"


def test_version_is_single_sourced():
    assert _pyproject()["project"]["version"] == metalearn_sep.__version__


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


@pytest.mark.parametrize("user_id, flagged", [("0", True), ("1000", False)])
def test_make_lab_passes_allow_root_for_root_only(user_id, flagged):
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), "lab", f"USER_ID={user_id}"],
                         capture_output=True, text=True, check=True).stdout
    command = next(line for line in dry.splitlines() if "jupyter lab" in line)
    assert ("--allow-root" in command) is flagged and command.rstrip().endswith("notebooks/")


def test_make_lab_starts_a_server_that_answers(tmp_path):
    """The README's first command, as this user (root in CI): the server answers /api/status, then stops."""
    from lab_browser import _api, start_lab, stop_lab

    server = start_lab(ROOT, tmp_path, {}, via_make=True)
    try:
        assert json.loads(_api(server, "/api/status"))["started"]
    finally:
        stop_lab(server)
