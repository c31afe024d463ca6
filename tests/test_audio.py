"""Audio I/O round trips, atomic writes, resampling and input checks."""

from __future__ import annotations

import math
import os

import pytest
import soundfile as sf
import torch

from metalearn_sep.atomic import atomic_write

from metalearn_sep.audio import read_audio, resample, to_mono, write_audio

from metalearn_sep.checks import check_duration, check_rate, check_waveform


def test_write_then_read_round_trip(tmp_path):
    x = torch.rand(2, 1000) * 2 - 1
    path = write_audio(tmp_path / "a.wav", x, 8000)
    y, rate = read_audio(path)
    assert rate == 8000 and torch.equal(x, y)  # 32-bit float WAV is lossless
    part, _ = read_audio(path, start=0.025, duration=0.01)
    assert torch.equal(part, x[:, 200:280])
    loud = write_audio(tmp_path / "loud.wav", 3 * x, 8000)
    assert read_audio(loud)[0].abs().max() > 1.5  # float WAV never clips


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.wav"
    write_audio(target, torch.zeros(1, 10), 8000)
    before = target.read_bytes()

    def fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == before and len(list(tmp_path.iterdir())) == 1
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0o600


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_audio(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="Cannot read .*bad.wav as audio"):
        read_audio(bad)


def test_resample_keeps_a_tone_and_the_length_ratio():
    t = torch.arange(44100) / 44100
    tone = torch.sin(2 * math.pi * 440 * t).unsqueeze(0)
    down = resample(tone, 44100, 8000)
    assert down.shape == (1, 8000)
    ref = torch.sin(2 * math.pi * 440 * torch.arange(8000) / 8000)
    assert torch.allclose(down[0, 100:-100], ref[100:-100], atol=1e-2)
    assert resample(tone, 8000, 8000) is tone


def test_checks_name_the_problem():
    with pytest.raises(ValueError, match="positive integer number of Hz, got 0"):
        check_rate(0)
    with pytest.raises(ValueError, match="positive integer number of Hz, got 44100.5"):
        check_rate(44100.5)
    with pytest.raises(ValueError, match="positive number of seconds, got -1"):
        check_duration(-1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_waveform(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"must have 3 dimensions, got shape \(5,\)"):
        check_waveform(torch.zeros(5), ndim=3)
    with pytest.raises(ValueError, match="1 channel"):
        check_waveform(torch.zeros(1, 2, 5), channels=1)
    with pytest.raises(ValueError, match="empty"):
        check_waveform(torch.zeros(1, 0))
    assert to_mono(torch.tensor([[1.0, 3.0], [3.0, 5.0]])).tolist() == [[2.0, 4.0]]
    assert sf.available_formats()["WAV"]
