"""The separation interface both models own: rates, stride, minimum length, stage inputs and the last stage's estimates."""

from __future__ import annotations

import pytest
import torch
import torchaudio
import torchaudio.functional as AF

from metalearn_sep.models import ConvTasNet, MetaTasNet
from metalearn_sep.models.separator import Separator

TINY = dict(N=40, L=20, stride=20, B=16, H=16, X=2, R=1, P=3, spec_channels=16)
"""A small three-stage Meta-TasNet with the spectrogram branch (stride 20 at 8 kHz)."""

BARE = dict(N=16, B=8, H=8, X=2, R=1, spec_channels=0)
"""A small Meta-TasNet without spectrogram branch: its shortest input is one stride."""

SMALL = dict(num_sources=3, N=16, L=8, B=8, H=16, Sc=8, P=3, X=2, R=1)
"""A small ConvTasNet (stride 4)."""


@pytest.fixture(scope="module")
def meta() -> MetaTasNet:
    torch.manual_seed(0)
    return MetaTasNet(stages=3, **TINY).eval()


@pytest.fixture(scope="module")
def conv() -> ConvTasNet:
    torch.manual_seed(0)
    return ConvTasNet(**SMALL).eval()


def by_hand(signal: torch.Tensor, rate: int, rates: list[int], lengths: list[int]) -> list[torch.Tensor]:
    """Resample with torchaudio and crop or zero-pad, one stage at a time."""
    out = []
    for stage_rate, length in zip(rates, lengths):
        x = signal.float() if stage_rate == rate else AF.resample(signal.float(), rate, stage_rate)
        out.append(torch.nn.functional.pad(x, (0, max(0, length - x.shape[-1])))[..., :length])
    return out


def test_both_models_are_separators(meta, conv):
    assert isinstance(meta, Separator) and isinstance(conv, Separator)
    assert meta.num_sources == 4 and conv.num_sources == conv.config["num_sources"]


def test_rates_stride_and_minimum_of_conv_tasnet(conv):
    assert (conv.sample_rates, conv.stride, conv.min_length) == ([8000], 4, 1)
    other = ConvTasNet(**SMALL, sample_rate=16000.0)
    assert other.sample_rates == [16000] and other.config["sample_rate"] == 16000
    assert ConvTasNet(**other.config).sample_rates == [16000]
    with pytest.raises(ValueError, match="sample_rate must be a positive integer number of Hz"):
        ConvTasNet(**SMALL, sample_rate=0)


def test_from_torchaudio_records_the_rate():
    reference = torchaudio.models.ConvTasNet(num_sources=2, enc_kernel_size=8, enc_num_feats=16, msk_kernel_size=3,
                                             msk_num_feats=8, msk_num_hidden_feats=16, msk_num_layers=2, msk_num_stacks=1)
    assert ConvTasNet.from_torchaudio(reference).sample_rates == [8000]
    assert ConvTasNet.from_torchaudio(reference, sample_rate=16000).config["sample_rate"] == 16000


def test_rates_stride_and_minimum_of_meta_tasnet(meta):
    assert (meta.sample_rates, meta.stride) == ([8000, 16000, 32000], 20)
    # n_fft/2 + 1 = 513, 1025, 2049 samples at 8, 16, 32 kHz, rounded up to the stage strides 20, 40, 80
    # and counted at 8 kHz: 520, 520, 520.
    assert meta.min_length == 520
    with torch.device("meta"):
        released = MetaTasNet()
    assert (released.sample_rates, released.stride, released.min_length) == ([8000, 16000, 32000], 20, 520)


def test_without_spectrogram_the_minimum_is_the_stride():
    model = MetaTasNet(**BARE).eval()
    assert (model.sample_rates, model.stride, model.min_length) == ([8000, 16000, 32000], 20, 20)
    inputs = model.stage_inputs(torch.randn(2, 1, 20), 8000)
    assert [x.shape[-1] for x in inputs] == [20, 40, 80]
    with torch.no_grad():
        assert model.separate_stages(inputs).shape == (2, 4, 1, 80)


@pytest.mark.parametrize("rate", [8000, 32000, 44100])
@pytest.mark.parametrize("pad", [False, True])
def test_stage_inputs_resample_and_crop_or_pad(meta, rate, pad):
    torch.manual_seed(1)
    signal = torch.randn(2, 1, rate // 10 + 7)  # 0.1 s and a few samples: not a whole number of frames
    exact = signal.shape[-1] * 8000 / rate
    frames = -int(-exact // 20) if pad else int(exact // 20)
    lengths = [frames * 20 * 2**s for s in range(3)]
    inputs = meta.stage_inputs(signal, rate, pad=pad)
    assert [tuple(x.shape) for x in inputs] == [(2, 1, n) for n in lengths]
    assert all(x.dtype == torch.float32 for x in inputs)
    for mine, theirs in zip(inputs, by_hand(signal, rate, meta.sample_rates, lengths)):
        assert torch.equal(mine, theirs)


def test_padded_stage_inputs_cover_every_sample_with_zeros_after(meta):
    signal = torch.randn(1, 1, 3210)  # at 32 kHz: 802.5 samples at 8 kHz -> 41 frames padded, 40 cropped
    padded, cropped = meta.stage_inputs(signal, 32000, pad=True), meta.stage_inputs(signal, 32000)
    assert [x.shape[-1] for x in padded] == [820, 1640, 3280] and [x.shape[-1] for x in cropped] == [800, 1600, 3200]
    assert torch.equal(padded[-1][..., :3210], signal) and not padded[-1][..., 3210:].any()
    assert torch.equal(cropped[-1], signal[..., :3200])


def test_stage_inputs_of_conv_tasnet(conv):
    signal = torch.randn(3, 1, 1001, dtype=torch.float64)
    (cropped,), (padded,) = conv.stage_inputs(signal, 16000), conv.stage_inputs(signal, 16000, pad=True)
    assert (cropped.shape[-1], padded.shape[-1], padded.dtype) == (500, 504, torch.float32)
    assert torch.equal(cropped, AF.resample(signal.float(), 16000, 8000)[..., :500])


def test_stage_inputs_resample_in_float32_under_autocast(meta):
    signal = torch.randn(1, 1, 3200)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inputs = meta.stage_inputs(signal.bfloat16(), 32000)
    assert all(x.dtype == torch.float32 for x in inputs)
    assert torch.equal(inputs[0], AF.resample(signal.bfloat16().float(), 32000, 8000)[..., :800])


def test_stage_inputs_reject_a_signal_shorter_than_one_frame(meta):
    with pytest.raises(ValueError, match="shorter than one latent frame"):
        meta.stage_inputs(torch.randn(1, 1, 79), 32000)  # 19.75 samples at 8 kHz
    with pytest.raises(ValueError, match="rate must be a positive integer"):
        meta.stage_inputs(torch.randn(1, 1, 800), 0)
    with pytest.raises(ValueError, match=r"\(\.\.\., time\)"):
        meta.stage_inputs([0.0] * 800, 8000)


def test_separate_stages_is_the_last_stage_of_forward(meta):
    torch.manual_seed(2)
    inputs = meta.stage_inputs(torch.randn(2, 1, 2080), 32000)
    with torch.no_grad():
        last = meta.separate_stages(inputs)
        assert torch.equal(last, meta(inputs)[-1].estimates)
    assert last.shape == (2, 4, 1, 2080)
    with pytest.raises(ValueError, match="sequence of 3 mixtures"):
        meta.separate_stages(inputs[:2])


def test_separate_stages_of_conv_tasnet_is_its_forward(conv):
    x = torch.randn(2, 1, 203)
    with torch.no_grad():
        assert torch.equal(conv.separate_stages([x]), conv(x))
