"""course.setup(): profiles, seeds, device; the self-check helper; the doctor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metalearn_sep import course
from metalearn_sep.config import PROFILES, resolve_profile
from metalearn_sep.doctor import checks


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("METALEARN_SEP_PROFILE", "cpu")
    assert resolve_profile().name == "cpu"
    monkeypatch.delenv("METALEARN_SEP_PROFILE")
    assert resolve_profile().name == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("METALEARN_SEP_PROFILE", "laptop")
    with pytest.raises(ValueError, match="Unknown course profile 'laptop': expected one of ci, cpu, gpu"):
        resolve_profile()


def test_setup_seeds_everything_and_prints_one_block(capsys, monkeypatch):
    monkeypatch.setenv("METALEARN_SEP_PROFILE", "ci")
    monkeypatch.delenv("MUSDB_PATH", raising=False)
    cfg = course.setup(seed=7)
    a = (torch.rand(3), np.random.rand(3))
    course.setup(seed=7, verbose=False)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert "profile ci" in lines[0] and f"torch {torch.__version__}" in lines[1] and "synthetic band" in lines[2]
    assert cfg.profile is PROFILES["ci"] and cfg.musdb_path is None
    assert cfg.pick(ci=1, cpu=2, gpu=3) == 1


def test_check_close_says_what_is_wrong(capsys):
    course.check_close(torch.ones(2, 3), np.ones((2, 3)), "your encoder")
    assert "✓ your encoder" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"your encoder: expected shape \(2, 3\), got \(3, 2\)"):
        course.check_close(torch.ones(3, 2), torch.ones(2, 3), "your encoder")
    wrong = torch.ones(2, 3)
    wrong[1, 2] = 5
    with pytest.raises(AssertionError, match=r"1 of 6 values differ; first at index \(1, 2\): got 5, expected 1"):
        course.check_close(wrong, torch.ones(2, 3), "x")
    with pytest.raises(AssertionError, match="contains NaN"):
        course.check_close(torch.full((2,), float("nan")), torch.ones(2), "x")


def test_doctor_reports_this_environment_as_tested():
    results = checks()
    assert all(ok for ok, _ in results), [m for ok, m in results if not ok]
    assert any(m.startswith("torch 2.11") for _, m in results)
