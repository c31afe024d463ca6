"""The hypernetwork layers: generated weights, their grouped application, and the independent twins."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearn_sep.models.generator import (
    GeneratedConv1d,
    GeneratedGroupNorm,
    IndependentConv1d,
    IndependentGroupNorm,
    InstrumentEmbedding,
    SharedConv1d,
    generated_weights,
    to_independent,
)
from metalearn_sep.models.meta_tasnet import MaskingTCN

E1, E2 = 8, 5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tiny_masker(generated: bool = True, in_channels: int = 24) -> MaskingTCN:
    return MaskingTCN(in_channels, 16, B=16, H=24, X=2, R=2, P=3, E1=E1, E2=E2, generated=generated)


@pytest.mark.parametrize(
    ("options", "kernel"),
    [({}, 1), ({"bias": True}, 1), ({"dilation": 4, "padding": 4, "groups": 12}, 3), ({"groups": 3, "bias": True}, 5)],
)
def test_generated_conv_equals_one_ordinary_conv_per_instrument(options, kernel):
    conv = GeneratedConv1d(12, 6 if options.get("groups") == 3 else 12, kernel, E1=E1, E2=E2, **options)
    embedding = torch.randn(4, E1)
    x = torch.randn(2, 4, 12, 50)
    weight, bias = conv.materialize(embedding)
    assert weight.shape == (4, conv.out_channels, 12 // conv.groups, kernel)
    assert (bias is None) != options.get("bias", False)
    expected = torch.stack(
        [
            F.conv1d(x[:, i], weight[i], None if bias is None else bias[i], padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
            for i in range(4)
        ],
        dim=1,
    )
    torch.testing.assert_close(conv(x, embedding), expected, atol=1e-5, rtol=1e-5)


def test_generated_group_norm_equals_one_ordinary_group_norm_per_instrument():
    norm = GeneratedGroupNorm(16, 8, E1=E1, E2=E2)
    embedding = torch.randn(3, E1)
    x = torch.randn(2, 3, 16, 40) * 5 + 2
    scale, shift = norm.materialize(embedding)
    assert scale.shape == shift.shape == (3, 16)
    expected = torch.stack([F.group_norm(x[:, i], 8, scale[i], shift[i], 1e-8) for i in range(3)], dim=1)
    torch.testing.assert_close(norm(x, embedding), expected, atol=1e-5, rtol=1e-5)
    # a scale/shift depends on its own instrument only: changing instrument 2's embedding leaves 0 and 1 alone
    other = embedding.clone()
    other[2] += 1.0
    moved = norm(x, other)
    torch.testing.assert_close(moved[:, :2], expected[:, :2])
    assert not torch.allclose(moved[:, 2], expected[:, 2])


def test_each_generated_weight_costs_E2_plus_one_parameters_and_an_independent_one_four():
    weights = 160 * 160

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(GeneratedConv1d(160, 160, E1=E1, E2=E2)) == (E1 * E2 + E2) + (E2 + 1) * weights
    assert count(IndependentConv1d(160, 160)) == 4 * weights
    assert count(GeneratedConv1d(160, 160, 3, groups=160, E1=E1, E2=E2)) == (E1 * E2 + E2) + (E2 + 1) * 160 * 3
    assert count(GeneratedGroupNorm(160, E1=E1, E2=E2)) == (E1 * E2 + E2) + (E2 + 1) * 2 * 160
    assert count(IndependentGroupNorm(160)) == 4 * 2 * 160


@pytest.mark.parametrize("instruments", [1, 2, 5])
def test_generated_layers_accept_any_number_of_instruments(instruments):
    conv = GeneratedConv1d(8, 16, 3, padding=1, E1=E1, E2=E2)
    norm = GeneratedGroupNorm(16, E1=E1, E2=E2)
    embedding = torch.randn(instruments, E1)
    y = norm(conv(torch.randn(2, instruments, 8, 30), embedding), embedding)
    assert y.shape == (2, instruments, 16, 30)


def test_independent_layers_ignore_the_embedding():
    conv, norm = IndependentConv1d(8, 16), IndependentGroupNorm(16)
    x = torch.randn(2, 4, 8, 30)
    reference = norm(conv(x, None), None)
    torch.testing.assert_close(norm(conv(x, torch.randn(4, E1)), torch.randn(7, 3)), reference)


def test_bad_embeddings_and_features_are_rejected_with_a_clear_message():
    conv = GeneratedConv1d(8, 16, E1=E1, E2=E2)
    x = torch.randn(2, 4, 8, 30)
    with pytest.raises(ValueError, match=r"\(instruments >= 1, E1=8\), got \(4, 7\)"):
        conv(x, torch.randn(4, 7))
    with pytest.raises(ValueError, match="E1=8"):
        conv(x, torch.randn(8))
    with pytest.raises(ValueError, match="needs the instrument embedding"):
        conv(x, None)
    with pytest.raises(ValueError, match=r"\(batch, 3, 8, time\), got \(2, 4, 8, 30\)"):
        conv(x, torch.randn(3, E1))
    with pytest.raises(ValueError, match=r"\(batch, 4, 8, time\), got \(2, 4, 9, 30\)"):
        conv(torch.randn(2, 4, 9, 30), torch.randn(4, E1))
    with pytest.raises(ValueError, match="shape \\(batch, instruments, channels, time\\)"):
        IndependentGroupNorm(8)(torch.randn(2, 32, 30), None)


def test_instrument_embedding_looks_up_validates_and_interpolates():
    table = InstrumentEmbedding(E1)
    assert table().shape == (4, E1)
    torch.testing.assert_close(table([3, 1]), table.weight[[3, 1]])
    for bad in ([4], [-1], [0, 9]):
        with pytest.raises(ValueError, match=r"must lie in 0..3"):
            table(bad)
    with pytest.raises(ValueError, match="integers"):
        table([0.5])
    torch.testing.assert_close(table.interpolate(1, 0, 0.0), table.weight[1:2])
    torch.testing.assert_close(table.interpolate(1, 0, 1.0), table.weight[0:1])
    torch.testing.assert_close(table.interpolate(1, 0, 0.5), (table.weight[0:1] + table.weight[1:2]) / 2)


def test_generated_weights_of_the_paper_stage0_masker_are_1545760_per_instrument():
    masker = MaskingTCN(440, 440)  # stage 0: C_in = N = 440, B = H = 160, X = 6, R = 3
    with torch.no_grad():
        weights = generated_weights(masker, torch.randn(4, E1))
    assert sum(v[0].numel() for v in weights.values()) == 1_545_760
    assert all(v.shape[0] == 4 for v in weights.values())
    assert weights["input_conv.weight"].shape == (4, 160, 440, 1)
    assert weights["blocks.17.depthwise.weight"].shape == (4, 160, 1, 3)
    assert weights["mask_norm.weight"].shape == (4, 440)
    prelus = sum(p.numel() for n, p in masker.named_parameters() if "prelu" in n)
    assert prelus == 40


@pytest.mark.parametrize("layout", ["shared latent", "per-instrument latent"])
def test_copying_generated_weights_into_independent_layers_gives_identical_masks(layout):
    masker = _tiny_masker()
    embedding = torch.randn(4, E1)
    latent = torch.randn(2, 24, 60) if layout == "shared latent" else torch.randn(2, 4, 24, 60)
    independent = to_independent(masker, embedding)
    assert not independent.generated and masker.generated
    assert not any(isinstance(m, (GeneratedConv1d, GeneratedGroupNorm)) for m in independent.modules())
    per_instrument = sum(v[0].numel() for v in generated_weights(masker, embedding).values())
    assert sum(p.numel() for p in independent.parameters()) == 4 * per_instrument + 4 + 2 * 2 * 2  # + PReLUs
    with torch.no_grad():
        difference = (masker(latent, embedding) - independent(latent)).abs().max().item()
    assert difference <= 1e-5


def test_to_independent_handles_interpolated_embeddings_and_a_single_layer():
    masker = _tiny_masker()
    rows = torch.randn(4, E1)
    mixed = torch.cat([rows[:1], torch.lerp(rows[1], rows[0], 0.5)[None]])  # 2 extractors
    latent = torch.randn(1, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(to_independent(masker, mixed)(latent), masker(latent, mixed), atol=1e-5, rtol=0)
    conv = GeneratedConv1d(8, 8, 3, padding=1, bias=True, E1=E1, E2=E2)
    twin = to_independent(conv, rows)
    assert isinstance(twin, IndependentConv1d) and twin.bias is not None
    x = torch.randn(2, 4, 8, 20)
    with torch.no_grad():
        torch.testing.assert_close(twin(x, None), conv(x, rows))


def test_to_independent_and_generated_weights_need_generated_layers():
    with pytest.raises(ValueError, match="no generated layers"):
        to_independent(_tiny_masker(generated=False), torch.randn(4, E1))
    with pytest.raises(ValueError, match="E1=8"):
        generated_weights(_tiny_masker(), torch.randn(4, 3))


def test_generated_masker_backpropagates_into_the_embedding_and_every_generator():
    masker = _tiny_masker()
    embedding = torch.randn(4, E1, requires_grad=True)
    masks = masker(torch.randn(2, 24, 30), embedding)
    (masks * torch.randn_like(masks)).sum().backward()
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0
    missing = {n.split(".generator")[0] for n, p in masker.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert missing == {"blocks.3.residual"}  # the last block's residual feeds nothing (kept, as in the original)


@pytest.mark.parametrize(("options", "kernel"), [({}, 1), ({"dilation": 2, "padding": 2, "bias": True}, 3), ({"groups": 8}, 3)])
def test_shared_conv_applies_one_kernel_to_every_instrument(options, kernel):
    conv = SharedConv1d(8, 16, kernel, **options)
    assert sum(p.numel() for p in conv.parameters()) == 16 * (8 // conv.groups) * kernel + (16 if options.get("bias") else 0)
    x = torch.randn(2, 3, 8, 30)
    weight, bias = conv.materialize(None)
    assert weight.shape == (1, 16, 8 // conv.groups, kernel)
    layout = dict(padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    expected = torch.stack([F.conv1d(x[:, i], weight[0], None if bias is None else bias[0], **layout) for i in range(3)], dim=1)
    torch.testing.assert_close(conv(x, torch.randn(3, E1)), expected, atol=1e-5, rtol=1e-5)
    copies = IndependentConv1d(8, 16, kernel, instruments=3, **options)  # the same kernel stored three times
    with torch.no_grad():
        copies.weight.copy_(weight.repeat(3, 1, 1, 1).flatten(0, 1))
        if bias is not None:
            copies.bias.copy_(bias.repeat(3, 1).flatten())
        torch.testing.assert_close(copies(x, None), conv(x, None), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(batch, 3, 8, time\), got \(2, 3, 9, 30\)"):
        conv(torch.randn(2, 3, 9, 30))
    with pytest.raises(ValueError, match="shape \\(batch, instruments, channels, time\\)"):
        conv(torch.randn(2, 8, 30))


@pytest.mark.parametrize("generated", [True, False])
def test_film_masker_shares_every_conv_and_keeps_per_instrument_norms(generated):
    film = MaskingTCN(24, 16, B=16, H=24, X=2, R=2, E1=E1, E2=E2, generated=generated, film=True)
    full = _tiny_masker(generated)
    assert film.film and not full.film and film.generated == generated
    convs = [m for m in film.modules() if isinstance(m, IndependentConv1d)]
    assert len(convs) == 2 + 4 * 4 and all(isinstance(m, SharedConv1d) and m.instruments == 1 for m in convs)
    norms = [m for m in film.modules() if isinstance(m, (GeneratedGroupNorm, IndependentGroupNorm))]
    assert len(norms) == 4 + 2 * 4 and all(isinstance(m, GeneratedGroupNorm) == generated for m in norms)
    conv_weights = sum(p.numel() for m in convs for p in m.parameters())
    full_conv_weights = sum(p.numel() for n, p in full.named_parameters() if "norm" not in n and "prelu" not in n)
    if not generated:
        assert 4 * conv_weights == full_conv_weights  # the independent masker stores each conv 4 times
    masks = film(torch.randn(2, 24, 30), torch.randn(4, E1) if generated else None)
    assert masks.shape == (2, 4, 16, 30)
    torch.testing.assert_close(masks.sum(1), torch.ones(2, 16, 30))


def test_film_masker_differs_between_instruments_only_through_its_norms():
    film = MaskingTCN(24, 16, B=16, H=24, X=2, R=2, E1=E1, E2=E2, film=True)
    embedding = torch.randn(4, E1)
    latent = torch.randn(2, 24, 40)
    with torch.no_grad():
        twin = to_independent(film, embedding)  # the norms become tables, the convs stay shared
        assert twin.film and not twin.generated
        difference = (film(latent, embedding) - twin(latent)).abs().max().item()
        assert difference <= 1e-5
        norms = [n for n, m in film.named_modules() if isinstance(m, GeneratedGroupNorm)]
        assert set(generated_weights(film, embedding)) == {f"{n}.{p}" for n in norms for p in ("weight", "bias")}
        same = film(latent, embedding[[0, 0, 0, 0]])  # identical rows: identical extractors, equal masks
        torch.testing.assert_close(same, torch.full_like(same, 0.25))
    masks = film(latent, embedding.requires_grad_())
    (masks * torch.randn_like(masks)).sum().backward()
    assert embedding.grad.abs().sum() > 0 and film.input_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("kernel", "options"), [(1, {}), (3, {"dilation": 2, "padding": 2, "groups": 12})])
def test_the_fast_forms_give_the_grouped_convolutions_values_and_gradients(kernel, options, monkeypatch):
    """Pointwise layers as matrix products and depthwise ones as shifted products: the same sums, forward and backward."""
    import metalearn_sep.models.generator as generator

    conv = GeneratedConv1d(12, 12, kernel, E1=E1, E2=E2, bias=True, **options)
    x = torch.randn(2, 4, 12, 40, requires_grad=True)
    embedding = torch.randn(4, E1, requires_grad=True)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(generator, "FAST_FORMS", fast)
        conv.zero_grad()
        x.grad = embedding.grad = None
        y = conv(x, embedding)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append([y.detach(), x.grad.clone(), embedding.grad.clone(), *(p.grad.clone() for p in conv.parameters())])
    for fast, grouped in zip(*results):
        torch.testing.assert_close(fast, grouped, rtol=1e-5, atol=1e-5)
