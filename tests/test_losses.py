"""The Meta-TasNet objective: SI-SNR as coded, dissimilarity, similarity, and the Trainer objective."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from metalearn_sep import SOURCES
from metalearn_sep.audio import resample
from metalearn_sep.losses import (
    MetaTasNetObjective,
    clamped_si_snr,
    dissimilarity_loss,
    presence,
    si_snr_loss,
    similarity_loss,
    source_si_snr,
    stage_loss,
)
from metalearn_sep.metrics import si_sdr
from metalearn_sep.models.meta_tasnet import MetaTasNet
from metalearn_sep.train import Trainer, TrainerConfig

TINY = dict(stages=2, N=40, B=16, H=16, X=2, R=1, spec_channels=16)


def tiny_model(seed: int = 0) -> MetaTasNet:
    torch.manual_seed(seed)
    return MetaTasNet(**TINY)


def band_like(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Stems ``(batch, 4, 1, length)`` of sines at 16 kHz, a few of them silent."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    freqs = torch.tensor([90.0, 180.0, 900.0, 2400.0]).view(1, 4, 1, 1)
    stems = torch.sin(2 * math.pi * freqs * t + 6.28 * torch.rand(batch, 4, 1, 1, generator=g))
    stems = stems * (0.2 + torch.rand(batch, 4, 1, 1, generator=g))
    stems[0, 1] = 0.0
    return stems


# ----------------------------------------------------------------------------- SI-SNR


def test_clamped_si_snr_matches_its_formula_and_si_sdr_away_from_silence():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 500, generator=g)
    noise = torch.randn(3, 500, generator=g)
    noise = noise - (noise * s).sum(-1, keepdim=True) / s.pow(2).sum(-1, keepdim=True) * s  # orthogonal to s
    estimate = 2.0 * s + 0.1 * noise
    expected = 10 * torch.log10((2.0 * s).pow(2).sum(-1) / (0.1 * noise).pow(2).sum(-1))
    torch.testing.assert_close(clamped_si_snr(estimate, s), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(clamped_si_snr(estimate, s), si_sdr(estimate, s), rtol=1e-5, atol=1e-5)
    # a perfect estimate is capped by the 1e-8 energy floor, a silent reference gives 10 log10(1e-8 / ||ŝ||²)
    perfect = clamped_si_snr(s, s)
    torch.testing.assert_close(perfect, 10 * torch.log10(s.pow(2).sum(-1) / 1e-8), rtol=1e-3, atol=0.5)
    silent = clamped_si_snr(estimate, torch.zeros_like(s))
    torch.testing.assert_close(silent, 10 * torch.log10(1e-8 / estimate.pow(2).sum(-1)))
    with pytest.raises(ValueError, match="same shape"):
        clamped_si_snr(estimate, s[:, :10])


def test_source_si_snr_averages_each_source_over_present_examples_only():
    g = torch.Generator().manual_seed(1)
    refs = torch.randn(3, 4, 1, 200, generator=g)
    est = refs + 0.3 * torch.randn(3, 4, 1, 200, generator=g)
    present = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]], dtype=torch.bool)
    values = clamped_si_snr(est, refs)[..., 0]  # (3, 4)
    expected = torch.stack([values[present[:, i], i].mean() if present[:, i].any() else torch.tensor(0.0) for i in range(4)])
    torch.testing.assert_close(source_si_snr(est, refs, present), expected)
    assert source_si_snr(est, refs, present)[2] == 0


def test_existing_si_snr_loss_is_unchanged():
    stems = band_like(2, 400)
    assert si_snr_loss(stems, stems) < -70
    assert presence(stems).tolist() == [[True, False, True, True], [True, True, True, True]]


# ----------------------------------------------------------------------------- dissimilarity / similarity


def test_identical_instrument_latents_give_dissimilarity_one():
    z = torch.randn(3, 1, 8, 5).expand(3, 4, 8, 5)
    present = torch.ones(3, 4, dtype=torch.bool)
    assert dissimilarity_loss(z, present).item() == pytest.approx(1.0, abs=1e-6)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 4, 1, 1)
    assert dissimilarity_loss(z * signs, present).item() == pytest.approx(1.0, abs=1e-6)  # absolute latents


def test_latents_on_disjoint_channels_give_dissimilarity_zero():
    z = torch.zeros(2, 4, 8, 6)
    for i in range(4):
        z[:, i, 2 * i : 2 * i + 2] = torch.randn(2, 2, 6)
    assert dissimilarity_loss(z, torch.ones(2, 4, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-7)


def test_identical_latents_across_the_batch_give_similarity_one_and_opposite_minus_one():
    z = torch.randn(1, 4, 8, 5).expand(3, 4, 8, 5)
    present = torch.ones(3, 4, dtype=torch.bool)
    assert similarity_loss(z, present).item() == pytest.approx(1.0, abs=1e-6)
    flipped = torch.cat([z[:1], -z[:1]])  # no absolute value: opposite latents give -1
    assert similarity_loss(flipped, present[:2]).item() == pytest.approx(-1.0, abs=1e-6)


def test_silent_stems_are_left_out_of_both_terms():
    z = torch.randn(1, 1, 8, 5).expand(2, 4, 8, 5).clone()
    z[0, 3] = torch.randn(8, 5)  # would lower both terms, but vocals of example 0 are silent
    present = torch.ones(2, 4, dtype=torch.bool)
    present[0, 3] = False
    assert dissimilarity_loss(z, present).item() == pytest.approx(1.0, abs=1e-6)
    assert similarity_loss(z, present).item() == pytest.approx(1.0, abs=1e-6)
    present[:] = True
    assert dissimilarity_loss(z, present).item() < 0.99
    assert similarity_loss(z, present).item() < 0.99


def test_all_silent_batch_gives_finite_values_and_no_nan_gradients():
    for z in (torch.zeros(3, 4, 8, 5, requires_grad=True), torch.randn(3, 4, 8, 5, requires_grad=True)):
        silent = torch.zeros(3, 4, dtype=torch.bool)
        d, s = dissimilarity_loss(z, silent), similarity_loss(z, silent)
        assert d.item() == 0 and s.item() == 0
        (d + s).backward()
        assert torch.isfinite(z.grad).all()
    z = torch.zeros(3, 4, 8, 5, requires_grad=True)  # zero latents of present stems: still finite
    present = torch.ones(3, 4, dtype=torch.bool)
    (dissimilarity_loss(z, present) - similarity_loss(z, present)).backward()
    assert torch.isfinite(z.grad).all()


def loop_dissimilarity(z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    per_frame, count = torch.zeros(z.shape[-1], dtype=torch.float64), 0
    for b in range(z.shape[0]):
        for i in range(4):
            for j in range(i + 1, 4):
                if present[b, i] and present[b, j]:
                    per_frame += F.cosine_similarity(z[b, i].abs(), z[b, j].abs(), dim=0).double()
                    count += 1
    return (per_frame / max(count, 1)).mean()


def loop_similarity(z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    per_frame, count = torch.zeros(z.shape[-1], dtype=torch.float64), 0
    batch = z.shape[0]
    for b in range(batch):
        other = (b - 1) % batch
        for i in range(4):
            if present[b, i] and present[other, i]:
                per_frame += F.cosine_similarity(z[b, i], z[other, i], dim=0).double()
                count += 1
    return (per_frame / max(count, 1)).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_terms_equal_a_plain_loop(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(5, 4, 12, 7, generator=g)
    present = torch.rand(5, 4, generator=g) > 0.3
    assert dissimilarity_loss(z, present).item() == pytest.approx(loop_dissimilarity(z, present).item(), abs=1e-5)
    assert similarity_loss(z, present).item() == pytest.approx(loop_similarity(z, present).item(), abs=1e-5)


def test_bad_latent_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(batch, instruments, N, frames\)"):
        dissimilarity_loss(torch.zeros(2, 4, 8), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="presence mask of shape"):
        similarity_loss(torch.zeros(2, 4, 8, 3), torch.ones(2, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------- the Trainer objective


def floats(logs: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items()}


def test_objective_loss_is_the_sum_of_the_logged_terms():
    model = tiny_model()
    stems = band_like(3, 1613)
    loss, logs = MetaTasNetObjective(data_rate=16000)(model, stems.sum(1), stems)
    assert torch.isfinite(loss) and loss.requires_grad
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())  # the Trainer reads them all at once
    logs = floats(logs)
    expected = 0.0
    for s in range(2):
        sisnr = [logs[f"stage{s}_sisnr_{name}"] for name in SOURCES]
        expected += -sum(sisnr) - 0.05 * logs[f"stage{s}_rec"] + 3.0 * logs[f"stage{s}_dis"] - 2.0 * logs[f"stage{s}_sim"]
        assert 0 <= logs[f"stage{s}_dis"] <= 1 and -1 <= logs[f"stage{s}_sim"] <= 1
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["loss"] == pytest.approx(loss.item())


def test_a_weight_of_zero_removes_its_term():
    model = tiny_model()
    stems = band_like(2, 1600)
    for kept in ("rec", "dis", "sim"):
        weights = {f"lambda_{k}": (1.0 if k == kept else 0.0) for k in ("rec", "dis", "sim")}
        loss, logs = MetaTasNetObjective(data_rate=16000, **weights)(model, stems.sum(1), stems)
        logs = floats(logs)
        for s in range(2):
            assert f"stage{s}_{kept}" in logs
            assert not {f"stage{s}_{k}" for k in ("rec", "dis", "sim") if k != kept} & logs.keys()
        sign = {"rec": -1.0, "dis": 1.0, "sim": -1.0}[kept]
        expected = sum(-sum(logs[f"stage{s}_sisnr_{n}"] for n in SOURCES) + sign * logs[f"stage{s}_{kept}"] for s in range(2))
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_source_silent_in_the_whole_batch_is_logged_as_nan_and_adds_nothing():
    model = tiny_model()
    stems = band_like(2, 1600)
    stems[:, 2] = 0.0
    loss, logs = MetaTasNetObjective(data_rate=16000, lambda_rec=0, lambda_dis=0, lambda_sim=0)(model, stems.sum(1), stems)
    logs = floats(logs)
    assert math.isnan(logs["stage0_sisnr_other"]) and math.isnan(logs["stage1_sisnr_other"])
    present = [n for n in SOURCES if n != "other"]
    assert loss.item() == pytest.approx(-sum(logs[f"stage{s}_sisnr_{n}"] for s in range(2) for n in present), rel=1e-5)


def test_stage_inputs_crop_resample_and_skip_resampling_at_the_stage_rate():
    model = tiny_model()
    objective = MetaTasNetObjective(data_rate=16000)
    x = torch.randn(2, 1, 1613)
    low, high = model.stage_inputs(x, objective.data_rate)
    assert low.shape[-1] == 800 and high.shape[-1] == 1600  # T_0 = 806 rounded down to a multiple of 20
    assert torch.equal(high, x[..., :1600])
    torch.testing.assert_close(low, resample(x, 16000, 8000)[..., :800])
    padded = model.stage_inputs(x, objective.data_rate, pad=True)
    assert [p.shape[-1] for p in padded] == [820, 1640]
    assert torch.equal(padded[1][..., :1613], x) and padded[1][..., 1613:].abs().max() == 0


def test_estimate_returns_the_last_stage_at_the_data_rate():
    model = tiny_model().eval()
    objective = MetaTasNetObjective(data_rate=32000)
    mono, stereo = torch.randn(2, 1, 3217), torch.randn(2, 2, 3217)
    with torch.no_grad():
        assert objective.estimate(model, mono).shape == (2, 4, 1, 3217)
        both = objective.estimate(model, stereo)
        assert both.shape == (2, 4, 2, 3217)
        torch.testing.assert_close(both[:, :, 1:], objective.estimate(model, stereo[:, 1:]), rtol=1e-4, atol=1e-5)
        scale = mono.std(-1, keepdim=True)  # each example is normalised by its mixture's std
        inputs = model.stage_inputs(mono / scale, objective.data_rate, pad=True)
        last = model(inputs)[-1].estimates
        expected = resample(last, 16000, 32000)[..., :3217] * scale.unsqueeze(1)
        torch.testing.assert_close(objective.estimate(model, mono), expected)
        # so the estimates follow the input's level exactly: the network always sees unit level
        torch.testing.assert_close(objective.estimate(model, 5.0 * mono), 5.0 * objective.estimate(model, mono))


def test_dissimilarity_and_similarity_train_the_encoder_only():
    model = tiny_model()
    stems = band_like(2, 1600)
    inputs = model.stage_inputs(torch.cat([stems.sum(1, keepdim=True), stems], 1), 16000)
    out = model([x[:, 0] for x in inputs])[0]
    terms = stage_loss(model.stages[0], out, inputs[0][:, 0], inputs[0][:, 1:], presence(stems), 0.0, 1.0, 1.0)
    (terms.dissimilarity - terms.similarity).backward()
    encoder = [p.grad for p in model.stages[0].encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in encoder)
    assert all(p.grad is None for p in model.stages[0].masker.parameters())
    assert all(p.grad is None for p in model.stages[0].decoder.parameters())


def test_bad_rates_models_and_shapes_are_named():
    model = tiny_model()
    stems = band_like(2, 1600)
    with pytest.raises(ValueError, match="data is at 8000 Hz.*16000"):
        MetaTasNetObjective(data_rate=8000)(model, stems.sum(1), stems)
    with pytest.raises(ValueError, match="data_rate must be a positive integer"):
        MetaTasNetObjective(data_rate=0)
    with pytest.raises(ValueError, match="lambda_dis must be"):
        MetaTasNetObjective(data_rate=16000, lambda_dis=-1)
    with pytest.raises(ValueError, match="trains a MetaTasNet, got a Linear"):
        MetaTasNetObjective(data_rate=16000)(torch.nn.Linear(2, 2), stems.sum(1), stems)
    with pytest.raises(ValueError, match=r"stems of shape \(2, 4, 1, 1600\)"):
        MetaTasNetObjective(data_rate=16000)(model, stems.sum(1), stems[:, :3])
    with pytest.raises(ValueError, match="shorter than one latent frame"):
        MetaTasNetObjective(data_rate=16000)(model, stems[..., :30].sum(1), stems[..., :30])


def test_a_few_trainer_steps_lower_the_loss_on_a_fixed_batch():
    stems = band_like(2, 1600, seed=3)
    data = TensorDataset(stems.sum(1), stems)
    trainer = Trainer(
        tiny_model(), data, data, TrainerConfig(batch_size=2, lr=3e-3, valid_every=6),
        objective=MetaTasNetObjective(data_rate=16000), device="cpu", progress=False,
    )
    history = trainer.fit(6)
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    assert {"stage1_sisnr_vocals", "stage0_dis", "stage1_sim", "valid_mean"} <= history[-1].keys()
    assert math.isfinite(history[-1]["valid_mean"])


def test_resampling_and_cosines_stay_float32_under_bf16_autocast():
    model = tiny_model()
    objective = MetaTasNetObjective(data_rate=16000)
    stems = band_like(2, 1600)
    reference = model.stage_inputs(stems.sum(1), objective.data_rate)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inputs = model.stage_inputs(stems.sum(1), objective.data_rate)
        z = torch.randn(2, 4, 8, 5)
        cosines = dissimilarity_loss(z, torch.ones(2, 4, dtype=torch.bool))
    assert all(x.dtype == torch.float32 and torch.equal(x, r) for x, r in zip(inputs, reference))
    assert cosines.dtype == torch.float32
    assert cosines.item() == pytest.approx(dissimilarity_loss(z, torch.ones(2, 4, dtype=torch.bool)).item(), abs=1e-6)
