"""Whole-song separation in memory: rates, lengths, channels, exact chunking, least-squares rescaling, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_sep import SOURCES
from metalearn_sep.audio import resample
from metalearn_sep.models.conv_tasnet import ConvTasNet
from metalearn_sep.models.meta_tasnet import MetaTasNet
from metalearn_sep.models.separator import Separator
from metalearn_sep.separate import SeparationPlan, least_squares_gains, plan_windows, separate
from metalearn_sep.windows import original_windows
from tiny_models import noise, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


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


class LocalStages(Separator):
    """A 3-stage stub (8/16/32 kHz, stride 20) with a receptive field of a few samples: exactly shift invariant.

    Each stage adds the previous stage's latents, upsampled, so a stage input that is
    misaligned with the others changes the output.
    """

    stride, min_length, sample_rates, num_sources = 20, 20, [8000, 16000, 32000], 4

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([LocalStage(True), LocalStage(False), LocalStage(False)])
        self.calls = 0

    def separate_stages(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        previous = None
        for stage, x in zip(self.stages, inputs):
            output = stage(x, previous)
            previous = output.latents
        return output.estimates


class GainedFilters(Separator):
    """A single-rate stub (8 kHz): source i = g_i (h_i * x). The true stems are h_i * x, which sum to x."""

    stride, min_length, sample_rates, num_sources = 1, 1, [8000], 4

    def __init__(self, gains: list[float]) -> None:
        super().__init__()
        self.register_buffer("h", filters(1))
        self.register_buffer("gains", torch.tensor(gains).view(1, -1, 1))

    def separate_stages(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return (F.conv1d(inputs[0], self.h, padding=2) * self.gains).unsqueeze(2)

    def stems(self, mixture: torch.Tensor) -> torch.Tensor:
        """The true stems ``(4, C, T)`` of ``mixture`` ``(C, T)``."""
        return F.conv1d(mixture.unsqueeze(1), self.h, padding=2).transpose(0, 1)


class Refuses(Separator):
    """A model that must not be reached: bad input has to be rejected before any work."""

    stride, min_length, sample_rates, num_sources = 1, 1, [8000], 4

    def separate_stages(self, inputs: list[torch.Tensor]) -> torch.Tensor:
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


def test_a_conv_tasnet_separates_at_its_own_rate():
    torch.manual_seed(0)
    model, mixture = ConvTasNet(N=16, L=8, B=8, H=16, Sc=8, X=2, R=1, sample_rate=8000), noise(2, 4410)
    stems = separate(model, mixture, 44100, chunk_seconds=0.05, context_seconds=0.01, rescale=False)
    assert stems.shape == (4, 2, 4410)
    with torch.no_grad():  # one window covering the song: the model's own forward at 8 kHz, resampled back
        x = resample(mixture, 44100, 8000)
        whole = model((x / x.std(dim=-1, keepdim=True)).unsqueeze(1))[:, :, 0]
    expected = resample(whole, 8000, 44100)[..., :4410].transpose(0, 1)
    torch.testing.assert_close(separate(model, mixture, 44100, chunk_seconds=1.0, rescale=False), expected, rtol=1e-4, atol=1e-5)


def test_meta_tasnet_length_constraints_are_read_from_the_model():
    plan = SeparationPlan.make(tiny_model(), 1, 44100, 44100)
    assert plan.model.sample_rates == [8000, 16000, 32000]
    assert all(w.length % 20 == 0 and w.length >= 513 for w in plan.windows)
    stems = separate(tiny_model(), noise(1, 50), 44100)  # 1.1 ms: padded to the model's minimum and cropped back
    assert stems.shape == (4, 1, 50)


def test_a_meta_tasnet_without_spectrogram_branch_separates():
    torch.manual_seed(0)
    model = MetaTasNet(N=16, B=8, H=8, X=2, R=1, spec_channels=0)
    stems = separate(model, noise(2, 132300), 44100)
    assert stems.shape == (4, 2, 132300) and torch.isfinite(stems).all()


def test_a_model_that_is_no_separator_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="needs a Separator model .*got a Linear"):
        separate(nn.Linear(2, 2), noise(1, 100), 8000)


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




# ----------------------------------------------------------------------------- the original protocol
def test_original_windows_are_the_original_inference_chunks():
    total, chunks, context, stride = 200_003, 8, 64_000, 20
    borders = [int(total / chunks * c + 0.5) for c in range(chunks)] + [total]  # MultiTasNet.inference's
    windows = original_windows(total, chunks, context, stride)
    assert [(w.core_start, w.core_stop) for w in windows] == list(zip(borders, borders[1:]))
    for w, (core_start, core_stop) in zip(windows, zip(borders, borders[1:])):
        start, stop = max(0, core_start - context), min(core_stop + context, total)
        start, stop = (start, stop - (stop - start) % stride) if start == 0 else (start + (stop - start) % stride, stop)
        assert (w.start, w.start + w.length) == (start, stop)
    assert windows[-1].start + windows[-1].length == total


def test_the_original_protocol_equals_the_original_evaluation_by_hand():
    """evaluate.py's steps written out: kaiser_best resampling, (T_0 + 1) 2^s inputs, std, one pass, lstsq."""
    import torchaudio.functional as AF

    from metalearn_sep.audio import KAISER_BEST

    model, rate = LocalStages(), 44100
    mixture = 0.3 * noise(2, round(20.3 * rate), seed=8)  # 8 cores of about 2.5 s, with 8 s of context each
    got = separate(model, mixture, rate, protocol="original")
    T0 = mixture.shape[-1] * 8000 // rate
    inputs = []
    for s, stage_rate in enumerate(model.sample_rates):
        x = AF.resample(mixture, rate, stage_rate, **KAISER_BEST)
        x = F.pad(x, (0, max(0, (T0 + 1) * 2**s - x.shape[-1])))[:, : (T0 + 1) * 2**s]
        inputs.append(x / x.std(dim=-1, keepdim=True))
    padded = -(-(T0 + 1) // 20) * 20  # the stub takes multiples of 20; it is local, so the padding changes nothing before it
    with torch.no_grad():
        out = model.separate_stages([F.pad(x, (0, (padded - T0 - 1) * 2**s)).unsqueeze(1) for s, x in enumerate(inputs)])
    out = out[:, :, 0, : (T0 + 1) * 4].transpose(0, 1)  # (K, C, (T_0 + 1) 4) at 32 kHz
    back = AF.resample(out.contiguous(), 32000, rate, **KAISER_BEST)[..., : mixture.shape[-1]]
    expected = back * least_squares_gains(back, mixture)[..., None]
    assert model.calls == 8 * 2 + 1  # eight windows per channel, then the pass by hand
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_the_original_protocol_takes_no_window_lengths_and_protocols_are_named():
    with pytest.raises(ValueError, match="original protocol has its own windows"):
        separate(tiny_model(), noise(1, 8000), 8000, chunk_seconds=4.0, protocol="original")
    with pytest.raises(ValueError, match="protocol must be one of 'course', 'original', got 'paper'"):
        separate(tiny_model(), noise(1, 8000), 8000, protocol="paper")


def test_a_model_returning_other_shapes_than_it_states_is_named():
    class ThreeStems(GainedFilters):
        def separate_stages(self, inputs: list[torch.Tensor]) -> torch.Tensor:
            return super().separate_stages(inputs)[:, :3]

    with pytest.raises(ValueError, match=r"must return estimates of shape \(1, 4, 1, \d+\), got \(1, 3, 1, \d+\)"):
        separate(ThreeStems([1.0, 1.0, 1.0, 1.0]), noise(1, 8000), 8000)
