"""Meta-TasNet: the original code's parameter counts, stage wiring, shapes, gradients and input checks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from metalearn_sep.models.generator import GeneratedGroupNorm, IndependentConv1d, SharedConv1d, to_independent
from metalearn_sep.models.meta_tasnet import MaskingTCN, MetaTasNet, Stage, StageOutput

TINY = dict(N=40, L=20, stride=20, B=16, H=16, X=2, R=1, P=3, spec_channels=16)
T0 = 520  # a multiple of the stride (20) and long enough for the 32 kHz spectrogram (4 T0 >= 2049)


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def mixtures(model: MetaTasNet, batch: int = 2, length: int = T0) -> list[torch.Tensor]:
    return [torch.randn(batch, 1, n) for n in model.expected_lengths(length)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tiny() -> MetaTasNet:
    torch.manual_seed(1)
    return MetaTasNet(stages=3, **TINY)


@pytest.mark.parametrize(
    ("generated", "masker", "stage"), [(True, 9_279_730, 10_061_812), (False, 6_183_080, 6_965_130)]
)
def test_one_stage_parameter_counts_equal_the_original_code(generated, masker, stage):
    model = MetaTasNet(stages=1, generated=generated)
    assert trainable(model.stages[0].masker) == masker
    assert trainable(model) == stage


def test_three_stage_parameter_counts_equal_the_original_code():
    model = MetaTasNet()
    assert [trainable(s) for s in model.stages] == [10_061_812, 13_199_988, 22_269_460]
    assert trainable(model) == 45_531_260
    assert [s.masker.in_channels for s in model.stages] == [440, 1320, 2640]  # N, then 1.5 N
    assert model.sample_rates == [8000, 16000, 32000]
    assert [s.stride for s in model.stages] == [20, 40, 80]  # 400 frames per second at every stage
    del model
    assert trainable(MetaTasNet(generated=False)) == 34_673_054


def test_config_is_json_and_rebuilds_the_model(tiny):
    config = json.loads(json.dumps(tiny.config))
    assert config == {**TINY, "stages": 3, "E1": 8, "E2": 5, "filters": 3, "base_rate": 8000, "generated": True, "film": False}
    assert trainable(MetaTasNet(**config)) == trainable(tiny)


def test_forward_shapes_masks_and_the_wiring_between_stages(tiny):
    outputs = tiny(mixtures(tiny))
    assert len(outputs) == 3 and all(isinstance(o, StageOutput) for o in outputs)
    frames = T0 // 20
    for s, out in enumerate(outputs):
        N = 40 * 2**s
        assert out.estimates.shape == (2, 4, 1, T0 * 2**s)
        assert out.latents.shape == out.masks.shape == (2, 4, N, frames)
        assert out.mixture_latent.shape == (2, N, frames)
        torch.testing.assert_close(out.masks.sum(dim=1), torch.ones(2, N, frames))
        assert (out.masks >= 0).all()
        torch.testing.assert_close(out.latents, out.mixture_latent[:, None] * out.masks)
        torch.testing.assert_close(out.latents.sum(dim=1), out.mixture_latent, atol=1e-5, rtol=1e-5)
    assert [s.masker.in_channels for s in tiny.stages] == [40, 120, 240]


def test_stage_feeds_its_masked_latents_to_the_next_stage(tiny):
    x = mixtures(tiny)
    outputs = tiny(x)
    again = tiny.stages[1](x[1], outputs[0].latents)
    torch.testing.assert_close(again.estimates, outputs[1].estimates)
    other = tiny.stages[1](x[1], torch.randn_like(outputs[0].latents))
    assert not torch.allclose(other.masks, outputs[1].masks)


def test_gradient_flows_from_the_last_stage_into_the_first(tiny):
    tiny.zero_grad(set_to_none=True)
    outputs = tiny(mixtures(tiny))
    outputs[2].estimates.square().mean().backward()
    first = tiny.stages[0]
    for name, param in [
        ("encoder", next(first.encoder.parameters())),
        ("masker", first.masker.input_conv.generator.head.weight),
        ("embedding", first.embedding.weight),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reached stage 0's {name}"
    assert first.decoder.convs[0].weight.grad is None  # stage 0's waveforms are not in this loss
    tiny.zero_grad(set_to_none=True)


def test_generated_model_equals_independent_model_holding_the_generated_weights(tiny):
    independent = MetaTasNet(stages=3, generated=False, **TINY)
    for generated_stage, stage in zip(tiny.stages, independent.stages):
        stage.encoder.load_state_dict(generated_stage.encoder.state_dict())
        stage.decoder.load_state_dict(generated_stage.decoder.state_dict())
        stage.masker = to_independent(generated_stage.masker, generated_stage.embedding())
    assert trainable(independent) == trainable(MetaTasNet(stages=3, generated=False, **TINY))
    x = mixtures(tiny)
    with torch.no_grad():
        for a, b in zip(tiny(x), independent(x)):
            assert (a.estimates - b.estimates).abs().max() <= 1e-5
            assert (a.masks - b.masks).abs().max() <= 1e-5


def test_interpolated_embeddings_generate_new_extractors(tiny):
    stage = tiny.stages[0]
    x = mixtures(tiny)[0]
    with torch.no_grad():
        reference = stage(x)
        rows = stage.embedding().clone()
        same = stage(x, embedding=torch.cat([rows[:1], stage.embedding.interpolate(1, 0, 0.0), rows[2:]]))
        torch.testing.assert_close(same.estimates, reference.estimates)
        rows[1] = stage.embedding.interpolate(1, 0, 0.5)[0]  # halfway between bass and drums
        halfway = stage(x, embedding=rows)
        assert halfway.estimates.shape == reference.estimates.shape
        torch.testing.assert_close(halfway.masks.sum(dim=1), torch.ones_like(halfway.masks[:, 0]))
        assert not torch.allclose(halfway.masks[:, 1], reference.masks[:, 1])
        alone = stage(x, embedding=rows[1:2])  # one extractor: the softmax over one row is 1
        torch.testing.assert_close(alone.latents[:, 0], alone.mixture_latent)
        five = tiny(mixtures(tiny), embeddings=[torch.randn(5, 8) for _ in tiny.stages])
    assert [o.estimates.shape[1] for o in five] == [5, 5, 5]


def test_wrong_mixture_lengths_and_shapes_are_rejected(tiny):
    good = mixtures(tiny)
    with pytest.raises(ValueError, match=r"e\.g\. \[520, 1040, 2080\].*got \[520, 1040, 2000\]"):
        tiny([good[0], good[1], good[2][..., :2000]])
    with pytest.raises(ValueError, match=r"multiple of 20 .*\[520, 1040, 2080\].*got \[530, 1060, 2120\]"):
        tiny([torch.randn(2, 1, n) for n in (530, 1060, 2120)])
    with pytest.raises(ValueError, match="sequence of 3 mixtures"):
        tiny(good[:2])
    with pytest.raises(ValueError, match="sequence of 3 mixtures"):
        tiny(good[0])
    with pytest.raises(ValueError, match=r"Mixture 1 must have shape \(batch, 1, time\), got \(2, 2, 1040\)"):
        tiny([good[0], torch.randn(2, 2, 1040), good[2]])
    with pytest.raises(ValueError, match="same batch size"):
        tiny([good[0], good[1][:1], good[2]])
    with pytest.raises(ValueError, match="one embedding"):
        tiny(good, embeddings=[None])


def test_bad_stage_inputs_are_rejected(tiny):
    x = mixtures(tiny)
    previous = tiny.stages[0](x[0]).latents
    with pytest.raises(ValueError, match=r"previous stage's latents of shape \(2, 4, 40, 26\), got None"):
        tiny.stages[1](x[1])
    with pytest.raises(ValueError, match="first stage takes no previous"):
        tiny.stages[0](x[0], previous)
    with pytest.raises(ValueError, match=r"\(2, 5, 40, 26\)"):
        tiny.stages[1](x[1], previous, embedding=torch.randn(5, 8))
    with pytest.raises(ValueError, match="E1=8"):
        tiny.stages[0](x[0], embedding=torch.randn(4, 6))
    with pytest.raises(ValueError, match="multiple of stride=20"):
        tiny.stages[0](torch.randn(2, 1, 530))
    with pytest.raises(ValueError, match=r"mono mixture of shape \(batch, 1, time\)"):
        tiny.stages[0](x[0][:, 0])
    with pytest.raises(ValueError, match="must lie in 0..3"):
        tiny.stages[0].embedding([0, 4])
    independent = Stage(40, 20, 20, 8000, generated=False, B=16, H=16, X=2, R=1, spec_channels=16)
    assert independent.embedding is None and isinstance(independent.masker.input_conv, IndependentConv1d)
    assert independent(x[0]).estimates.shape == (2, 4, 1, T0)
    with pytest.raises(ValueError, match="needs a generated model"):
        independent(x[0], embedding=torch.randn(4, 8))


def test_masker_checks_its_latent():
    masker = MaskingTCN(24, 16, B=16, H=16, X=1, R=1)
    embedding = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"\(batch, 24, frames\) or \(batch, 4, 24, frames\), got \(2, 20, 30\)"):
        masker(torch.randn(2, 20, 30), embedding)
    with pytest.raises(ValueError, match=r"got \(2, 3, 24, 30\)"):
        masker(torch.randn(2, 3, 24, 30), embedding)
    with pytest.raises(ValueError, match="depthwise kernel P must be odd"):
        MaskingTCN(24, 16, P=2)


@pytest.mark.parametrize(("generated", "masker", "stage"), [(True, 1_617_200, 2_399_282), (False, 1_587_560, 2_369_610)])
def test_film_stage_parameter_counts(generated, masker, stage):
    model = MetaTasNet(stages=1, generated=generated, film=True)
    shared_convs = 440 * 160 + 18 * (3 * 160 * 160 + 160 * 3) + 160 * 440  # one copy, no instrument axis
    norm_channels = 440 + 160 + 18 * 2 * 160 + 160 + 440  # 40 GroupNorms
    per_instrument = (40 * (8 * 5 + 5) + (5 + 1) * 2 * norm_channels) if generated else 4 * 2 * norm_channels
    assert trainable(model.stages[0].masker) == masker == shared_convs + per_instrument + 40
    assert trainable(model) == stage
    assert (model.stages[0].embedding is None) != generated
    assert model.config["film"] is True and trainable(MetaTasNet(**model.config)) == stage


def test_film_model_runs_any_embedding_and_rebuilds_from_its_config():
    model = MetaTasNet(stages=2, film=True, **TINY)
    stage = model.stages[0]
    assert stage.masker.film and stage.masker.generated
    assert all(isinstance(m, SharedConv1d) for m in stage.masker.modules() if isinstance(m, IndependentConv1d))
    assert sum(isinstance(m, GeneratedGroupNorm) for m in stage.masker.modules()) == 4 + 2 * 2
    outputs = model(mixtures(model))
    assert [o.estimates.shape for o in outputs] == [(2, 4, 1, T0), (2, 4, 1, 2 * T0)]
    x = mixtures(model)[0]
    with torch.no_grad():
        rows = stage.embedding().clone()
        rows[1] = stage.embedding.interpolate(1, 0, 0.5)[0]
        halfway = stage(x, embedding=rows)
        torch.testing.assert_close(halfway.masks.sum(dim=1), torch.ones_like(halfway.masks[:, 0]))
        assert not torch.allclose(halfway.masks[:, 1], stage(x).masks[:, 1])
        assert stage(x, embedding=rows[:3]).estimates.shape == (2, 3, 1, T0)
    assert trainable(MetaTasNet(**json.loads(json.dumps(model.config)))) == trainable(model)


def test_separation_gives_what_every_stage_decoded_with_grouped_and_transposed_convs_gives(tiny, monkeypatch):
    """separate_stages (earlier stages not decoded, the fast forms) equals the plain path within 1e-4."""
    import metalearn_sep.models.enhanced as enhanced
    import metalearn_sep.models.generator as generator

    inputs = [torch.randn(2, 1, 800 * 2**s) for s in range(3)]
    with torch.no_grad():
        fast = tiny.separate_stages(inputs)
        monkeypatch.setattr(generator, "FAST_FORMS", False)
        monkeypatch.setattr(enhanced, "overlap_add_decode",
                            lambda part, weight, stride, crop: F.conv_transpose1d(part, weight, stride=stride, padding=crop))
        plain = tiny(inputs)[-1].estimates
    assert fast.shape == plain.shape == (2, 4, 1, 3200)
    assert (fast - plain).abs().max() <= 1e-4
