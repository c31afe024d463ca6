"""Separating files: the command line, the streamed path, checkpoints it cannot use, atomic output, the heap guard."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from metalearn_sep import SOURCES
from metalearn_sep.__main__ import main
from metalearn_sep.audio import read_audio, resample, write_audio
from metalearn_sep.checkpoint import CHECKPOINT_FORMAT, load_model
from metalearn_sep.models.conv_tasnet import ConvTasNet
from metalearn_sep.models.meta_tasnet import MetaTasNet
from metalearn_sep.separate import separate
from metalearn_sep.train import Trainer
from tiny_models import TINY, noise, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "my song.wav"
    write_audio(path, 0.3 * noise(2, 33075, seed=6), 22050)  # 1.5 s stereo at 22.05 kHz
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return Trainer(tiny_model(), [], progress=False, device="cpu").save(tmp_path / "tiny.pt")


def run_cli(*args) -> int:
    return main(["separate", *map(str, args)])


def test_cli_writes_one_float_wav_per_stem_equal_to_separate(tmp_path, song, checkpoint, capsys):
    out = tmp_path / "out"
    assert run_cli(song, "--checkpoint", checkpoint, "--out", out, "--chunk-seconds", 0.5, "--context-seconds", 0.25, "--device", "cpu") == 0
    folder = out / "my song"
    assert sorted(p.name for p in out.iterdir()) == ["my song"]  # no temporary folder left behind
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.wav" for s in SOURCES)
    assert str(folder) in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # a usual folder, not mkdtemp's private one
    mixture, rate = read_audio(song)
    expected = separate(load_model(checkpoint)[0], mixture, rate, chunk_seconds=0.5, context_seconds=0.25)
    for source, stem in zip(SOURCES, expected):
        info = sf.info(str(folder / f"{source}.wav"))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (22050, 2, mixture.shape[-1], "FLOAT")
        torch.testing.assert_close(read_audio(folder / f"{source}.wav")[0], stem)


def test_cli_precision_bf16_equals_separate_in_bf16(tmp_path, song, checkpoint):
    """``--precision bf16`` runs the model in bf16 (what separate(amp=True) gives), fp32 the plain path."""
    chunks = ("--chunk-seconds", 0.5, "--context-seconds", 0.25, "--device", "cpu")
    for precision in ("bf16", "fp32"):
        assert run_cli(song, "--checkpoint", checkpoint, "--out", tmp_path / precision, *chunks, "--precision", precision) == 0
    mixture, rate = read_audio(song)
    model = load_model(checkpoint)[0]
    for amp, folder in ((True, "bf16"), (False, "fp32")):
        expected = separate(model, mixture, rate, chunk_seconds=0.5, context_seconds=0.25, amp=amp)
        for source, stem in zip(SOURCES, expected):
            torch.testing.assert_close(read_audio(tmp_path / folder / "my song" / f"{source}.wav")[0], stem)
    fp32, bf16 = (read_audio(tmp_path / f / "my song" / "bass.wav")[0] for f in ("fp32", "bf16"))
    assert 0 < (fp32 - bf16).norm() / fp32.norm() < 0.05  # rounding, not another model


def test_cli_rejects_a_corrupt_checkpoint_without_traceback_or_output(tmp_path, song):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all" * 10)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "metalearn_sep", "separate", str(song), "--checkpoint", str(bad), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {bad} is not a readable checkpoint (corrupt or truncated file, or one holding objects other than tensors: "
        "UnpicklingError)."]
    assert not out.exists()


def test_cli_reports_missing_files(tmp_path, song, checkpoint, capsys):
    assert run_cli(tmp_path / "nope.wav", "--checkpoint", checkpoint, "--out", tmp_path / "out") == 1
    assert "nope.wav does not exist" in capsys.readouterr().err
    assert run_cli(song, "--checkpoint", tmp_path / "nope.pt", "--out", tmp_path / "out") == 1
    assert "nope.pt does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _edited(checkpoint: Path, **changes) -> Path:
    state = torch.load(checkpoint, weights_only=True)
    state.update(changes)
    path = checkpoint.with_name("edited.pt")
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_class": "Demucs"}, "names a 'Demucs' model; the course builds MetaTasNet or ConvTasNet or EncoderSeparator"),
        ({"model_config": {**MetaTasNet(**TINY).config, "N": 48}}, "the weights do not fit its MetaTasNet configuration"),
        ({"model_config": {**MetaTasNet(**TINY).config, "N": 41}}, "its MetaTasNet configuration does not build a model .*N must be divisible"),
        ({"model_config": {"layers": 3}}, "its MetaTasNet configuration does not build a model .*unexpected keyword"),
        ({"format": "something-else"}, "is not a metalearn-sep checkpoint"),
    ],
)
def test_cli_explains_a_checkpoint_it_cannot_use(tmp_path, song, checkpoint, capsys, changes, message):
    out = tmp_path / "out"
    assert run_cli(song, "--checkpoint", _edited(checkpoint, **changes), "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_cli_separates_with_a_conv_tasnet_checkpoint_at_its_rate(tmp_path, song):
    torch.manual_seed(0)
    model = ConvTasNet(N=16, L=8, B=8, H=16, Sc=8, X=2, R=1, sample_rate=16000)
    path = Trainer(model, [], progress=False, device="cpu").save(tmp_path / "conv.pt")
    assert load_model(path)[0].sample_rates == [16000]
    assert run_cli(song, "--checkpoint", path, "--out", tmp_path / "out") == 0
    assert read_audio(tmp_path / "out" / "my song" / "vocals.wav")[0].shape == read_audio(song)[0].shape


def test_a_pickled_object_in_a_checkpoint_is_refused_and_never_runs(tmp_path, song, capsys):
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))

    bad = tmp_path / "unsafe.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Payload()}, bad)
    assert run_cli(song, "--checkpoint", bad, "--out", tmp_path / "out") == 1
    assert "is not a readable checkpoint" in capsys.readouterr().err
    assert not ran.exists() and not (tmp_path / "out").exists()


def test_a_failed_write_leaves_neither_a_partial_folder_nor_a_new_parent(tmp_path, song, checkpoint, monkeypatch, capsys):
    import metalearn_sep.streaming as module

    opened, original = [], sf.SoundFile

    def failing_soundfile(path, mode="r", *args, **kwargs):
        if mode == "w":
            if len(opened) == 5:  # the four raw stems are written; the second final stem fails
                raise OSError("disk full")
            opened.append(path)
        return original(path, mode, *args, **kwargs)

    monkeypatch.setattr(module.sf, "SoundFile", failing_soundfile)
    out = tmp_path / "new" / "out"
    assert run_cli(song, "--checkpoint", checkpoint, "--out", out) == 1
    assert "disk full" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()

    previous = tmp_path / "kept" / "my song"
    previous.mkdir(parents=True)
    (previous / "drums.wav").write_bytes(b"an earlier result")
    opened.clear()
    assert run_cli(song, "--checkpoint", checkpoint, "--out", tmp_path / "kept") == 1
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["my song"]
    assert (previous / "drums.wav").read_bytes() == b"an earlier result"


def test_a_second_run_replaces_the_previous_stems(tmp_path, song, checkpoint):
    out = tmp_path / "out"
    (out / "my song").mkdir(parents=True)
    (out / "my song" / "stale.wav").write_bytes(b"old")
    assert run_cli(song, "--checkpoint", checkpoint, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["my song"]
    assert sorted(p.name for p in (out / "my song").iterdir()) == sorted(f"{s}.wav" for s in SOURCES)


def test_the_doctor_command_is_still_there(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    assert "doctor" in capsys.readouterr().out


def test_checkpoint_format_is_the_trainers(checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["model_class"] == "MetaTasNet"
    model, recipe = load_model(checkpoint)
    assert isinstance(model, MetaTasNet) and recipe is None


def test_the_heap_is_trimmed_only_when_the_resident_set_grew_past_the_first_window(monkeypatch):
    import metalearn_sep.heap as module

    resident, trims = iter([1000, 1050, 1200, 1000, 1099, 1101]), []
    monkeypatch.setattr(module, "resident_bytes", lambda: next(resident))
    monkeypatch.setattr(module, "_malloc_trim", lambda: trims.append)
    guard = module.HeapGuard(slack=0.1)
    for _ in range(6):
        guard.after_window()
    assert trims == [0, 0]  # after the windows that ended at 1200 and 1101 bytes, above 1.1 x 1000


def test_the_resident_set_is_read_on_linux():
    from metalearn_sep.heap import resident_bytes

    size = resident_bytes()
    if sys.platform.startswith("linux"):
        assert size is not None and 10 * 2**20 < size < 64 * 2**30  # a Python process with torch loaded
    else:
        assert size is None or size > 0


@pytest.mark.parametrize("rate, channels", [(44100, 2), (22050, 1), (8000, 2), (48000, 1)])
def test_the_streamed_file_path_equals_separate_in_memory(tmp_path, monkeypatch, rate, channels):
    import metalearn_sep.streaming as module

    monkeypatch.setattr(module, "STATISTICS_BLOCK_SECONDS", 0.3)  # several pieces in the first and last passes too
    mixture = 0.2 * noise(channels, round(2.3 * rate), seed=rate)
    mixture[:, rate // 2 : rate] = 0.0  # a silent stretch
    path = write_audio(tmp_path / "song.wav", mixture, rate)
    model = tiny_model()
    checkpoint = Trainer(model, [], progress=False, device="cpu").save(tmp_path / "tiny.pt")
    paths = module.separate_file(path, checkpoint, tmp_path / "out", chunk_seconds=0.4, context_seconds=0.2, progress=False)
    expected = separate(model, read_audio(path)[0], rate, chunk_seconds=0.4, context_seconds=0.2)
    assert [p.name for p in paths] == [f"{s}.wav" for s in SOURCES]
    for stem, written in zip(expected, paths):
        got, got_rate = read_audio(written)
        assert got_rate == rate and got.shape == stem.shape
        torch.testing.assert_close(got, stem, rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == sorted(p.name for p in paths)  # no raw files left


def test_streamed_pieces_equal_the_whole_song_resampled(tmp_path):
    from metalearn_sep.streaming import StreamedSong

    rate, rates = 44100, [8000, 16000, 32000]
    mixture = 0.3 * noise(2, 5 * rate + 123, seed=3)
    reader = StreamedSong(write_audio(tmp_path / "song.wav", mixture, rate), rates)
    try:
        reader.measure()
        block = reader.read(0, reader.length)
        for s, stage_rate in enumerate(rates):
            whole = resample(mixture, rate, stage_rate)  # (C, T_s): what separate() normalises
            torch.testing.assert_close(reader.scales[s], whole.std(dim=-1, keepdim=True), rtol=1e-5, atol=0)
            for start in (0, reader.align * 7, reader.align * 400):
                size = 3000
                piece = reader.stage_piece(start, size, s, block, 0)
                first = start * stage_rate // rate
                torch.testing.assert_close(piece, whole[:, first : first + size], rtol=1e-5, atol=1e-6)
            tail = reader.stage_piece(reader.align * 490, 9000, s, block, 0)  # runs past the song's end: zeros there
            assert tail.shape == (2, 9000) and not tail[:, -100:].any()
    finally:
        reader.close()


@pytest.mark.parametrize("content, message", [
    ("nan", "NaN or infinite"),
    ("silent", "silent"),
    ("three channels", "1 (mono) or 2 (stereo) channels"),
    ("empty", "empty"),
    ("not audio", "Cannot read"),
])
def test_the_cli_rejects_a_bad_song_in_one_line_and_writes_nothing(tmp_path, checkpoint, capsys, content, message):
    path = tmp_path / "bad.wav"
    samples = {"nan": noise(2, 22050), "silent": torch.zeros(2, 22050), "three channels": noise(3, 22050),
               "empty": torch.zeros(2, 0)}.get(content)
    if content == "nan":
        samples[1, 20000] = float("nan")
    if samples is None:
        path.write_bytes(b"RIFF not really a wav file")
    else:
        sf.write(str(path), samples.numpy().T, 22050, subtype="FLOAT")
    assert run_cli(path, "--checkpoint", checkpoint, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_heap_keeps_large_buffers_during_separation_and_hands_them_back_after(monkeypatch):
    import metalearn_sep.heap as module

    calls = []

    class FakeLibc:
        def mallopt(self, parameter, value):
            calls.append(("mallopt", parameter, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(module, "_libc", lambda: FakeLibc())
    with pytest.raises(KeyboardInterrupt), module.reused_heap():
        assert calls == [("mallopt", -3, 1 << 30), ("mallopt", -1, 1 << 30)]  # mmap and trim thresholds raised
        raise KeyboardInterrupt
    assert calls[2:] == [("mallopt", -3, 32 << 20), ("mallopt", -1, 64 << 20), ("trim", 0)]  # restored even so
    monkeypatch.setattr(module, "_libc", lambda: None)  # another C library: nothing to tune
    with module.reused_heap():
        pass
