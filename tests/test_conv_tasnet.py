"""Conv-TasNet: parity with torchaudio, shapes, norms, masks, causality, receptive field, errors."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest
import torch
import torchaudio

from metalearn_sep.models.conv_tasnet import ConvTasNet, CumulativeLayerNorm, Decoder, DepthwiseConv1d, PReLU, fourier_start_, make_norm

SMALL = dict(num_sources=3, N=32, L=8, B=16, H=24, Sc=16, P=3, X=3, R=2)
"""A small configuration for the behavioural tests (stride 4)."""


def expected_parameters(num_sources, N, L, B, H, Sc, P, X, R, **_) -> dict[str, int]:
    """The parameter count of each part, by hand from the architecture (with biases and norm affines)."""
    blocks = R * X
    parts = {
        "encoder": N * L,
        "mask_network/input_norm": 2 * N,
        "mask_network/bottleneck": N * B + B,
        "mask_network/blocks/conv_in": blocks * (B * H + H),
        "mask_network/blocks/prelu": blocks * 2,
        "mask_network/blocks/norm": blocks * 4 * H,
        "mask_network/blocks/depthwise": blocks * (H * P + H),
        "mask_network/blocks/residual": (blocks - 1) * (H * B + B),  # every block but the last
        "mask_network/blocks/skip": blocks * (H * Sc + Sc),
        "mask_network/output_prelu": 1,
        "mask_network/mask_conv": Sc * num_sources * N + num_sources * N,
        "decoder": N * L,
    }
    parts["total"] = sum(parts.values())
    return parts


def torchaudio_model(num_sources, N, L, B, H, P, X, R, mask, **_) -> torchaudio.models.ConvTasNet:
    return torchaudio.models.ConvTasNet(
        num_sources=num_sources,
        enc_kernel_size=L,
        enc_num_feats=N,
        msk_kernel_size=P,
        msk_num_feats=B,
        msk_num_hidden_feats=H,
        msk_num_layers=X,
        msk_num_stacks=R,
        msk_activate=mask,
    )


PAPER = dict(N=512, L=16, B=128, H=512, Sc=128, P=3, X=8, R=3, mask="sigmoid")
PARITY_CONFIGS = [
    pytest.param(dict(PAPER, num_sources=4), 5_116_977, id="paper-4-sources"),
    pytest.param(dict(PAPER, num_sources=2), 4_984_881, id="paper-2-sources"),
    pytest.param(
        dict(num_sources=2, N=128, L=40, B=64, H=128, Sc=64, P=3, X=4, R=2, mask="relu"), None, id="small-relu"
    ),
    pytest.param(dict(num_sources=3, N=64, L=15, B=32, H=64, Sc=32, P=3, X=3, R=2, mask="sigmoid"), None, id="odd-L"),
]


@pytest.mark.parametrize("config, count", PARITY_CONFIGS)
def test_from_torchaudio_matches_output_and_parameter_count(config, count):
    torch.manual_seed(0)
    reference = torchaudio_model(**config)
    ours = ConvTasNet.from_torchaudio(reference)
    assert ours.config == {**config, "norm": "gLN", "causal": False, "start": "random", "sample_rate": 8000}
    total = sum(p.numel() for p in ours.parameters())
    assert total == sum(p.numel() for p in reference.parameters()) == expected_parameters(**config)["total"]
    if count is not None:
        assert total == count
    stride = config["L"] // 2
    for time in (100 * stride, 100 * stride + 3):  # a multiple of the stride, and not
        mixture = torch.randn(2, 1, time)
        with torch.no_grad():
            expected, got = reference(mixture), ours(mixture)
        assert got.shape == (2, config["num_sources"], 1, time)
        assert (got.squeeze(2) - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "config, dtype, tolerance",
    [
        (dict(num_sources=2, N=32, L=8, B=16, H=24, P=3, X=3, R=2, mask="relu"), torch.float64, 1e-9),
        (dict(num_sources=2, N=32, L=6, B=16, H=24, P=3, X=5, R=2, mask="sigmoid"), torch.float64, 1e-9),
        (dict(PAPER, num_sources=4), torch.float64, 1e-9),
    ],
)
def test_from_torchaudio_gradients_match(config, dtype, tolerance):
    """The hand-written passes give torchaudio's gradients, up to float64 rounding.

    In float64 because in float32 neither model is exact: on the paper's model some PReLU
    slope and conv gradients sum a million products that nearly cancel, and with some
    weights both ours and torchaudio's float32 gradients are off the float64 ones by up to
    about 2e-3 of their largest entry (ours sums the depthwise conv and the decoder in
    another order, so the two float32 errors differ).
    """
    torch.manual_seed(1)
    reference = torchaudio_model(**config).to(dtype)
    ours = ConvTasNet.from_torchaudio(reference)
    mixture = torch.randn(2, 1, 803, dtype=dtype)
    reference(mixture).square().mean().backward()
    ours(mixture).square().mean().backward()
    # torchaudio's gradients, moved into our layout by the same copy that moves its weights
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(p.grad)
    expected = ConvTasNet.from_torchaudio(reference).state_dict()
    got = {name: p.grad for name, p in ours.named_parameters()}
    assert got.keys() == expected.keys()
    for name in got:
        scale = expected[name].abs().max().item()
        torch.testing.assert_close(got[name], expected[name], rtol=tolerance, atol=tolerance * scale, msg=name)


def test_from_torchaudio_rejects_other_models():
    with pytest.raises(ValueError, match="torchaudio.models.ConvTasNet"):
        ConvTasNet.from_torchaudio(ConvTasNet(**SMALL))


def test_prelu_matches_torch_prelu_with_a_hand_written_backward():
    torch.manual_seed(0)
    ours, reference = PReLU(), torch.nn.PReLU()
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [("weight", torch.Size([1]))]
    assert ours.weight.item() == reference.weight.item() == 0.25
    x = torch.randn(2, 5, 40)
    x[0, 0, :4] = 0  # the kink: PyTorch uses the slope at x == 0
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
    x64 = x.double().requires_grad_()
    ours.double()
    with torch.no_grad():
        ours.weight.fill_(0.3)
    slope = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    grad = torch.randn_like(x64)
    got = torch.autograd.grad(ours(x64), [x64, ours.weight], grad)
    expected = torch.autograd.grad(torch.nn.functional.prelu(x64, slope), [x64, slope], grad)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "P, dilation, causal, time",
    [(3, 1, False, 30), (3, 4, False, 30), (3, 16, False, 30), (3, 64, False, 30), (5, 3, False, 30),
     (4, 2, False, 30), (3, 4, True, 30), (4, 8, True, 30), (3, 32, True, 30), (3, 2, False, 1)],
)
def test_depthwise_conv_matches_torch_conv_in_value_and_gradient(P, dilation, causal, time):
    torch.manual_seed(0)
    ours = DepthwiseConv1d(6, P, dilation, causal=causal).double()
    reference = torch.nn.Conv1d(6, 6, P, dilation=dilation, groups=6).double()
    reference.load_state_dict(ours.state_dict())
    left = dilation * (P - 1) if causal else dilation * (P - 1) // 2
    x = torch.randn(2, 6, time, dtype=torch.float64, requires_grad=True)
    expected = reference(torch.nn.functional.pad(x, (left, dilation * (P - 1) - left)))
    got = ours(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected)
    grad = torch.randn_like(got)
    params = [x, ours.weight, ours.bias]
    got_grads = torch.autograd.grad(got, params, grad)
    expected_grads = torch.autograd.grad(expected, [x, reference.weight, reference.bias], grad)
    for a, b in zip(got_grads, expected_grads):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # without gradients it is PyTorch's conv itself
        assert torch.equal(ours(x), reference(torch.nn.functional.pad(x, (left, dilation * (P - 1) - left))))
    if causal:  # frame k sees nothing after k
        later = x.detach().clone()
        later[..., time // 2 :] += 1
        torch.testing.assert_close(ours(later)[..., : time // 2], got[..., : time // 2])


@pytest.mark.parametrize("L, frames", [(16, 40), (15, 40), (2, 7), (64, 2)])
def test_decoder_overlap_add_is_the_transposed_conv_in_value_and_gradient(L, frames):
    torch.manual_seed(0)
    ours = Decoder(12, L).double()
    latent = torch.randn(3, 12, frames, dtype=torch.float64, requires_grad=True)
    got = ours(latent)  # gradients wanted: matmul and overlap-add
    expected = torch.nn.functional.conv_transpose1d(latent, ours.conv_transpose.weight, stride=L // 2, padding=L // 2)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(got)
    params = [latent, ours.conv_transpose.weight]
    for a, b in zip(torch.autograd.grad(got, params, grad), torch.autograd.grad(expected, params, grad)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert torch.equal(ours(latent), ours.conv_transpose(latent))


def test_even_kernel_non_causal_model_keeps_the_length():
    model = ConvTasNet(**dict(SMALL, P=4))
    assert model(torch.randn(2, 1, 101)).shape == (2, 3, 1, 101)
    assert model.receptive_field().frames == 1 + 2 * 3 * 7


def test_only_the_last_block_lacks_a_residual_output():
    model = ConvTasNet(**SMALL)
    blocks = model.mask_network.blocks
    assert [b.output.out_channels for b in blocks] == [16 + 16] * 5 + [16]
    residual, skip = blocks[-1](torch.randn(1, 16, 10))
    assert residual is None and skip.shape == (1, 16, 10)
    residual, skip = blocks[0](torch.randn(1, 16, 10))
    assert residual.shape == skip.shape == (1, 16, 10)


def test_skip_channels_different_from_bottleneck():
    config = dict(num_sources=3, N=40, L=12, B=16, H=24, Sc=20, P=5, X=3, R=2)
    model = ConvTasNet(**config)
    assert model.parameter_table() == expected_parameters(**config)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(**config)["total"]
    _, skip = model.mask_network.blocks[0](torch.randn(2, 16, 7))
    assert skip.shape == (2, 20, 7)
    assert model(torch.randn(2, 1, 101)).shape == (2, 3, 1, 101)


def test_parameter_table_of_the_paper_configuration():
    table = ConvTasNet().parameter_table()
    assert table == expected_parameters(num_sources=4, **{k: v for k, v in PAPER.items() if k != "mask"})
    assert table["total"] == 5_116_977
    assert table["encoder"] == table["decoder"] == 8_192
    assert sum(v for k, v in table.items() if k.startswith("mask_network/")) == 5_100_593


@pytest.mark.parametrize("time", [1, 3, 4, 5, 97, 1000, 1001])
def test_output_shape_and_length(time):
    model = ConvTasNet(**SMALL)
    out = model(torch.randn(2, 1, time))
    assert out.shape == (2, 3, 1, time)


def test_mask_shapes_and_latent():
    model = ConvTasNet(**SMALL)
    latent = model.encoder(torch.randn(2, 1, 400))
    assert latent.shape == (2, 32, 400 // 4 + 1)
    masks = model.mask_network(latent)
    assert masks.shape == (2, 3, 32, 101)
    assert ((masks > 0) & (masks < 1)).all()  # sigmoid
    assert model.decoder(latent).shape == (2, 1, 400)


@pytest.mark.parametrize("time", [400, 403])
def test_softmax_masks_sum_to_one_and_estimates_to_the_reconstruction(time):
    torch.manual_seed(0)
    mixture = torch.randn(2, 1, time)
    model = ConvTasNet(**SMALL, mask="softmax")
    with torch.no_grad():
        latent = model.encoder(torch.nn.functional.pad(mixture, (0, model.padding(time))))
        masks = model.mask_network(latent)
        reconstruction = model.decoder(latent)[..., :time]  # the encoder -> decoder path, no masks
        total = model(mixture).sum(dim=1)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones_like(masks[:, 0]))
    torch.testing.assert_close(total, reconstruction, atol=1e-5, rtol=1e-5)
    sigmoid = ConvTasNet(**SMALL)  # the same check fails with masks that do not sum to one
    sigmoid.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(sigmoid(mixture).sum(dim=1), reconstruction, atol=1e-3)


def test_relu_masks_are_non_negative_and_unbounded():
    torch.manual_seed(0)
    model = ConvTasNet(**SMALL, mask="relu")
    with torch.no_grad():
        masks = model.mask_network(torch.randn(2, 32, 50))
    assert (masks >= 0).all() and (masks == 0).any() and (masks > 1).any()


def test_cumulative_layer_norm_matches_a_frame_by_frame_loop():
    torch.manual_seed(0)
    norm = CumulativeLayerNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.normal_()
    x = torch.randn(2, 6, 9, dtype=torch.float64)
    expected = torch.empty_like(x)
    for k in range(9):
        past = x[..., : k + 1]
        mean = past.mean(dim=(1, 2), keepdim=True)
        var = past.var(dim=(1, 2), unbiased=False, keepdim=True)
        expected[..., k] = ((x[..., k : k + 1] - mean) / (var + 1e-8).sqrt())[..., 0]
    expected = expected * norm.weight.double()[:, None] + norm.bias.double()[:, None]
    torch.testing.assert_close(norm.double()(x), expected)


def test_causal_model_ignores_the_future():
    torch.manual_seed(0)
    config = dict(SMALL, norm="cLN")
    causal = ConvTasNet(**config, causal=True)
    noncausal = ConvTasNet(**config)
    noncausal.load_state_dict(causal.state_dict())
    mixture = torch.randn(1, 1, 600)
    t, L = 300, SMALL["L"]
    perturbed = mixture.clone()
    perturbed[..., t:] += torch.randn(1, 1, 300)
    with torch.no_grad():
        before, after = causal(mixture), causal(perturbed)
        torch.testing.assert_close(after[..., : t - L + 1], before[..., : t - L + 1], atol=1e-6, rtol=0)
        assert not torch.allclose(after[..., t:], before[..., t:])
        # the same weights with "same" padding look ahead (half the receptive field), so the check can fail
        assert not torch.allclose(noncausal(perturbed)[..., : t - L + 1], noncausal(mixture)[..., : t - L + 1])


def test_group_norm_option():
    torch.manual_seed(0)
    grouped = ConvTasNet(**SMALL, norm="GN8")
    norms = [grouped.mask_network.input_norm] + [b.norm_in for b in grouped.mask_network.blocks]
    assert all(isinstance(n, torch.nn.GroupNorm) and n.num_groups == 8 for n in norms)
    single = ConvTasNet(**SMALL, norm="GN1")  # one group is gLN
    global_ = ConvTasNet(**SMALL)
    single.load_state_dict(grouped.state_dict())
    global_.load_state_dict(grouped.state_dict())
    mixture = torch.randn(2, 1, 200)
    with torch.no_grad():
        torch.testing.assert_close(single(mixture), global_(mixture))
        assert not torch.allclose(grouped(mixture), global_(mixture), atol=1e-3)
    assert grouped(mixture).shape == (2, 3, 1, 200)


@pytest.mark.parametrize("norm", ["LN", "GN0", "GN", "gln", "GN-2", None])
def test_bad_norm_names(norm):
    with pytest.raises(ValueError, match='"gLN", "cLN" or "GN<groups>"'):
        make_norm(norm, 8)
    with pytest.raises(ValueError, match="norm"):
        ConvTasNet(**SMALL, norm=norm)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(norm="GN5"), "divisible by 5"),
        (dict(causal=True), 'causal model needs norm="cLN"'),
        (dict(mask="tanh"), "mask must be one of"),
        (dict(L=1), "L must be at least 2"),
        (dict(X=0), "X must be a positive integer"),
        (dict(N=32.0), "N must be a positive integer"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvTasNet(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    "shape", [(100,), (2, 100), (2, 2, 100), (2, 1, 1, 100)], ids=["time", "batch-time", "stereo", "4d"]
)
def test_bad_waveform_shape(shape):
    model = ConvTasNet(**SMALL)
    with pytest.raises(ValueError) as error:
        model(torch.randn(*shape))
    assert "(batch, 1, time)" in str(error.value) and str(shape) in str(error.value)


def test_bad_waveform_content():
    model = ConvTasNet(**SMALL)
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.ones(1, 1, 10, dtype=torch.int64))
    with pytest.raises(ValueError, match="non-empty"):
        model(torch.ones(1, 1, 0))
    with pytest.raises(ValueError, match="got ndarray"):
        model(torch.ones(1, 1, 10).numpy())


@pytest.mark.parametrize(
    "config", [{}, SMALL, dict(SMALL, norm="GN8", mask="softmax"), dict(SMALL, norm="cLN", causal=True, P=4)]
)
def test_config_round_trip(config):
    model = ConvTasNet(**config)
    rebuilt = ConvTasNet(**json.loads(json.dumps(model.config)))
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())


def test_receptive_field_of_the_paper_configuration():
    field = ConvTasNet().receptive_field()
    assert field.frames == 1 + 3 * (3 - 1) * (1 + 2 + 4 + 8 + 16 + 32 + 64 + 128) == 1531
    assert field.samples == 1530 * 8 + 16 == 12_256
    assert round(field.seconds(8000), 2) == 1.53


@pytest.mark.parametrize(
    "L, X, R, seconds",
    [
        (40, 7, 2, "1.28"),
        (40, 6, 4, "1.27"),
        (40, 4, 6, "0.46"),
        (40, 8, 3, "3.83"),
        (32, 8, 3, "3.06"),
        (16, 8, 3, "1.53"),
    ],
)
def test_receptive_field_reproduces_the_paper_table(L, X, R, seconds):
    field = ConvTasNet(num_sources=1, N=8, L=L, B=4, H=8, Sc=4, X=X, R=R).receptive_field()
    exact = Decimal(field.samples) / Decimal(8000)
    assert str(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)) == seconds


def test_fourier_start_writes_hann_windowed_sinusoids_that_the_decoder_inverts():
    torch.manual_seed(0)
    model = ConvTasNet(N=32, L=16, B=8, H=16, Sc=8, X=2, R=1)
    scale = model.encoder.conv.weight.detach().norm(dim=-1).mean()
    fourier_start_(model, window="hann")
    rows = model.encoder.conv.weight.detach()[:, 0].double()
    n = torch.arange(16, dtype=torch.float64)
    window = torch.hann_window(16, periodic=True, dtype=torch.float64)
    f = 0.5 * 5 / 15  # the 6th of 16 frequencies from 0 to 0.5
    for row, wave in ((rows[5], torch.cos(2 * torch.pi * f * n)), (rows[16 + 5], torch.sin(2 * torch.pi * f * n))):
        expected = wave * window
        assert torch.allclose(row, expected / expected.norm() * scale, atol=1e-6)
    torch.testing.assert_close(rows.norm(dim=-1)[1:16], torch.full((15,), scale.item(), dtype=torch.float64), rtol=1e-5, atol=0)
    assert not rows[16].any() and not rows[31].any()  # the sines at 0 and 0.5 cycles per sample start silent
    decoder = model.decoder.conv_transpose.weight.detach()[:, 0].double()
    ratio = (decoder * rows).sum() / rows.pow(2).sum()
    assert torch.allclose(decoder, rows * ratio, atol=1e-6)  # one scalar times the same basis
    x = torch.randn(1, 1, 4000)
    assert reconstruction_snr(model, x) > 10.0
    assert model(x).shape == (1, 4, 1, 4000)


def reconstruction_snr(model: ConvTasNet, x: torch.Tensor) -> float:
    """SNR in dB of decoder(encoder(x)) against x, away from the edges (one window each side)."""
    L = model.encoder.conv.kernel_size[0]
    with torch.no_grad():
        y = model.decoder(model.encoder(x))[..., : x.shape[-1]]
    inner, error = x[..., L:-L], (y - x)[..., L:-L]
    return (10 * torch.log10(inner.pow(2).sum() / error.pow(2).sum())).item()


def test_fourier_start_with_a_square_root_hann_window_is_a_near_tight_frame():
    torch.manual_seed(0)
    hann, root = (ConvTasNet(N=256, L=64, B=8, H=16, Sc=8, X=2, R=1) for _ in range(2))
    fourier_start_(hann, window="hann")
    fourier_start_(root)  # the default window: square-root Hann
    rows = root.encoder.conv.weight.detach()[:, 0].double()
    n = torch.arange(64, dtype=torch.float64)
    expected = torch.cos(2 * torch.pi * 0.5 * 40 / 127 * n) * torch.hann_window(64, periodic=True, dtype=torch.float64).sqrt()
    assert torch.allclose(rows[40] / rows[40].norm(), expected / expected.norm(), atol=1e-6)
    x = torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(1))
    assert reconstruction_snr(root, x) > 25.0 > 15.0 > reconstruction_snr(hann, x) > 10.0


def test_fourier_start_in_the_constructor_changes_only_the_encoder_and_decoder():
    torch.manual_seed(3)
    random = ConvTasNet(N=32, L=16, B=8, H=16, Sc=8, X=2, R=1)
    torch.manual_seed(3)
    fourier = ConvTasNet(N=32, L=16, B=8, H=16, Sc=8, X=2, R=1, start="fourier")
    assert fourier.config["start"] == "fourier" and random.config["start"] == "random"
    expected = fourier_start_(random)  # the same seed, then the start: the same weights, all of them
    for (name, a), (_, b) in zip(fourier.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="start must be one of random, fourier, got 'dct'"):
        ConvTasNet(N=32, L=16, B=8, H=16, Sc=8, X=2, R=1, start="dct")
    with pytest.raises(ValueError, match='start="fourier" needs an even number of encoder filters N, got N=33'):
        ConvTasNet(N=33, L=16, B=8, H=16, Sc=8, X=2, R=1, start="fourier")


def test_fourier_start_rejects_an_odd_number_of_filters_and_unknown_windows():
    with pytest.raises(ValueError, match="even number of encoder filters N, got N=33"):
        fourier_start_(ConvTasNet(N=33, L=16, B=8, H=16, Sc=8, X=2, R=1))
    with pytest.raises(ValueError, match="Unknown window 'hamming'"):
        fourier_start_(ConvTasNet(N=32, L=16, B=8, H=16, Sc=8, X=2, R=1), window="hamming")


def test_a_one_source_softmax_mask_is_refused():
    """A softmax across one source is 1 everywhere: such a model could only filter the mixture, never mask it."""
    with pytest.raises(ValueError, match='A softmax across one source is 1 everywhere .* mask="sigmoid" or "relu"'):
        ConvTasNet(num_sources=1, N=8, L=4, B=4, H=8, Sc=4, X=1, R=1, mask="softmax")
    assert ConvTasNet(num_sources=2, N=8, L=4, B=4, H=8, Sc=4, X=1, R=1, mask="softmax").config["mask"] == "softmax"
