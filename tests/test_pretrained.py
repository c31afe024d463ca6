"""Shipped models: written with their manifest entry, verified before loading, the command line's default separator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import metalearn_sep.pretrained as shipped
from metalearn_sep import SOURCES, course
from metalearn_sep.__main__ import main
from metalearn_sep.audio import read_audio, write_audio
from metalearn_sep.checkpoint import file_sha256
from metalearn_sep.pretrained import MANIFEST, pretrained, read_manifest, ship, verified_path
from tiny_models import noise, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_shipped_model_loads_with_its_weights(tmp_path: Path) -> None:
    model = tiny_model(3)
    entry = ship(model, "tiny", tmp_path, source="a test", scores={"mean": 1.5})
    assert entry["file"] == "tiny.pt" and entry["dtype"] == "float32" and entry["source"] == "a test"
    assert entry["sha256"] == file_sha256(tmp_path / "tiny.pt") and entry["bytes"] == (tmp_path / "tiny.pt").stat().st_size
    assert read_manifest(tmp_path) == {"tiny": entry}
    loaded = pretrained("tiny", tmp_path)
    assert not loaded.training
    for (name, mine), theirs in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(mine, theirs), name


def test_half_storage_rounds_the_weights_and_loads_them_as_float32(tmp_path: Path) -> None:
    model = tiny_model(4)
    ship(model, "full", tmp_path)
    entry = ship(model, "half", tmp_path, half=True, fp16_change_db=0.01)
    assert entry["dtype"] == "float16" and entry["bytes"] < read_manifest(tmp_path)["full"]["bytes"] * 0.6
    assert set(read_manifest(tmp_path)) == {"full", "half"}
    loaded = pretrained("half", tmp_path)
    for (name, mine), theirs in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert theirs.dtype == mine.dtype and torch.equal(theirs, mine.half().to(mine.dtype)), name


def test_a_changed_or_truncated_file_is_refused(tmp_path: Path) -> None:
    ship(tiny_model(), "tiny", tmp_path)
    path = tmp_path / "tiny.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"tiny.pt does not match its SHA-256 in MANIFEST.json: the file is corrupt or was changed"):
        pretrained("tiny", tmp_path)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        verified_path("tiny", tmp_path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="The shipped model 'tiny' is missing"):
        pretrained("tiny", tmp_path)


def test_unknown_names_and_broken_manifests_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"No shipped model is called 'x'; the course ships: none \(run make checkpoints\)"):
        pretrained("x", tmp_path)
    ship(tiny_model(), "tiny", tmp_path)
    with pytest.raises(ValueError, match="the course ships: tiny"):
        pretrained("x", tmp_path)
    (tmp_path / MANIFEST).write_text("{broken")
    with pytest.raises(ValueError, match="MANIFEST.json is not valid JSON"):
        pretrained("tiny", tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"tiny": {"file": "tiny.pt"}}))
    with pytest.raises(ValueError, match="is not a checkpoint manifest"):
        read_manifest(tmp_path)


def test_course_pretrained_is_the_package_function() -> None:
    assert course.pretrained is pretrained


def test_separate_without_checkpoint_uses_the_default_separator(tmp_path: Path, monkeypatch, capsys) -> None:
    song = tmp_path / "song.wav"
    write_audio(song, 0.3 * noise(1, 16000, seed=2), 16000)
    monkeypatch.setattr(shipped, "ASSETS", tmp_path / "assets")
    assert main(["separate", str(song), "--out", str(tmp_path / "none"), "--device", "cpu"]) == 1
    assert "No shipped model is called 'meta-tasnet-cpu'" in capsys.readouterr().err
    ship(tiny_model(5), shipped.DEFAULT_SEPARATOR, tmp_path / "assets", about="a tiny test model")
    assert main(["separate", str(song), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "No --checkpoint: using the course's default separator meta-tasnet-cpu" in out and "a tiny test model" in out
    assert main(["separate", str(song), "--out", str(tmp_path / "given"), "--device", "cpu",
                 "--checkpoint", str(tmp_path / "assets" / "meta-tasnet-cpu.pt")]) == 0
    for source in SOURCES:
        torch.testing.assert_close(read_audio(tmp_path / "out" / "song" / f"{source}.wav")[0],
                                   read_audio(tmp_path / "given" / "song" / f"{source}.wav")[0])
