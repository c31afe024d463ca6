"""Tests of the listening lab's widgets: Mixer arithmetic, Compare scores, ABX bookkeeping and secrecy, loudness."""

from __future__ import annotations

import csv
import io
import math

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.stats import binomtest

from metalearn_sep import SOURCES
from metalearn_sep.listen import (
    ABX,
    Compare,
    Interpolation,
    Mixer,
    binomial_p_value,
    integrated_loudness,
    interpolated_extractor,
    match_loudness,
    residual_db,
)
from metalearn_sep.metrics import si_sdr
from test_listen import decode, excerpt, html_audio, music, walk

SR = 8000
NAMES = ("bass", "vocals")
pytestmark = pytest.mark.usefixtures("one_thread")


def wav(data: bytes) -> torch.Tensor:
    return torch.from_numpy(decode(data)).float()


def classes(widget: widgets.Widget) -> set[str]:
    return set(widget._dom_classes)


def find(root: widgets.Widget, css: str) -> list[widgets.Widget]:
    return [w for w in walk(root) if css in classes(w)]


def sine(freq: float, seconds: float, sr: int, amplitude: float = 1.0, channels: int = 1) -> torch.Tensor:
    t = torch.arange(round(seconds * sr), dtype=torch.float64) / sr
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float().expand(channels, -1).clone()


# --- Mixer ------------------------------------------------------------------------------


def mixer(**kwargs) -> tuple[Mixer, torch.Tensor, torch.Tensor, torch.Tensor]:
    mix, refs, ests = excerpt(seconds=1.0)
    return Mixer(mix, refs, ests, sample_rate=SR, names=NAMES, audio_format="wav", **kwargs), mix, refs, ests


def test_mixer_plays_estimates_plus_residual_which_is_the_mixture():
    m, mix, refs, ests = mixer()
    assert list(m.stems) == ["bass", "vocals", "residual"]
    torch.testing.assert_close(m.stems["residual"]["estimate"], mix - ests.sum(0))
    torch.testing.assert_close(m.mix(), mix, atol=1e-6, rtol=0)
    assert m.gain == 1.0
    torch.testing.assert_close(wav(m.output.value), mix, atol=1 / 32767 + 1e-6, rtol=0)  # level as given


def test_mute_solo_gain_and_source_arithmetic():
    m, mix, refs, ests = mixer()
    residual = mix - ests.sum(0)
    m.set("bass", mute=True)
    torch.testing.assert_close(m.mix(), ests[1] + residual)
    m.set("vocals", solo=True)  # a solo wins over everything else, mutes included
    torch.testing.assert_close(m.mix(), ests[1])
    m.set("bass", solo=True)
    torch.testing.assert_close(m.mix(), ests[1] + ests[0])
    m.set("vocals", gain_db=-6.0, source="reference")
    torch.testing.assert_close(m.mix(), 10 ** (-6 / 20) * refs[1] + ests[0])
    assert m.describe() == "Playing bass (estimate, +0.0 dB) + vocals (reference, -6.0 dB)"
    for stem in m.stems:
        m.set(stem, mute=True, solo=False)
    assert m.audible() == [] and float(m.mix().abs().max()) == 0.0 and "nothing" in m.describe()


def test_muting_changes_what_plays_and_unmuting_restores_it():
    m, *_ = mixer()
    before = m.output.value
    mute = find(m, "metalearn-sep-mute-bass")
    assert len(mute) == 1 and isinstance(mute[0], widgets.ToggleButton)
    mute[0].value = True  # as a click in the browser does
    assert m.output.value != before
    mute[0].value = False
    assert m.output.value == before
    assert len(find(m, "metalearn-sep-mixer-output")) == 1 and len(find(m, "metalearn-sep-mute")) == 3


def test_a_mix_that_would_clip_gets_one_common_gain_shown_in_the_caption():
    mix, refs, ests = excerpt(seconds=1.0)
    m = Mixer(3 * mix, 3 * refs, 3 * ests, sample_rate=SR, names=NAMES, audio_format="wav")
    peak = float(m.mix().abs().max())
    assert peak > 1 and m.gain == pytest.approx(1 / peak)
    torch.testing.assert_close(wav(m.output.value), m.mix() / peak, atol=1 / 32767 + 1e-6, rtol=0)
    assert "scaled by the same" in m._caption.value and "dB" in m._caption.value
    m.set("bass", mute=True)  # the quieter vocals + residual alone do not clip: no gain
    assert m.gain == 1.0 and "No clipping" in m._caption.value


def test_mixer_static_copy_and_references_only():
    mix, refs, _ = excerpt(seconds=0.5)
    m = Mixer(mix, refs, None, sample_rate=SR, names=NAMES, audio_format="wav")
    assert list(m.stems) == ["bass", "vocals"]  # no residual without estimates
    clips = html_audio(m.html)
    assert len(clips) == 3 and "needs a live kernel" in m.html
    np.testing.assert_allclose(decode(clips[1]), refs[0].numpy(), atol=1 / 32767 + 1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"references": None, "estimates": None}, "nothing to mix"),
    ({"sample_rate": None}, "needs sample_rate"),
    ({"names": ("bass", "residual")}, "names must be distinct"),
])
def test_mixer_bad_input(kwargs, message):
    mix, refs, ests = excerpt()
    args = {"references": refs, "estimates": ests, "sample_rate": SR, "names": NAMES} | kwargs
    with pytest.raises(ValueError, match=message):
        Mixer(mix, **args)


def test_mixer_set_names_the_problem():
    m, *_ = mixer()
    with pytest.raises(ValueError, match="Unknown stem 'drums'"):
        m.set("drums", mute=True)
    with pytest.raises(ValueError, match="residual has no 'reference'"):
        m.set("residual", source="reference")


# --- Compare -----------------------------------------------------------------------------


def test_compare_scores_best_cells_and_residual():
    mix, refs, ests = excerpt(seconds=1.0)
    worse = refs + 0.1 * torch.randn(refs.shape, generator=torch.Generator().manual_seed(9))
    c = Compare(mix, refs, {"good": ests, "worse": worse}, sample_rate=SR, names=NAMES)
    for system, x in (("good", ests), ("worse", worse)):
        expected = si_sdr(x.double(), refs.double()).mean(-1)
        assert [c.si_sdr[system][n] for n in NAMES] == pytest.approx(expected.tolist(), abs=1e-6)
        energy = (mix.double() - x.double().sum(0)).pow(2).sum() / mix.double().pow(2).sum()
        assert c.residual_db[system] == pytest.approx(10 * math.log10(float(energy)), abs=1e-9)
    assert c.best == {"bass": "good", "vocals": "good", "residual": "good"}
    cells = find(c, "metalearn-sep-compare-cell")
    # mixture, reference per source, then per system: each source and its residual
    assert len(cells) == 1 + len(NAMES) + 2 * (len(NAMES) + 1)
    assert all(sum(isinstance(w, widgets.Audio) for w in walk(cell)) == 1 for cell in cells)
    assert len(find(c, "metalearn-sep-best")) == 3
    assert len(html_audio(c.html)) == len(cells) and c.html.count("★ best</small>") == 3


def test_compare_silent_reference_has_no_best_and_residual_of_exact_sum_is_minus_inf():
    mix, refs, ests = excerpt(seconds=0.5)
    refs = refs.clone()
    refs[1] = 0
    c = Compare(refs.sum(0), refs, {"exact": refs.clone(), "noisy": ests}, sample_rate=SR, names=NAMES)
    assert math.isnan(c.si_sdr["exact"]["vocals"]) and "vocals" not in c.best
    assert c.residual_db["exact"] == -math.inf and c.best["residual"] == "exact"
    assert residual_db(mix, ests) < 0


@pytest.mark.parametrize("systems, message", [({}, "non-empty"), ({"reference": None}, "other than 'mixture'")])
def test_compare_bad_systems(systems, message):
    mix, refs, _ = excerpt()
    with pytest.raises(ValueError, match=message):
        Compare(mix, refs, systems, sample_rate=SR, names=NAMES)


# --- loudness ----------------------------------------------------------------------------


@pytest.mark.parametrize("sr", [48000, 8000])
def test_loudness_of_a_full_scale_997_hz_sine_is_minus_3_01_lufs(sr):
    # ITU-R BS.1770-4, 2.1: a 0 dB FS 1 kHz sine in one channel reads -3.01 LKFS (tolerance 0.1 LU at 48 kHz;
    # at 8 kHz the K-weighting's bilinear-transform filters drift by 0.18 dB, measured).
    tolerance = 0.1 if sr == 48000 else 0.25
    assert integrated_loudness(sine(997, 5, sr), sr) == pytest.approx(-3.01, abs=tolerance)
    mono = integrated_loudness(sine(997, 5, sr, 0.1), sr)
    assert mono == pytest.approx(integrated_loudness(sine(997, 5, sr), sr) - 20, abs=1e-6)
    assert integrated_loudness(sine(997, 5, sr, 0.1, channels=2), sr) == pytest.approx(mono + 10 * math.log10(2), abs=1e-6)


def test_match_loudness_turns_down_to_the_quietest():
    quiet, loud = 0.1 * music(3.0, seed=1), 0.5 * music(3.0, seed=2)
    matched, gains = match_loudness([quiet, loud], SR)
    levels = [integrated_loudness(x, SR) for x in matched]
    assert levels[0] == pytest.approx(levels[1], abs=1e-6) and gains[0] == 0.0 and gains[1] < 0


@pytest.mark.parametrize("clip, message", [(torch.zeros(1, SR), "silent"), (torch.ones(1, SR // 4) * 0.1, "at least 0.4 s")])
def test_loudness_bad_input(clip, message):
    with pytest.raises(ValueError, match=message):
        integrated_loudness(clip, SR)


# --- ABX ---------------------------------------------------------------------------------


def test_binomial_p_value_equals_scipy():
    for n in range(1, 17):
        for k in range(n + 1):
            assert binomial_p_value(k, n) == pytest.approx(binomtest(k, n, 0.5, alternative="greater").pvalue, rel=1e-12)
    with pytest.raises(ValueError, match="0 <= correct <= trials"):
        binomial_p_value(5, 4)


def abx(trials: int = 6, seed: int = 0) -> ABX:
    a, b = music(4.0, seed=1), 0.3 * music(4.0, seed=1) + 0.05 * music(4.0, seed=5)
    return ABX(a, b, sample_rate=SR, names=("system one", "system two"), trials=trials, seconds=1.0, seed=seed,
               audio_format="wav")


def players(test: ABX) -> list[widgets.Audio]:
    found = find(test, "metalearn-sep-abx-player")
    assert len(found) == 3 and all(isinstance(p, widgets.Audio) for p in found)
    return found


def test_abx_bookkeeping_score_and_p_value():
    test = abx(trials=6)
    assert test.answered == 0 and test._reveal_button.disabled
    with pytest.raises(ValueError, match="Answer all 6 trials first"):
        test.reveal()
    truth = []
    for i in range(6):
        truth.append(test.trials[-1].x_is)
        test.answer(truth[-1] if i < 5 else {"A": "B", "B": "A"}[truth[-1]])  # five right, one wrong
    assert test.answered == 6 and not test._reveal_button.disabled and len(test.trials) == 6
    with pytest.raises(ValueError, match="All 6 trials are answered"):
        test.answer("A")
    summary = test.reveal()
    assert test.score == 5 and f"p = {binomial_p_value(5, 6):.3g}" in summary and "Score 5/6" in test._result.value
    rows = test.table()
    assert [r["x_is"] for r in rows] == truth and [r["correct"] for r in rows] == [True] * 5 + [False]
    assert rows[0]["x_was"] == {"A": "system one", "B": "system two"}[truth[0]]


def test_abx_draws_are_seeded_and_use_both_answers():
    draws = [[t.x_is for t in abx(trials=1, seed=s).trials] for s in range(12)]
    assert draws == [[t.x_is for t in abx(trials=1, seed=s).trials] for s in range(12)]
    assert {d[0] for d in draws} == {"A", "B"}


def test_abx_levels_are_matched_by_loudness():
    test = abx()
    a, b, x = (wav(p.value) for p in players(test))
    assert test.gains_db["B"] == 0.0 and test.gains_db["A"] < -5  # A was louder, so it was turned down
    # whole clips are matched exactly; a 1 s excerpt of them lands within a fraction of a dB
    assert integrated_loudness(a, SR) == pytest.approx(integrated_loudness(b, SR), abs=0.5)


def test_abx_page_does_not_reveal_x():
    test = abx(trials=8)
    ids = [p.model_id for p in players(test)]
    for _ in range(8):
        a, b, x = (p.value for p in players(test))
        assert x != a and x != b  # own dither: no byte equality to spot
        secret = test.trials[-1].x_is
        decoded = {k: wav(v) for k, v in zip("ABX", (a, b, x))}
        assert (decoded["X"] - decoded[secret]).abs().max() <= 2 / 32767 + 1e-6  # ...yet X is that clip
        text = " ".join(str(w.value) for w in walk(test) if isinstance(w, (widgets.HTML, widgets.Label)))
        assert "system one" not in text and "system two" not in text and test._result.value == ""
        test.answer("A")
    assert [p.model_id for p in players(test)] == ids  # the same three players: order reveals nothing
    assert len(html_audio(test.html)) == 2 and "X is" not in test.html  # the static copy: A and B only


def test_abx_csv_round_trip(tmp_path):
    test = abx(trials=2)
    with pytest.raises(ValueError, match="secret until reveal"):
        test.table()
    test.answer("A")
    test.answer("B")
    test.reveal()
    path = test.to_csv(tmp_path / "out" / "abx.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["answer"] for r in rows] == ["A", "B"] and [r["x_is"] for r in rows] == [t.x_is for t in test.trials]
    assert sorted(p.name for p in path.parent.iterdir()) == ["abx.csv"]  # no temporary file left


@pytest.mark.parametrize("kwargs, message", [
    ({"b": music(2.0, channels=2)}, "same \\(channel, time\\) shape"),
    ({"seconds": 0.2}, "at least 0.4"),
    ({"seconds": 9.0}, "clips last only"),
    ({"trials": 0}, "positive whole number"),
    ({"names": ("one",)}, "two non-empty strings"),
    ({"b": torch.zeros(1, 2 * SR)}, "silent"),
])
def test_abx_bad_input(kwargs, message):
    args = {"a": music(2.0), "b": music(2.0, seed=4), "sample_rate": SR, "seconds": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        ABX(**args)


# --- Interpolation ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_model():
    from metalearn_sep.pretrained import pretrained

    return pretrained("chapter-03-generated")


def test_interpolation_moves_from_one_instrument_to_the_other(generated_model):
    from metalearn_sep.data.band import synthesize

    stems = synthesize(3, SR, 4.0)
    slider = Interpolation(generated_model, stems.sum(0), "bass", "drums", SR, references=stems, value=0.0)
    at_bass = slider.improvements
    slider.w = 1.0  # as moving the slider does
    at_drums = slider.improvements
    assert at_bass["bass"] > 3 and at_bass["drums"] < 0, at_bass
    assert at_drums["drums"] > 3 and at_drums["bass"] < 0, at_drums
    assert "w = 1.00" in repr(slider) and len(html_audio(slider.html)) == 1


def test_interpolated_extractor_at_another_rate_and_bad_models(generated_model):
    from metalearn_sep.data.band import synthesize
    from metalearn_sep.models import MetaTasNet

    mixture = synthesize(3, 16000, 1.0).sum(0)
    out = interpolated_extractor(generated_model, mixture, SOURCES.index("bass"), SOURCES.index("drums"), 0.5, 16000)
    assert out.shape == mixture.shape and torch.isfinite(out).all()
    independent = MetaTasNet(stages=1, N=16, L=20, B=8, H=8, X=1, R=1, generated=False)
    with pytest.raises(ValueError, match="generated mode"):
        interpolated_extractor(independent, mixture, 1, 0, 0.5, 16000)
    with pytest.raises(ValueError, match="two different instrument indices"):
        interpolated_extractor(generated_model, mixture, 1, 1, 0.5, 16000)
