"""Whole-song separation: rates, lengths, channels, exact chunking, least-squares rescaling, bad input, the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_sep import SOURCES
from metalearn_sep.__main__ import main
from metalearn_sep.audio import read_audio, resample, write_audio
from metalearn_sep.models.conv_tasnet import ConvTasNet
from metalearn_sep.models.meta_tasnet import MetaTasNet
from metalearn_sep.separate import ModelSpec, least_squares_gains, load_model, plan_windows, separate
from metalearn_sep.train import CHECKPOINT_FORMAT, Trainer

TINY = dict(N=40, B=16, H=16, X=2, R=1, spec_channels=16)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0) -> MetaTasNet:
    torch.manual_seed(seed)
    return MetaTasNet(**TINY)


def noise(channels: int, samples: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(channels, samples, generator=torch.Generator().manual_seed(seed))


def filters(seed: int = 0) -> torch.Tensor:
    """Four 5-tap FIR filters ``(4, 1, 5)`` that sum to a unit impulse (so their outputs sum to the input)."""
    h = 0.5 * torch.randn(4, 1, 5, generator=torch.Generator().manual_seed(seed))
    h[3] = -h[:3].sum(0)
    h[3, 0, 2] += 1.0
    return h


class LocalStage(nn.Module):
    """One stage of :class:`LocalStages`: estimates h_i * x + 0.1 * (previous latents upsampled 2x); latents x + that."""

    def __init__(self, first: bool) -> None:
        super().__init__()
        self.register_buffer("h", filters())
        self.first = first

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None) -> SimpleNamespace:
        assert (previous is None) == self.first and x.shape[-1] % 20 == 0
        carried = 0.0 if previous is None else previous.repeat_interleave(2, dim=-1)
        assert previous is None or carried.shape == x.shape
        return SimpleNamespace(estimates=(F.conv1d(x, self.h, padding=2) + 0.1 * carried).unsqueeze(2), latents=x + carried)


class LocalStages(nn.Module):
    """A 3-stage stub (8/16/32 kHz, stride 20) with a receptive field of a few samples: exactly shift invariant.

    Each stage adds the previous stage's latents, upsampled, so a stage input that is
    misaligned with the others changes the output.
    """

    sample_rates = [8000, 16000, 32000]
    stride = 20

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([LocalStage(True), LocalStage(False), LocalStage(False)])
        self.calls = 0
        self.stages[0].register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))


class GainedFilters(nn.Module):
    """A single-rate stub: source i = g_i (h_i * x). The true stems are h_i * x, which sum to x."""

    def __init__(self, gains: list[float], rate: int | None = 8000) -> None:
        super().__init__()
        self.register_buffer("h", filters(1))
        self.register_buffer("gains", torch.tensor(gains).view(1, -1, 1))
        self.config = {} if rate is None else {"sample_rate": rate}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.conv1d(x, self.h, padding=2) * self.gains).unsqueeze(2)

    def stems(self, mixture: torch.Tensor) -> torch.Tensor:
        """The true stems ``(4, C, T)`` of ``mixture`` ``(C, T)``."""
        return F.conv1d(mixture.unsqueeze(1), self.h, padding=2).transpose(0, 1)


class Refuses(nn.Module):
    """A model that must not be reached: bad input has to be rejected before any work."""

    sample_rates = [8000]

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([self.Stage()])

    class Stage(nn.Module):
        def forward(self, mixture, previous):
            raise AssertionError("the model was called")


# ----------------------------------------------------------------------------- shapes and rates
@pytest.mark.parametrize("rate", [44100, 22050, 8000])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_rate_and_length_gives_stems_of_the_same_rate_and_length(rate, channels):
    length = int(1.3 * rate) + 7  # a multiple of nothing in particular
    mixture = noise(channels, length)
    stems = separate(tiny_model(), mixture, rate, chunk_seconds=0.5, context_seconds=0.25)
    assert stems.shape == (len(SOURCES), channels, length)
    assert stems.dtype == torch.float32 and torch.isfinite(stems).all()
    # The least-squares step leaves a residual orthogonal to every rescaled stem, per channel.
    residual = mixture - stems.sum(0)
    inner = torch.einsum("kct,ct->kc", stems.double(), residual.double())
    assert inner.abs().max() < 1e-6 * mixture.double().square().sum()


@pytest.mark.parametrize("batch_channels", [False, True])
def test_stereo_equals_two_mono_calls(batch_channels):
    model, mixture = tiny_model(), noise(2, 30000, seed=1)
    stereo = separate(model, mixture, 44100, chunk_seconds=0.25, context_seconds=0.1, batch_channels=batch_channels)
    for c in range(2):
        mono = separate(model, mixture[c : c + 1], 44100, chunk_seconds=0.25, context_seconds=0.1)
        torch.testing.assert_close(stereo[:, c : c + 1], mono, rtol=1e-5, atol=1e-5)


def test_one_window_equals_the_models_own_forward_on_the_normalised_stage_inputs():
    """The MetaTasNet path by hand: resample to 8/16/32 kHz, divide by each stage's std, pad, last stage."""
    model, rate = tiny_model().eval(), 32000
    mixture = noise(1, 35203, seed=2)
    got = separate(model, mixture, rate, chunk_seconds=10.0, rescale=False)
    base = -(-mixture.shape[-1] // 4)  # samples at 8 kHz covering the song
    window = -(-base // 20) * 20
    inputs = []
    for s, stage_rate in enumerate(model.sample_rates):
        x = resample(mixture, rate, stage_rate)
        x = x / x.std()
        inputs.append(F.pad(x, (0, window * 2**s - x.shape[-1])).unsqueeze(1))
    with torch.no_grad():
        expected = model(inputs)[-1].estimates[:, :, 0, : mixture.shape[-1]].transpose(0, 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_normalisation_makes_the_raw_output_independent_of_the_input_level():
    model, mixture = tiny_model(), noise(2, 20000, seed=3)
    quiet = separate(model, mixture, 16000, chunk_seconds=0.5, context_seconds=0.25, rescale=False)
    loud = separate(model, 8.0 * mixture, 16000, chunk_seconds=0.5, context_seconds=0.25, rescale=False)
    torch.testing.assert_close(loud, quiet, rtol=1e-4, atol=1e-5)
    rescaled = separate(model, 8.0 * mixture, 16000, chunk_seconds=0.5, context_seconds=0.25)
    torch.testing.assert_close(rescaled, 8.0 * separate(model, mixture, 16000, chunk_seconds=0.5, context_seconds=0.25), rtol=1e-4, atol=1e-4)


def test_bf16_autocast_runs_the_model_only_and_returns_float32():
    model, mixture = tiny_model(), noise(2, 22050, seed=7)
    exact = separate(model, mixture, 44100, chunk_seconds=0.5, context_seconds=0.25)
    rounded = separate(model, mixture, 44100, chunk_seconds=0.5, context_seconds=0.25, amp=True, device="cpu")
    assert rounded.dtype == torch.float32
    error = (rounded - exact).square().sum() / exact.square().sum()
    assert 0 < error < 1e-2  # bf16 differs, but only by rounding


# ----------------------------------------------------------------------------- chunking
def test_windows_tile_the_song_with_clipped_context_and_legal_lengths():
    windows = plan_windows(total=1000, core=240, context=80, multiple=20, minimum=290)
    assert [(w.core_start, w.core_stop) for w in windows] == [(0, 240), (240, 480), (480, 720), (720, 960), (960, 1000)]
    assert [w.start for w in windows] == [0, 160, 400, 640, 880]
    assert [w.length for w in windows] == [320, 400, 400, 360, 300]  # the last one: 120 samples, padded to the minimum
    assert all(w.length % 20 == 0 and w.start <= w.core_start and w.core_stop <= w.start + w.length for w in windows)
    assert len(plan_windows(total=10, core=240, context=80, multiple=20, minimum=520)) == 1


@pytest.mark.parametrize("rate", [44100, 22050, 11025, 8000, 48000])
def test_chunked_equals_whole_song_when_the_context_covers_the_receptive_field(rate):
    """Exact, before rescaling: borders on a common grid, whole-song std, windows resampled back in phase."""
    model, mixture = LocalStages(), noise(2, int(2.3 * rate) + 7, seed=4)
    chunked = separate(model, mixture, rate, chunk_seconds=0.3, context_seconds=0.05, rescale=False)
    assert model.calls == 16  # 8 windows x 2 channels
    whole = separate(model, mixture, rate, chunk_seconds=100.0, context_seconds=0.05, rescale=False)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5 * whole.abs().max().item())
    without_context = separate(model, mixture, rate, chunk_seconds=0.3, context_seconds=0.0, rescale=False)
    assert (without_context - whole).abs().max() > 0.01 * whole.abs().max()  # the context is what makes it exact


def test_progress_bar_counts_the_windows(capsys):
    separate(LocalStages(), noise(2, 8000), 8000, chunk_seconds=0.25, context_seconds=0.05, progress=True)
    assert "8/8" in capsys.readouterr().err  # 4 windows x 2 channels


# ----------------------------------------------------------------------------- least squares
def test_least_squares_gains_undo_per_stem_gains():
    stems, gains = noise(4, 3000).view(4, 1, 3000).repeat(1, 2, 1), torch.tensor([[0.5, 2.0], [-3.0, 1.0], [7.0, 0.1], [0.2, 4.0]])
    coefficients = least_squares_gains(stems * gains[..., None], stems.sum(0))
    torch.testing.assert_close(coefficients, 1 / gains, rtol=1e-4, atol=1e-6)


def test_a_silent_estimate_gets_a_zero_gain_not_nan():
    stems = noise(4, 2000).view(4, 1, 2000)
    stems[2] = 0.0
    coefficients = least_squares_gains(stems, stems.sum(0))
    torch.testing.assert_close(coefficients, torch.tensor([[1.0], [1.0], [0.0], [1.0]]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 2])
def test_rescaling_recovers_the_true_stems_from_arbitrarily_scaled_estimates(channels):
    model = GainedFilters([0.3, -2.0, 5.0, 0.07])
    mixture = noise(channels, 9001, seed=5)
    stems = separate(model, mixture, 8000, chunk_seconds=0.25, context_seconds=0.05)
    truth = model.stems(mixture)
    torch.testing.assert_close(stems, truth, rtol=1e-4, atol=1e-4 * truth.abs().max().item())
    raw = separate(model, mixture, 8000, chunk_seconds=0.25, context_seconds=0.05, rescale=False)
    assert (raw - truth).abs().max() > 0.5 * truth.abs().max()  # the model alone got the scales wrong


def test_single_rate_model_rate_comes_from_the_argument_or_the_config():
    mixture = noise(1, 4410)
    from_config = separate(GainedFilters([1, 1, 1, 1], rate=8000), mixture, 44100, chunk_seconds=1.0)
    from_argument = separate(GainedFilters([1, 1, 1, 1], rate=None), mixture, 44100, chunk_seconds=1.0, model_rate=8000)
    torch.testing.assert_close(from_config, from_argument)
    with pytest.raises(ValueError, match="model_rate"):
        separate(GainedFilters([1, 1, 1, 1], rate=None), mixture, 44100)
    with pytest.raises(ValueError, match="contradicts"):
        separate(tiny_model(), mixture, 44100, model_rate=16000)


def test_meta_tasnet_length_constraints_are_read_from_the_model():
    spec = ModelSpec.of(tiny_model())
    assert spec.rates == (8000, 16000, 32000) and spec.multiple == 20 and spec.minimum == 513 and spec.multi_stage
    stems = separate(tiny_model(), noise(1, 50), 44100)  # 1.1 ms: padded to the model's minimum and cropped back
    assert stems.shape == (4, 1, 50)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "mixture, rate, kwargs, message",
    [
        (torch.zeros(2, 0), 44100, {}, "empty"),
        (torch.zeros(2, 1000), 44100, {}, "silent"),
        (torch.tensor([[0.1, float("nan"), 0.2]]), 44100, {}, "NaN or infinite"),
        (torch.tensor([[0.1, float("inf"), 0.2]]), 44100, {}, "NaN or infinite"),
        (torch.ones(3, 1000), 44100, {}, "1 \\(mono\\) or 2 \\(stereo\\) channels, got 3"),
        (torch.ones(1000), 44100, {}, "\\(channels, time\\).*got shape \\(1000,\\)"),
        (torch.ones(1, 2, 1000), 44100, {}, "\\(channels, time\\).*got shape \\(1, 2, 1000\\)"),
        ([[0.1, 0.2]], 44100, {}, "got list"),
        (torch.ones(1, 1000), 0, {}, "sample_rate must be a positive integer"),
        (torch.ones(1, 1000), -44100, {}, "sample_rate must be a positive integer"),
        (torch.ones(1, 1000), 44100, {"chunk_seconds": 0}, "chunk_seconds"),
        (torch.ones(1, 1000), 44100, {"context_seconds": -1.0}, "context_seconds"),
    ],
)
def test_bad_input_is_rejected_with_one_sentence_before_any_work(mixture, rate, kwargs, message):
    with pytest.raises(ValueError, match=message):
        separate(Refuses(), mixture, rate, **kwargs)


# ----------------------------------------------------------------------------- the command line
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
    expected = separate(load_model(checkpoint), mixture, rate, chunk_seconds=0.5, context_seconds=0.25)
    for source, stem in zip(SOURCES, expected):
        info = sf.info(str(folder / f"{source}.wav"))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (22050, 2, mixture.shape[-1], "FLOAT")
        torch.testing.assert_close(read_audio(folder / f"{source}.wav")[0], stem)


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
    assert result.stderr.strip().splitlines() == [f"error: {bad} is not a readable checkpoint (corrupt or truncated file: UnpicklingError)."]
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
        ({"model_class": "Demucs"}, "holds a 'Demucs' model; this command separates with MetaTasNet or ConvTasNet"),
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


def test_cli_separates_with_a_conv_tasnet_checkpoint_given_its_rate(tmp_path, song, capsys):
    torch.manual_seed(0)
    path = Trainer(ConvTasNet(N=16, L=8, B=8, H=16, Sc=8, X=2, R=1), [], progress=False, device="cpu").save(tmp_path / "conv.pt")
    assert run_cli(song, "--checkpoint", path, "--out", tmp_path / "out") == 1
    assert "--model-rate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert run_cli(song, "--checkpoint", path, "--out", tmp_path / "out", "--model-rate", 8000) == 0
    assert read_audio(tmp_path / "out" / "my song" / "vocals.wav")[0].shape == read_audio(song)[0].shape


def test_a_failed_write_leaves_neither_a_partial_folder_nor_a_new_parent(tmp_path, song, checkpoint, monkeypatch, capsys):
    import metalearn_sep.separate as module

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
    assert isinstance(load_model(checkpoint), MetaTasNet)


def test_the_heap_is_trimmed_only_when_the_resident_set_grew_past_the_first_window(monkeypatch):
    import metalearn_sep.separate as module

    resident, trims = iter([1000, 1050, 1200, 1000, 1099, 1101]), []
    monkeypatch.setattr(module, "_resident_bytes", lambda: next(resident))
    monkeypatch.setattr(module, "_malloc_trim", lambda: trims.append)
    guard = module._HeapGuard(slack=0.1)
    for _ in range(6):
        guard.after_window()
    assert trims == [0, 0]  # after the windows that ended at 1200 and 1101 bytes, above 1.1 x 1000


def test_the_resident_set_is_read_on_linux():
    from metalearn_sep.separate import _resident_bytes

    size = _resident_bytes()
    if sys.platform.startswith("linux"):
        assert size is not None and 10 * 2**20 < size < 64 * 2**30  # a Python process with torch loaded
    else:
        assert size is None or size > 0


@pytest.mark.parametrize("rate, channels", [(44100, 2), (22050, 1), (8000, 2), (48000, 1)])
def test_the_streamed_file_path_equals_separate_in_memory(tmp_path, monkeypatch, rate, channels):
    import metalearn_sep.separate as module

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
    from metalearn_sep.separate import StreamedSong

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
