"""Meta-TasNet's enhanced encoder/decoder (exact counts, shapes, a NumPy reference, alignment, statistics, errors) and chapter 02's ablation models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metalearn_sep.checkpoint import load_checkpoint
from metalearn_sep.models.encoder_ablation import ENCODERS, EncoderSeparator, PlainDecoder, PlainEncoder
from metalearn_sep.models.enhanced import EnhancedDecoder, EnhancedEncoder, SpectrogramBranch, spectrogram_statistics
from metalearn_sep.train import Trainer, TrainerConfig

# (N, kernel, stride, rate): the three stages of the released model, with the original code's
# trainable-parameter counts (encoder, of which spectrogram branch, decoder).
STAGES = [
    ((440, 20, 20, 8000), 599_450, 132_610, 182_600),
    ((880, 40, 40, 16000), 1_906_786, 264_706, 730_400),
    ((1760, 80, 80, 32000), 6_646_658, 528_898, 2_921_600),
]


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def stages():
    torch.manual_seed(0)
    return [(EnhancedEncoder(N, k, s, sr), EnhancedDecoder(N, k, s)) for (N, k, s, sr), *_ in STAGES]


@pytest.mark.parametrize("index", range(3))
def test_parameter_counts_match_the_original_code(stages, index):
    encoder, decoder = stages[index]
    _, n_encoder, n_spectrogram, n_decoder = STAGES[index]
    assert trainable(encoder) == n_encoder
    assert trainable(encoder.spectrogram) == n_spectrogram
    assert trainable(decoder) == n_decoder
    # The window and the dataset statistics are buffers, not parameters.
    names = {name for name, _ in encoder.named_parameters()}
    assert not any(name.endswith(("window", ".mean", ".std")) for name in names)
    assert {"spectrogram.mean", "spectrogram.std"} <= set(encoder.state_dict())


@pytest.mark.parametrize("index", range(3))
def test_every_stage_gives_400_frames_per_second_and_round_trips_the_length(stages, index):
    encoder, decoder = stages[index]
    (N, _, stride, rate), *_ = STAGES[index]
    with torch.no_grad():
        z = encoder(torch.randn(2, 1, rate // 4))  # 0.25 s
        assert z.shape == (2, N, 100)
        for frames in (26, 37):
            x = torch.randn(1, 1, stride * frames)
            assert decoder(encoder(x)).shape == x.shape


def test_config_is_json_and_rebuilds_the_same_module(stages):
    encoder, decoder = stages[0]
    for module, cls in ((encoder, EnhancedEncoder), (decoder, EnhancedDecoder)):
        config = json.loads(json.dumps(module.config))
        rebuilt = cls(**config)
        assert rebuilt.config == module.config
        rebuilt.load_state_dict(module.state_dict())
        assert trainable(rebuilt) == trainable(module)


# --- a NumPy reference of the whole forward pass --------------------------------------------

def reference_log_power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """log10 |STFT|^2 of a 1-D signal: periodic Hann, centred with reflect padding."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(x, n_fft // 2, mode="reflect")
    frames = np.stack([padded[f * hop: f * hop + n_fft] for f in range(len(x) // hop + 1)], axis=1)
    return np.log10(np.abs(np.fft.rfft(frames * window[:, None], axis=0)) ** 2 + 1e-8)


def reference_conv(x: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Cross-correlation of a 1-D signal with (out, 1, k) filters: (out, frames)."""
    k = weight.shape[-1]
    padded = np.pad(x, padding)
    starts = range(0, len(padded) - k + 1, stride)
    return np.stack([weight[:, 0] @ padded[s: s + k] for s in starts], axis=1)


def reference_interpolate(y: np.ndarray, size: int) -> np.ndarray:
    """Linear interpolation along the last axis with the end points aligned."""
    position = np.arange(size) * (y.shape[-1] - 1) / (size - 1)
    left = np.minimum(np.floor(position).astype(int), y.shape[-1] - 2)
    frac = position - left
    return y[:, left] * (1 - frac) + y[:, left + 1] * frac


def reference_encoder(encoder: EnhancedEncoder, x: np.ndarray) -> np.ndarray:
    p = {name: t.detach().double().numpy() for name, t in encoder.state_dict().items()}
    stride, spec = encoder.stride, encoder.spectrogram
    learned = [
        reference_conv(x, p[f"convs.{i}.weight"], stride, (p[f"convs.{i}.weight"].shape[-1] - stride) // 2)
        for i in range(len(encoder.convs))
    ]
    learned = np.maximum(np.concatenate(learned), 0)
    power = reference_log_power(x, spec.n_fft, spec.hop)
    power = (power - p["spectrogram.mean"][:, None]) / p["spectrogram.std"][:, None]
    power = power * p["spectrogram.scale"][:, None] + p["spectrogram.shift"][:, None]
    mel = p["spectrogram.mel.weight"][:, :, 0] @ power + p["spectrogram.mel.bias"][:, None]
    fused = np.concatenate([learned, reference_interpolate(mel, learned.shape[-1])])
    hidden = np.maximum(p["fusion.0.weight"][:, :, 0] @ fused, 0)
    return p["fusion.2.weight"][:, :, 0] @ hidden


def reference_decoder(decoder: EnhancedDecoder, z: np.ndarray) -> np.ndarray:
    p = {name: t.detach().double().numpy() for name, t in decoder.state_dict().items()}
    stride, frames = decoder.config["stride"], z.shape[-1]
    hidden = np.maximum(p["expand.0.weight"][:, :, 0].T @ z, 0)
    out, start = np.zeros(frames * stride), 0
    for i, width in enumerate(decoder.slices):
        weight = p[f"convs.{i}.weight"][:, 0]  # (width, k)
        k = weight.shape[-1]
        full = np.zeros((frames - 1) * stride + k)
        for t in range(frames):  # overlap-add of each frame's waveform
            full[t * stride: t * stride + k] += hidden[start: start + width, t] @ weight
        pad = (k - stride) // 2
        out += full[pad: pad + frames * stride]
        start += width
    return out


def test_encoder_and_decoder_equal_a_numpy_reference():
    torch.manual_seed(1)
    encoder = EnhancedEncoder(N=16, L=4, stride=2, sample_rate=8000, spec_channels=8).double()
    decoder = EnhancedDecoder(N=16, L=4, stride=2).double()
    # .double() casts the float32 window; rebuild it in float64 so the comparison can be tight.
    encoder.spectrogram.window = torch.hann_window(encoder.spectrogram.n_fft, dtype=torch.float64)
    bins = encoder.spectrogram.bins
    with torch.no_grad():  # non-trivial statistics and affine, so every step is exercised
        encoder.spectrogram.set_statistics(torch.randn(bins, dtype=torch.float64), torch.rand(bins, dtype=torch.float64) + 0.5)
        encoder.spectrogram.scale.normal_()
        encoder.spectrogram.shift.normal_()
    x = torch.randn(2, 1, 600, dtype=torch.float64)
    with torch.no_grad():
        z = encoder(x)
        y = decoder(z)
    assert z.shape == (2, 16, 300) and y.shape == (2, 1, 600)
    for b in range(2):
        np.testing.assert_allclose(z[b].numpy(), reference_encoder(encoder, x[b, 0].numpy()), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(y[b, 0].numpy(), reference_decoder(decoder, z[b].numpy()), rtol=1e-9, atol=1e-9)
    assert (z < 0).any(), "the latent has no final nonlinearity, so it must take negative values"


def test_decoder_accepts_a_sources_axis(stages):
    _, decoder = stages[0]
    z = torch.randn(2, 4, 440, 30)
    with torch.no_grad():
        y = decoder(z)
        flat = decoder(z.reshape(8, 440, 30))
    assert y.shape == (2, 4, 1, 600)
    torch.testing.assert_close(y, flat.reshape(2, 4, 1, 600))


@pytest.mark.parametrize("filters, N, slices", [(1, 64, [32]), (2, 64, [32, 16]), (3, 440, [220, 110, 55]), (4, 64, [32, 16, 8, 4])])
def test_general_filters_halve_the_decoder_slices(filters, N, slices):
    decoder = EnhancedDecoder(N, 4, 4, filters=filters)
    encoder = EnhancedEncoder(N, 4, 4, 8000, filters=filters, spec_channels=8)
    assert decoder.slices == slices
    assert [conv.kernel_size[0] for conv in decoder.convs] == [4 * 2**level for level in range(filters)]
    assert [conv.kernel_size[0] for conv in encoder.convs] == [4 * 2**level for level in range(filters)]
    assert [conv.out_channels for conv in encoder.convs] == [N // 4] * filters
    expected = N * sum(slices) + sum(w * 4 * 2**level for level, w in enumerate(slices))
    assert trainable(decoder) == expected
    with torch.no_grad():
        assert decoder(encoder(torch.randn(1, 1, 800))).shape == (1, 1, 800)


# --- frame alignment -------------------------------------------------------------------------

def test_conv_branches_are_centred_on_the_same_samples():
    """Frame t of every branch covers samples centred on t*S + (S-1)/2; an impulse at t*S reaches frame t."""
    encoder = EnhancedEncoder(440, 20, 20, 8000)
    stride, length, t = 20, 800, 17
    impulses = torch.eye(length).unsqueeze(1)  # row n: an impulse at sample n
    with torch.no_grad():
        for conv in encoder.convs:
            conv.weight.fill_(1.0)
            reach = conv(impulses)[:, 0]  # (sample, frame): 1 where the sample is inside the frame's window
            assert reach.shape[-1] == length // stride
            samples = torch.nonzero(reach[:, t]).flatten().double()
            assert len(samples) == conv.kernel_size[0]
            assert samples.mean().item() == t * stride + (stride - 1) / 2
            assert reach[t * stride, t] == 1  # an impulse at the frame boundary shows up in frame t
            # A symmetric (triangular) filter peaks in frame t for an impulse at the frame's centre.
            k = conv.kernel_size[0]
            conv.weight.copy_(torch.minimum(torch.arange(1, k + 1), torch.arange(k, 0, -1)).float())
            response = conv(impulses[t * stride + stride // 2: t * stride + stride // 2 + 1])[0, 0]
            assert response.argmax().item() == t
            assert (response == response.max()).sum() == 1


def test_spectrogram_branch_is_resampled_to_the_conv_frames(stages):
    encoder, _ = stages[0]
    x = torch.randn(1, 1, 4000)
    with torch.no_grad():
        out = encoder.spectrogram(x, 200)
        raw = encoder.spectrogram(x, 4000 // 256 + 1)  # its own frame count: interpolation is the identity
    assert out.shape == (1, 256, 200)
    torch.testing.assert_close(out[..., 0], raw[..., 0])
    torch.testing.assert_close(out[..., -1], raw[..., -1])


# --- spectrogram statistics ------------------------------------------------------------------

def noise(seed: int, examples: int, length: int, sigma: float) -> torch.Tensor:
    return sigma * torch.randn(examples, 1, length, generator=torch.Generator().manual_seed(seed))


def test_statistics_of_white_noise_match_theory_and_normalise_fresh_data():
    """For white noise the periodogram is exponential: log10 has mean log10(sigma^2 sum w^2) - gamma/ln 10, std pi/(sqrt 6 ln 10)."""
    encoder = EnhancedEncoder(440, 20, 20, 8000)
    sigma = 0.5
    # 8 s examples: the few reflect-padded frames at each end (not white noise) barely count.
    data = noise(0, 16, 64000, sigma)
    mean, std = spectrogram_statistics(encoder, data.split(4))
    assert mean.shape == std.shape == (513,)
    torch.testing.assert_close(encoder.spectrogram.mean, mean)
    torch.testing.assert_close(encoder.spectrogram.std, std)
    middle = slice(10, 503)  # bins away from DC and Nyquist, where the periodogram is chi-square with 2 dof
    expected_mean = math.log10(sigma**2 * 0.375 * 1024) - 0.5772156649 / math.log(10)
    expected_std = math.pi / math.sqrt(6) / math.log(10)
    assert abs(mean[middle].mean().item() - expected_mean) < 0.02
    assert abs(std[middle].mean().item() - expected_std) < 0.02
    assert (mean[middle] - expected_mean).abs().max() < 0.1
    # Fresh data from the same distribution: per bin, ~0 mean and ~1 std after normalisation.
    spec = encoder.spectrogram
    fresh = spec.log_power(noise(1, 16, 64000, sigma)[:, 0])  # (64, 513, frames)
    normalised = (fresh - spec.mean[:, None]) / spec.std[:, None]
    assert normalised.mean(dim=(0, 2)).abs().mean() < 0.05
    assert normalised.mean(dim=(0, 2)).abs().max() < 0.2
    assert (normalised.std(dim=(0, 2)) - 1).abs().max() < 0.15
    # Unnormalised, the same checks fail by far (so they test something).
    assert fresh.mean(dim=(0, 2)).abs().min() > 1
    assert (fresh.std(dim=(0, 2))[middle] - 1).abs().min() > 0.3


def test_statistics_equal_a_two_pass_computation_for_any_batching_and_limit():
    branch = SpectrogramBranch(8000, channels=8)
    data = torch.cat([noise(2, 6, 3000, 1.0), noise(3, 5, 3000, 1e-3)])  # 11 examples, two very different levels
    values = branch.log_power(data[:7, 0]).double()
    want_mean, want_std = values.mean(dim=(0, 2)), values.std(dim=(0, 2))
    for batch in (1, 3, 11):
        mean, std = spectrogram_statistics(branch, [(chunk, "stems") for chunk in data.split(batch)], max_examples=7)
        torch.testing.assert_close(mean.double(), want_mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(std.double(), want_std, rtol=1e-6, atol=1e-6)


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"N": 440, "L": 20, "stride": 20, "sample_rate": 11025}, "multiple of 8000"),
        ({"N": 440, "L": 20, "stride": 20, "sample_rate": 44100}, "multiple of 8000"),
        ({"N": 444, "L": 20, "stride": 20, "sample_rate": 8000}, "divisible by 8"),
        ({"N": 440, "L": 20, "stride": 20, "sample_rate": 8000, "filters": 4}, "divisible by 16"),
        ({"N": 440, "L": 10, "stride": 20, "sample_rate": 8000}, "at least the stride"),
        ({"N": 440, "L": 21, "stride": 20, "sample_rate": 8000}, "must be even"),
        ({"N": 0, "L": 20, "stride": 20, "sample_rate": 8000}, "positive integer"),
    ],
)
def test_bad_construction_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnhancedEncoder(**kwargs)
    if "sample_rate" in kwargs and kwargs["sample_rate"] == 8000:
        decoder_kwargs = {k: v for k, v in kwargs.items() if k != "sample_rate"}
        with pytest.raises(ValueError, match=message):
            EnhancedDecoder(**decoder_kwargs)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.randn(2, 800), r"\(batch, 1, time\), got \(2, 800\)"),
        (torch.randn(2, 2, 800), r"\(batch, 1, time\), got \(2, 2, 800\)"),
        (torch.randn(1, 1, 810), "multiple of stride=20"),
        (torch.randn(1, 1, 500), "at least 513 samples"),
        (torch.ones(1, 1, 800, dtype=torch.int64), "floating-point"),
    ],
)
def test_bad_encoder_input_raises(stages, x, message):
    encoder, _ = stages[0]
    with pytest.raises(ValueError, match=message):
        encoder(x)


def test_bad_decoder_input_and_statistics_raise(stages):
    encoder, decoder = stages[0]
    with pytest.raises(ValueError, match=r"\(batch, 440, frames\)"):
        decoder(torch.randn(2, 400, 10))
    with pytest.raises(ValueError, match=r"\(batch, 440, frames\)"):
        decoder(torch.randn(440, 10))
    branch = SpectrogramBranch(8000)
    with pytest.raises(ValueError, match=r"shape \(513,\)"):
        branch.set_statistics(torch.zeros(512), torch.ones(512))
    with pytest.raises(ValueError, match="positive"):
        branch.set_statistics(torch.zeros(513), torch.zeros(513))
    with pytest.raises(ValueError, match="empty"):
        spectrogram_statistics(encoder, [])
    with pytest.raises(ValueError, match="EnhancedEncoder or a SpectrogramBranch"):
        spectrogram_statistics(decoder, [torch.randn(1, 800)])
    with pytest.raises(ValueError, match="waveform tensor"):
        spectrogram_statistics(branch, ["not audio"])


# --- ablations: no spectrogram branch, the plain pair, EncoderSeparator (chapter 02) ----------

TINY = dict(N=16, L=4, stride=4, B=8, H=16, Sc=8, P=3, X=2, R=1, spec_channels=8)
"""A tiny separator for behavioural tests (frames of 4 samples at 8 kHz)."""


def test_dropping_the_spectrogram_equals_a_silent_spectrogram_branch():
    """spec_channels=0 is the full encoder whose spectrogram branch outputs zeros (its fusion columns dropped)."""
    torch.manual_seed(2)
    full = EnhancedEncoder(32, 4, 4, 8000, spec_channels=8)
    bare = EnhancedEncoder(32, 4, 4, 8000, spec_channels=0)
    assert bare.spectrogram is None and bare.config["spec_channels"] == 0
    assert bare.fusion[0].in_channels == 3 * 8
    assert trainable(bare) == 8 * (4 + 8 + 16) + 24 * 32 + 32 * 32
    assert (bare.min_length, full.min_length) == (4, 516)  # one stride; 513 rounded up to a multiple of 4
    with torch.no_grad():
        for mine, theirs in zip(bare.convs, full.convs):
            mine.weight.copy_(theirs.weight)
        bare.fusion[0].weight.copy_(full.fusion[0].weight[:, :24])
        bare.fusion[2].weight.copy_(full.fusion[2].weight)
        x = torch.randn(2, 1, 800)
        different = (bare(x) - full(x)).abs().max()
        full.spectrogram.mel.weight.zero_()
        full.spectrogram.mel.bias.zero_()
        torch.testing.assert_close(bare(x), full(x))
        assert different > 1e-3  # with a live spectrogram branch the two differ
        assert bare(torch.randn(1, 1, 40)).shape == (1, 32, 10)  # no n_fft/2 + 1 minimum any more
    with pytest.raises(ValueError, match="no spectrogram branch"):
        spectrogram_statistics(bare, [x])
    with pytest.raises(ValueError, match="non-negative integer"):
        EnhancedEncoder(32, 4, 4, 8000, spec_channels=-1)


def test_plain_pair_with_hidden_width_equals_the_enhanced_pair_with_one_branch():
    """PlainEncoder(hidden=N/4) is EnhancedEncoder(filters=1, spec_channels=0); PlainDecoder(hidden=N/2) is EnhancedDecoder(filters=1)."""
    torch.manual_seed(3)
    N, L, S = 32, 8, 4
    enhanced_encoder, enhanced_decoder = EnhancedEncoder(N, L, S, 8000, filters=1, spec_channels=0), EnhancedDecoder(N, L, S, filters=1)
    encoder, decoder = PlainEncoder(N, L, S, hidden=N // 4), PlainDecoder(N, L, S, hidden=N // 2)
    assert trainable(encoder) == L * N // 4 + N // 4 * N + N * N == trainable(enhanced_encoder)
    assert trainable(decoder) == N * N // 2 + N // 2 * L == trainable(enhanced_decoder)
    encoder.load_state_dict({
        "conv.weight": enhanced_encoder.convs[0].weight, "fusion.1.weight": enhanced_encoder.fusion[0].weight,
        "fusion.3.weight": enhanced_encoder.fusion[2].weight,
    })
    decoder.load_state_dict({"expand.0.weight": enhanced_decoder.expand[0].weight, "conv.weight": enhanced_decoder.convs[0].weight})
    x = torch.randn(3, 1, 400)
    with torch.no_grad():
        z = encoder(x)
        torch.testing.assert_close(z, enhanced_encoder(x))
        torch.testing.assert_close(decoder(z), enhanced_decoder(z))
    assert z.shape == (3, N, 100) and decoder(z).shape == x.shape


def test_plain_pair_without_hidden_layer_is_a_filterbank_and_its_adjoint():
    """hidden=0: N filters of L samples (N L weights each side); with the same weights the decoder is the encoder's adjoint."""
    torch.manual_seed(4)
    N, L, S = 16, 12, 4
    encoder, decoder = PlainEncoder(N, L, S), PlainDecoder(N, L, S)
    assert trainable(encoder) == trainable(decoder) == N * L
    assert encoder.conv.padding == (4,) and decoder.conv.padding == (4,)  # (L - S) / 2
    x = torch.randn(2, 1, 200, dtype=torch.float64)
    z = torch.randn(2, N, 50, dtype=torch.float64)
    encoder.double(), decoder.double()
    with torch.no_grad():
        decoder.conv.weight.copy_(encoder.conv.weight)
        np.testing.assert_allclose(
            encoder(x)[1].numpy(), reference_conv(x[1, 0].numpy(), encoder.conv.weight.numpy(), S, 4), rtol=1e-12, atol=1e-12
        )
        lhs = (encoder(x) * z).sum()
        rhs = (x * decoder(z)).sum()
    assert decoder(z).shape == x.shape
    assert abs(lhs.item() - rhs.item()) < 1e-9 * abs(lhs.item())
    with pytest.raises(ValueError, match="multiple of stride=4"):
        encoder(torch.randn(1, 1, 201, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(batch, 16, frames\)"):
        decoder(torch.randn(2, 8, 50))


@pytest.fixture(scope="module")
def separators(one_thread):
    torch.manual_seed(5)
    return {kind: EncoderSeparator(kind, **TINY) for kind in ENCODERS}


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("time", [1, 37, 516, 801])
def test_separator_keeps_any_length(separators, kind, time):
    model = separators[kind]
    with torch.no_grad():
        assert model(torch.randn(2, 1, time)).shape == (2, 4, 1, time)
    assert model.padded_length(time) % 4 == 0 and model.padded_length(time) >= max(time, model.min_length)


@pytest.mark.parametrize("kind", ENCODERS)
def test_separator_pads_with_zeros_and_crops(kind):
    """Without normalisation, separating x equals separating x followed by zeros, cropped; with it, the output scales with the input."""
    torch.manual_seed(6)
    model = EncoderSeparator(kind, **TINY, normalize=False).eval()
    x = torch.randn(2, 1, 830)
    with torch.no_grad():
        padded = F.pad(x, (0, model.padded_length(830) - 830))
        torch.testing.assert_close(model(x), model(padded)[..., :830])
        if kind == "multi+spec":  # the log spectrogram does not scale with the input, so neither does the output
            assert (model(10 * x) - 10 * model(x)).abs().max() > 1e-3 * model(10 * x).abs().max()
        normalised = EncoderSeparator(kind, **TINY).eval()
        normalised.load_state_dict(model.state_dict())
        torch.testing.assert_close(normalised(10 * x), 10 * normalised(x), rtol=1e-4, atol=1e-6)
        scale = x.std(dim=-1, keepdim=True, correction=0)
        torch.testing.assert_close(normalised(x), model(x / scale) * scale.unsqueeze(1), rtol=1e-4, atol=1e-6)


def test_separator_parameter_tables_share_the_mask_network():
    tables = {kind: EncoderSeparator(kind, **TINY).parameter_table() for kind in ENCODERS}
    mask = {t["mask_network"] for t in tables.values()}
    assert len(mask) == 1
    assert tables["plain"]["encoder"] == tables["plain"]["decoder"] == 16 * 4
    assert tables["multi"]["encoder"] == trainable(EnhancedEncoder(16, 4, 4, 8000, spec_channels=0))
    assert tables["multi+spec"]["encoder"] == trainable(EnhancedEncoder(16, 4, 4, 8000, spec_channels=8))
    assert tables["multi"]["decoder"] == tables["multi+spec"]["decoder"] == trainable(EnhancedDecoder(16, 4, 4))
    for table in tables.values():
        assert table["total"] == table["encoder"] + table["mask_network"] + table["decoder"]


def test_variants_built_after_the_same_seed_share_the_initial_masking_network():
    reference = EncoderSeparator("multi+spec", **TINY)
    builds = [
        lambda: EncoderSeparator("plain", **TINY),
        lambda: EncoderSeparator("multi+spec", **TINY),
        lambda: EncoderSeparator.capacity_control(reference),
    ]
    states = []
    for build in builds:
        torch.manual_seed(9)
        states.append(build().mask_network.state_dict())
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        for name, tensor in state.items():
            torch.testing.assert_close(tensor, states[0][name])
    torch.manual_seed(10)
    assert not torch.equal(EncoderSeparator("plain", **TINY).mask_network.bottleneck.weight, states[0]["bottleneck.weight"])


def test_separator_defaults_are_meta_tasnets_first_stage():
    model = EncoderSeparator()
    table = model.parameter_table()
    assert (table["encoder"], table["decoder"]) == (599_450, 182_600)
    assert trainable(model.encoder.spectrogram) == 132_610
    assert model.config["sample_rate"] == 8000 and model.stride == 20 and model.min_length == 520


@pytest.mark.parametrize("sizes", [TINY, {}], ids=["tiny", "paper-stage-0"])
def test_capacity_control_matches_the_parameter_count(sizes):
    reference = EncoderSeparator("multi+spec", **sizes)
    control = EncoderSeparator.capacity_control(reference)
    c = control.config
    assert c["encoder"] == "plain" and c["hidden"] >= 1
    assert {k: v for k, v in c.items() if k not in ("encoder", "hidden")} == {
        k: v for k, v in reference.config.items() if k not in ("encoder", "hidden")
    }
    target = reference.parameter_table()["total"]
    gap = abs(control.parameter_table()["total"] - target)
    assert gap <= c["L"] + c["N"]  # the count grows by 2 (L + N) per hidden channel
    for other in (c["hidden"] - 1, c["hidden"] + 1):  # no other width comes closer
        assert abs(EncoderSeparator(**{**c, "hidden": other}).parameter_table()["total"] - target) >= gap
    assert control.parameter_table()["mask_network"] == reference.parameter_table()["mask_network"]


def test_separator_statistics_see_normalised_mixtures():
    torch.manual_seed(7)
    model = EncoderSeparator("multi+spec", **TINY)
    x = 0.05 * torch.randn(6, 1, 2000)
    mean, std = model.set_spectrogram_statistics([x[:4], (x[4:], "stems")])
    unit = x / x.std(dim=-1, keepdim=True, correction=0)
    want_mean, want_std = spectrogram_statistics(SpectrogramBranch(8000, channels=8), [unit])
    torch.testing.assert_close(mean, want_mean, rtol=1e-4, atol=1e-3)  # float32 spectra of slightly different inputs
    torch.testing.assert_close(std, want_std, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model.encoder.spectrogram.mean, mean)
    louder, _ = model.set_spectrogram_statistics([30 * x])  # the level does not matter
    torch.testing.assert_close(louder, mean, rtol=1e-4, atol=1e-3)
    raw = EncoderSeparator("multi+spec", **TINY, normalize=False)
    raw_mean, _ = raw.set_spectrogram_statistics([x])
    assert (raw_mean - mean).abs().min() > 1  # log10 of a power 400 times smaller: about -2.6 in every bin
    for kind in ("plain", "multi"):
        with pytest.raises(ValueError, match="no spectrogram branch"):
            EncoderSeparator(kind, **TINY).set_spectrogram_statistics([x])


def test_separator_checkpoints_rebuild_from_config(tmp_path):
    torch.manual_seed(8)
    model = EncoderSeparator("multi+spec", **TINY)
    data = torch.utils.data.TensorDataset(0.1 * torch.randn(4, 1, 800), 0.1 * torch.randn(4, 4, 1, 800))
    model.set_spectrogram_statistics([data.tensors[0]])
    Trainer(model, data, config=TrainerConfig(batch_size=2), progress=False, device="cpu", checkpoint=tmp_path / "run.pt").fit(2)
    config = json.loads(json.dumps(model.config))
    rebuilt = EncoderSeparator(**config)
    load_checkpoint(tmp_path / "run.pt", rebuilt)
    x = torch.randn(1, 1, 900)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    torch.testing.assert_close(rebuilt.encoder.spectrogram.std, model.encoder.spectrogram.std)
    with pytest.raises(ValueError, match="encoder='multi\\+spec' in the checkpoint but 'plain'"):
        load_checkpoint(tmp_path / "run.pt", EncoderSeparator(**{**config, "encoder": "plain"}))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"encoder": "spec"}, "encoder must be one of 'plain', 'multi', 'multi\\+spec'"),
        ({"encoder": "multi", "hidden": 8}, "hidden applies to the \"plain\" encoder only"),
        ({"encoder": "multi+spec", "spec_channels": 0}, "spec_channels must be a positive integer"),
        ({"encoder": "plain", "hidden": -1}, "hidden must be a non-negative integer"),
        ({"encoder": "plain", "X": 0}, "X must be a positive integer"),
        ({"encoder": "plain", "L": 4, "stride": 8}, "at least the stride"),
    ],
)
def test_bad_separator_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncoderSeparator(**{**TINY, **kwargs})


def test_bad_separator_input(separators):
    model = separators["multi+spec"]
    for bad, message in [
        (torch.randn(2, 800), r"\(batch, 1, time\), got \(2, 800\)"),
        (torch.randn(1, 2, 800), r"\(batch, 1, time\), got \(1, 2, 800\)"),
        (torch.zeros(1, 1, 0), "non-empty floating-point"),
        (torch.ones(1, 1, 800, dtype=torch.int64), "non-empty floating-point"),
    ]:
        with pytest.raises(ValueError, match=message):
            model(bad)
    with pytest.raises(ValueError, match="reference must be an EncoderSeparator"):
        EncoderSeparator.capacity_control(EnhancedEncoder(16, 4, 4, 8000))


def test_the_decoder_is_the_sum_of_its_slices_transposed_convolutions():
    decoder = EnhancedDecoder(40, 20, 20)
    z = torch.randn(2, 40, 30)
    parts = decoder.expand(z).split(decoder.slices, dim=1)
    expected = sum(F.conv_transpose1d(part, conv.weight, stride=conv.stride[0], padding=conv.padding[0])
                   for conv, part in zip(decoder.convs, parts))
    torch.testing.assert_close(decoder(z), expected, rtol=1e-5, atol=1e-5)
