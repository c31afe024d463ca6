"""Tests of metalearn_sep.listen: widget tree, SI-SDR labels, level preservation, static copy, sizes."""

from __future__ import annotations

import base64
import io
import math
import re

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import numpy as np
import pytest
import soundfile as sf
import torch
from IPython.core.formatters import DisplayFormatter

from metalearn_sep.listen import (
    MAX_BYTES_PER_SECOND,
    WIDGET_VIEW_MIME,
    StemPlayer,
    common_gain,
    encode,
    mp3_supported,
    play,
)
from metalearn_sep.metrics import si_sdr

SR = 8000
NAMES = ("bass", "vocals")
GRID_ORDER = [("mixture", "mixture"), ("bass", "reference"), ("bass", "estimate"), ("vocals", "reference"), ("vocals", "estimate")]
needs_mp3 = pytest.mark.skipif(not mp3_supported(SR), reason="this libsndfile cannot encode MP3")


pytestmark = pytest.mark.usefixtures("one_thread")


def music(seconds: float, sr: int = SR, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A music-like test signal: a vibrato voice with harmonics plus decaying noise hits, peak about 0.5."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    phase = 2 * math.pi * torch.cumsum(220 * (1 + 0.03 * torch.sin(2 * math.pi * 5 * t)), 0) / sr
    voice = sum(torch.sin(k * phase) / k for k in range(1, 12)) * 0.2
    hits = (torch.rand(len(t), generator=g, dtype=torch.float64) - 0.5) * torch.exp(-25 * (t % 0.25))
    x = (voice + 0.5 * hits).float()
    return torch.stack([x, torch.roll(x, 17) * 0.9][:channels])


def excerpt(channels: int = 1, seconds: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mixture, references, estimates) of two sources, the second 20 dB quieter."""
    refs = torch.stack([music(seconds, channels=channels, seed=1), 0.1 * music(seconds, channels=channels, seed=2)])
    noise = 0.02 * torch.randn(refs.shape, generator=torch.Generator().manual_seed(3))
    return refs.sum(0), refs, refs + noise


def walk(widget: widgets.Widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def decode(data: bytes) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return samples.T


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def html_audio(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'<audio controls[^>]*src="data:audio/[a-z]+;base64,([^"]+)"', html)]


# --- widget tree --------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_widget_tree(channels):
    mix, refs, ests = excerpt(channels)
    player = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES, title="Chapter 1")
    assert isinstance(player, widgets.VBox)
    title, caption, grid = player.children
    assert isinstance(grid, widgets.GridBox) and "Chapter 1" in title.value
    assert grid.layout.grid_template_columns == "repeat(5, max-content)"
    assert len(grid.children) == 5 * 4  # header, mixture, bass, vocals rows of 5 cells
    headers = [c.value for c in grid.children[:5]]
    assert headers == ["<b></b>", "<b>reference</b>", "<b>estimate</b>", "<b>SI-SDR</b>", "<b>SI-SDRi</b>"]
    assert [grid.children[i].value for i in (5, 10)] == ["mixture", "bass"]
    players = [w for w in walk(player) if isinstance(w, widgets.Audio)]
    images = [w for w in walk(player) if isinstance(w, widgets.Image)]
    assert len(players) == len(images) == 1 + 2 * 2
    assert all(p.autoplay is False and p.loop is False and p.controls for p in players)
    assert {p.format for p in players} == {"mpeg" if mp3_supported(SR) else "wav"}
    assert all(bytes(i.value).startswith(b"\x89PNG") for i in images)
    assert sorted(player.clips) == sorted(GRID_ORDER)
    assert [bytes(p.value) for p in players] == [player.clips[k].data for k in GRID_ORDER]
    for p in players:
        audio = decode(bytes(p.value))
        assert audio.shape == (channels, 4000)
    assert ("mono" if channels == 1 else "stereo") in caption.value


def test_mixture_only_and_references_only():
    mix, refs, _ = excerpt()
    alone = StemPlayer(mix, sample_rate=SR)
    assert len(alone.children[-1].children) == 2 * 2 and alone.si_sdr == {} and list(alone.clips) == [("mixture", "mixture")]
    refs_only = StemPlayer(mix, refs, sample_rate=SR, names=NAMES)
    grid = refs_only.children[-1]
    assert len(grid.children) == 2 * 4 and refs_only.si_sdr == {}  # (name, reference) x 4 rows
    assert sum(isinstance(w, widgets.Audio) for w in walk(refs_only)) == 3


def test_si_sdr_labels_equal_metric():
    mix, refs, ests = excerpt(channels=2)
    player = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES)
    expected = si_sdr(ests.double(), refs.double()).mean(-1)
    baseline = si_sdr(mix.double().expand_as(refs), refs.double()).mean(-1)
    assert list(player.si_sdr) == list(NAMES)
    assert list(player.si_sdr.values()) == pytest.approx(expected.tolist(), abs=1e-9)
    assert list(player.si_sdr_improvement.values()) == pytest.approx((expected - baseline).tolist(), abs=1e-9)
    grid = player.children[-1].children
    for row, name in enumerate(NAMES, start=2):
        assert grid[5 * row + 3].value == f"{expected[row - 2]:.2f} dB"
        assert grid[5 * row + 4].value == f"{expected[row - 2] - baseline[row - 2]:+.2f} dB"
    assert f"bass {expected[0]:.2f}" in repr(player)


def test_silent_reference_has_no_score():
    mix, refs, ests = excerpt()
    refs[1] = 0.0
    player = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES)
    assert math.isnan(player.si_sdr["vocals"])
    assert player.children[-1].children[5 * 3 + 3].value == "n/a (silent reference)"


def test_a_comparison_has_one_column_per_separation():
    mix, refs, ests = excerpt()
    worse = ests + 0.2 * torch.randn(ests.shape, generator=torch.Generator().manual_seed(4))
    player = StemPlayer(mix, refs, {"good": ests, "worse": worse}, sample_rate=SR, names=NAMES, spectrograms=False)
    grid = player.children[-1]
    headers = [c.value for c in grid.children[:6]]
    assert headers == ["<b></b>", "<b>reference</b>", "<b>good</b>", "<b>worse</b>", "<b>SI-SDRi good</b>", "<b>SI-SDRi worse</b>"]
    assert len(grid.children) == 6 * 4
    assert not any(isinstance(w, widgets.Image) for w in walk(player))
    assert sum(isinstance(w, widgets.Audio) for w in walk(player)) == 1 + 2 * 3
    baseline = si_sdr(mix.double().expand_as(refs), refs.double()).mean(-1)
    for column, estimates in (("good", ests), ("worse", worse)):
        expected = si_sdr(estimates.double(), refs.double()).mean(-1) - baseline
        assert list(player.si_sdr_improvement[column].values()) == pytest.approx(expected.tolist(), abs=1e-9)
    assert grid.children[6 * 2 + 4].value == f"{player.si_sdr_improvement['good']['bass']:+.2f} dB"
    assert player.si_sdr_improvement["good"]["bass"] > player.si_sdr_improvement["worse"]["bass"]
    assert "SI-SDRi (dB), worse: bass" in repr(player) and "Spectrograms" not in player.html
    with_images = StemPlayer(mix, refs, {"good": ests, "worse": worse}, sample_rate=SR, names=NAMES)
    assert with_images.nbytes > player.nbytes and with_images.html.count("<img") == 7
    with pytest.raises(ValueError, match="estimate columns must be named"):
        StemPlayer(mix, refs, {"reference": ests}, sample_rate=SR, names=NAMES)
    with pytest.raises(ValueError, match="estimates 'worse' has 1 sources"):
        StemPlayer(mix, refs, {"good": ests, "worse": worse[:1]}, sample_rate=SR, names=NAMES)


# --- level preservation -------------------------------------------------------------


@pytest.mark.parametrize("audio_format", ["wav", pytest.param("mp3", marks=needs_mp3)])
def test_levels_are_kept(audio_format):
    mix, refs, ests = excerpt()
    player = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES, audio_format=audio_format)
    assert player.gain == 1.0 and "no clip is normalised" in repr(player)
    tolerance = 1e-3 if audio_format == "wav" else 0.03
    for (row, col), clip in player.clips.items():
        original = mix if row == "mixture" else (refs if col == "reference" else ests)[NAMES.index(row)]
        assert rms(decode(clip.data)) == pytest.approx(rms(original.numpy()), rel=tolerance)
    loud, quiet = decode(player.clips["bass", "reference"].data), decode(player.clips["vocals", "reference"].data)
    assert rms(loud) / rms(quiet) == pytest.approx(rms(refs[0].numpy()) / rms(refs[1].numpy()), rel=2 * tolerance)


@pytest.mark.parametrize("audio_format", ["wav", pytest.param("mp3", marks=needs_mp3)])
def test_a_peak_above_one_scales_every_clip_by_one_factor(audio_format):
    mix, refs, ests = excerpt()
    refs[0] *= 4.0  # bass (and the mixture) now peak above 1
    mix = refs.sum(0)
    peak = float(torch.stack([mix.abs().max(), refs.abs().max(), ests.abs().max()]).max())
    player = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES, audio_format=audio_format)
    assert peak > 1.0 and player.gain == pytest.approx(1 / peak)
    assert f"scaled by the same {1 / peak:.3f}" in player.children[0].value and "scaled" in repr(player)
    tolerance = 1e-3 if audio_format == "wav" else 0.03
    quiet = decode(player.clips["vocals", "reference"].data)
    assert rms(quiet) == pytest.approx(rms(refs[1].numpy()) / peak, rel=tolerance)
    loud = decode(player.clips["bass", "reference"].data)
    assert rms(loud) / rms(quiet) == pytest.approx(rms(refs[0].numpy()) / rms(refs[1].numpy()), rel=2 * tolerance)


def test_common_gain():
    assert common_gain([torch.tensor([0.5]), torch.tensor([-0.9])]) == 1.0
    assert common_gain([torch.tensor([0.5]), torch.tensor([-2.0])]) == 0.5


# --- static copy and mime bundle ----------------------------------------------------


def test_mimebundle_has_widget_view_html_and_plain_text():
    mix, refs, ests = excerpt()
    player = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES, title="A & B")
    bundle = player._repr_mimebundle_()
    assert set(bundle) == {WIDGET_VIEW_MIME, "text/html", "text/plain"}
    assert bundle[WIDGET_VIEW_MIME]["model_id"] == player.model_id
    html = bundle["text/html"]
    assert html == player.html and "<h4>A &amp; B</h4>" in html
    embedded = html_audio(html)
    assert len(embedded) == html.count("<audio") == 5
    assert embedded == [player.clips[k].data for k in GRID_ORDER]
    assert html.count('src="data:image/png;base64,') == 5
    assert bundle["text/plain"].startswith("StemPlayer 'A & B': mixture + 2 sources (bass, vocals), 8000 Hz mono, 0.50 s")
    static, _ = DisplayFormatter().format(player, exclude=[WIDGET_VIEW_MIME])
    assert set(static) == {"text/html", "text/plain"}


def test_static_copy_is_deterministic():
    mix, refs, ests = excerpt()
    first = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES)
    second = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES)
    assert first.html == second.html and repr(first) == repr(second)


def test_max_seconds_crops_what_is_embedded():
    mix, refs, ests = excerpt(seconds=0.5)
    player = StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES, max_seconds=0.25, audio_format="wav")
    assert all(decode(c.data).shape == (1, 2000) for c in player.clips.values())
    assert "the first 0.25 s of 0.50 s" in repr(player)
    assert player.si_sdr["bass"] == pytest.approx(float(si_sdr(ests[0, :, :2000].double(), refs[0, :, :2000].double()).mean()))


# --- encoding -----------------------------------------------------------------------


@needs_mp3
@pytest.mark.parametrize(("rate", "channels"), sorted(MAX_BYTES_PER_SECOND))
def test_mp3_bytes_per_second_within_documented_figure(rate, channels):
    seconds = 2.0
    clip = encode(music(seconds, sr=rate, channels=channels), rate)
    assert clip.mime == "audio/mpeg"
    assert len(clip.data) / seconds <= MAX_BYTES_PER_SECOND[rate, channels]
    assert decode(clip.data).shape == (channels, int(seconds * rate))


def test_wav_fallback_for_rates_mp3_cannot_encode():
    x = music(0.5, sr=7000)
    clip = encode(x, 7000)
    assert clip.mime == "audio/wav" and len(clip.data) == 44 + 2 * 3500  # 16-bit PCM
    assert np.allclose(decode(clip.data), x.numpy(), atol=1 / 32767)
    with pytest.raises(ValueError, match="cannot encode MP3 at 7000 Hz"):
        encode(x, 7000, audio_format="mp3")
    with pytest.raises(ValueError, match="audio_format"):
        encode(x, 7000, audio_format="ogg")


def test_play_is_level_preserving_html():
    quiet = play(0.05 * music(0.25)[0], SR, audio_format="wav")
    (data,) = html_audio(quiet.data)
    assert rms(decode(data)) == pytest.approx(rms(0.05 * music(0.25)[0].numpy()), rel=1e-3)
    assert "scaled" not in quiet.data
    loud = play(4 * music(0.25), SR, audio_format="wav")
    (data,) = html_audio(loud.data)
    assert np.abs(decode(data)).max() == pytest.approx(1.0, abs=1e-4) and "scaled" in loud.data


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m, r, e: (m[..., :-1], r, e), r"references must have the mixture's \(channel, time\) shape \(1, 3999\)"),
        (lambda m, r, e: (m, r, e[:1]), "estimates has 1 sources but names has 2"),
        (lambda m, r, e: (m[0], r, e), r"mixture must be \(channel, time\)"),
        (lambda m, r, e: (m.repeat(3, 1), r, e), "1 \\(mono\\) or 2 \\(stereo\\) channels"),
        (lambda m, r, e: (m, r.masked_fill(r > 0.4, float("nan")), e), "references contains NaN"),
        (lambda m, r, e: (m, r.numpy().astype(np.int16), e), "floating point"),
        (lambda m, r, e: (m.tolist(), r, e), "torch.Tensor or a numpy array"),
    ],
)
def test_bad_input_is_one_clear_sentence(change, message):
    mix, refs, ests = change(*excerpt())
    with pytest.raises(ValueError, match=message):
        StemPlayer(mix, refs, ests, sample_rate=SR, names=NAMES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": None}, "needs sample_rate"),
        ({"sample_rate": 8000.5}, "positive integer"),
        ({"names": ("bass", "bass")}, "distinct strings"),
        ({"names": ("bass", "mixture")}, "other than 'mixture'"),
        ({"names": ("bass",)}, "references has 2 sources but names has 1"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"audio_format": "flac"}, "audio_format"),
    ],
)
def test_bad_arguments(kwargs, message):
    mix, refs, ests = excerpt()
    arguments = {"sample_rate": SR, "names": NAMES} | kwargs
    with pytest.raises(ValueError, match=message):
        StemPlayer(mix, refs, ests, **arguments)
