"""Metrics equal their references: SI-SDR's closed form, museval's BSS Eval v4 SDR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metalearn_sep.metrics import EPS, framewise_sdr, museval_sdr, si_sdr, si_sdr_improvement, sisec_aggregate


def test_si_sdr_matches_published_values():
    # torchmetrics' documented example (reference/evaluation_and_data.md §2.6)
    target = torch.tensor([3.0, -0.5, 2.0, 7.0])
    preds = torch.tensor([2.5, 0.0, 2.0, 8.0])
    assert si_sdr(preds, target).item() == pytest.approx(18.4030, abs=1e-4)
    assert si_sdr(preds, target, zero_mean=True).item() == pytest.approx(15.0918, abs=1e-4)


def test_si_sdr_closed_form_batched_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 4, 2, 1000, generator=g, dtype=torch.float64)
    est = ref + 0.3 * torch.randn(3, 4, 2, 1000, generator=g, dtype=torch.float64)
    got = si_sdr(est, ref, eps=0.0)
    r, e = ref.numpy(), est.numpy()
    alpha = (e * r).sum(-1, keepdims=True) / (r**2).sum(-1, keepdims=True)
    want = 10 * np.log10(((alpha * r) ** 2).sum(-1) / ((e - alpha * r) ** 2).sum(-1))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    assert got.shape == (3, 4, 2)
    torch.testing.assert_close(si_sdr(7.5 * est, ref), si_sdr(est, ref))
    torch.testing.assert_close(si_sdr(est + 3.0, ref, zero_mean=True), si_sdr(est, ref, zero_mean=True))
    assert not torch.allclose(si_sdr(est + 3.0, ref), si_sdr(est, ref))


def test_si_sdr_epsilon_convention_on_silent_signals():
    silent = torch.zeros(100)
    noise = torch.ones(100)
    assert si_sdr(silent, silent).item() == pytest.approx(0.0)
    assert si_sdr(noise, silent).item() == pytest.approx(10 * np.log10(EPS / (100 + EPS)), rel=1e-5)
    perfect = si_sdr(noise, noise).item()
    assert np.isfinite(perfect) and perfect == pytest.approx(10 * np.log10(100 / EPS), rel=1e-4)
    x = torch.zeros(1, 50, requires_grad=True)
    si_sdr(x, torch.zeros(1, 50)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_si_sdr_improvement_skips_silent_references():
    g = torch.Generator().manual_seed(1)
    stems = torch.randn(2, 4, 1, 800, generator=g)
    stems[0, 2] = 0
    mix = stems.sum(1)
    gain = si_sdr_improvement(stems, stems, mix)
    assert torch.isnan(gain[0, 2]) and torch.isfinite(gain[1]).all()
    assert (gain[1] > 20).all()
    with pytest.raises(ValueError, match="same shape"):
        si_sdr_improvement(stems[:, :3], stems, mix)


def test_si_sdr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 10\) and \(2, 11\)"):
        si_sdr(torch.zeros(2, 10), torch.zeros(2, 11))


def _signals(rate: int, seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    ref = rng.standard_normal((4, 2, n)) * rng.uniform(0.1, 1.0, (4, 1, 1))
    est = ref + rng.uniform(0.05, 1.0, (4, 1, 1)) * rng.standard_normal((4, 2, n))
    return est, ref


def test_framewise_sdr_equals_museval_on_random_signals_with_silences():
    rate = 4000
    est, ref = _signals(rate, 6.3, seed=0)  # a trailing partial frame, dropped by both
    ref[1, :, rate : 2 * rate] = 0  # a silent reference second -> NaN frame for all sources
    est[3, :, 3 * rate + 10 : 4 * rate + 10] = 0  # silent estimate over one frame
    ref[2, :, int(4.5 * rate) :] = 0  # a stem that stops half way through a frame
    ref[0, 0, 5 * rate : 6 * rate] = -ref[0, 1, 5 * rate : 6 * rate]  # anti-phase channels: museval calls it silent
    ours = framewise_sdr(est, ref, rate)
    theirs = museval_sdr(est, ref, rate)
    assert ours.shape == theirs.shape == (4, 6)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(ours[:, 1]).all() and np.isnan(ours[:, 5]).all()
    assert np.nanmax(np.abs(ours - theirs)) <= 0.01


def test_framewise_sdr_equals_museval_on_synthetic_band():
    from metalearn_sep.data.band import synthesize

    rate = 8000
    stems = synthesize(seed=5, sample_rate=rate, duration=4.0, stereo=True).double().numpy()
    mix = stems.sum(0, keepdims=True)
    rng = np.random.default_rng(3)
    est = 0.7 * stems + 0.3 * mix / 4 + 0.01 * rng.standard_normal(stems.shape)
    est[stems == 0] = 0  # keep the band's silent sections silent in the estimate
    if (np.abs(stems).reshape(4, -1).max(-1) == 0).any():
        pytest.skip("museval refuses a stem that is silent over the whole excerpt")
    ours, theirs = framewise_sdr(est, stems, rate), museval_sdr(est, stems, rate)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.nanmax(np.abs(ours - theirs)) <= 0.01


def test_framewise_sdr_short_signal_is_one_frame_and_perfect_is_inf():
    est, ref = _signals(1000, 0.5, seed=2)
    assert framewise_sdr(est, ref, 1000).shape == (4, 1)
    assert np.isinf(framewise_sdr(ref, ref, 1000)).all()


def test_framewise_sdr_bad_input():
    est, ref = _signals(1000, 2.0, seed=2)
    with pytest.raises(ValueError, match="same shape"):
        framewise_sdr(est[:, :, :-1], ref, 1000)
    with pytest.raises(ValueError, match=r"\(source, channel, time\)"):
        framewise_sdr(est[0], ref[0], 1000)
    est[0, 0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        framewise_sdr(est, ref, 1000)


def test_sisec_aggregate_is_median_of_frame_medians():
    a = np.array([[1.0, 2.0, np.nan, 10.0], [0.0, 0.0, 0.0, 0.0]])
    b = np.array([[3.0, np.nan, np.nan, np.nan], [1.0, 2.0, 3.0, np.nan]])
    c = np.array([[5.0, 6.0, 7.0, 8.0], [np.nan, np.nan, np.nan, np.nan]])
    # track medians: source 0 -> 2, 3, 6.5 ; source 1 -> 0, 2, NaN
    np.testing.assert_allclose(sisec_aggregate([a, b, c]), [3.0, 1.0])
    with pytest.raises(ValueError, match="at least one track"):
        sisec_aggregate([])
