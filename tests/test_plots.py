"""Tests of metalearn_sep.plots: each figure draws what it says, on small inputs, with Agg."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from IPython.core.formatters import DisplayFormatter
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from metalearn_sep import SOURCES, plots

SR = 8000


pytestmark = pytest.mark.usefixtures("one_thread")


def sine(freq: float, seconds: float = 0.5, amplitude: float = 1.0, sr: int = SR) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


# --- spectrograms -----------------------------------------------------------------


def test_default_n_fft_is_about_32_ms():
    assert [plots.default_n_fft(r) for r in (8000, 16000, 32000, 44100)] == [256, 512, 1024, 1024]


def test_log_spectrogram_is_in_db_re_full_scale():
    db, freqs, times = plots.log_spectrogram(sine(1000.0), SR, n_fft=256)
    assert db.shape == (129, 4000 // 64 + 1)
    assert freqs[-1] == 4000 and times[1] == pytest.approx(64 / SR)
    peak_bin = int(db[:, 10:-10].mean(-1).argmax())
    assert freqs[peak_bin] == 1000
    assert db[peak_bin, 10:-10].mean() == pytest.approx(0.0, abs=0.1)
    quiet, _, _ = plots.log_spectrogram(sine(1000.0, amplitude=0.1), SR, n_fft=256)
    assert quiet[peak_bin, 10:-10].mean() == pytest.approx(-20.0, abs=0.1)
    # Stereo: channel powers are averaged, so one silent channel costs 3 dB.
    half, _, _ = plots.log_spectrogram(torch.stack([sine(1000.0), torch.zeros(4000)]), SR, n_fft=256)
    assert half[peak_bin, 10:-10].mean() == pytest.approx(-10 * math.log10(2), abs=0.1)


def test_spectrogram_draws_image_axes_and_colorbar():
    fig = plots.spectrogram(sine(440.0), SR, title="A4", n_fft=256)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # image + colour bar
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (129, 63)
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "frequency (Hz)" and ax.get_title() == "A4"
    vmin, vmax = ax.images[0].get_clim()
    assert vmax - vmin == plots.DYNAMIC_RANGE_DB


def test_new_figures_display_once_as_png_without_pyplot():
    fig = plots.spectrogram(sine(440.0), SR)
    assert isinstance(fig, plots.InlineFigure)
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"].startswith(b"\x89PNG") and data["text/plain"].startswith("<InlineFigure")


def test_spectrogram_into_given_axes_with_shared_scale_and_max_freq():
    fig = Figure()
    ax = fig.add_subplot()
    out = plots.spectrogram(sine(440.0).numpy(), SR, ax=ax, n_fft=256, max_freq=1000.0, vmin=-70.0, vmax=5.0, colorbar=False)
    assert out is fig and len(fig.axes) == 1
    image = ax.images[0]
    assert image.get_array().shape[0] == 33  # bins 0, 31.25, ..., 1000 Hz
    assert image.get_clim() == (-70.0, 5.0)


@pytest.mark.parametrize(
    ("audio", "kwargs", "message"),
    [
        (torch.zeros(1, 2, 100), {}, r"\(time,\) or \(channel, time\)"),
        (torch.tensor([0.0, float("nan"), 0.0]), {}, "NaN"),
        ([0.0, 1.0], {}, "torch.Tensor or a numpy array"),
        (torch.zeros(100), {"n_fft": 2}, "n_fft"),
        (torch.zeros(100), {"max_freq": 0.0}, "max_freq"),
    ],
)
def test_spectrogram_rejects_bad_input(audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.spectrogram(audio, SR, **kwargs)


def test_spectrogram_rejects_bad_rate():
    with pytest.raises(ValueError, match="sample_rate"):
        plots.spectrogram(torch.zeros(100), 0)


# --- waveforms ----------------------------------------------------------------------


def test_waveforms_one_row_per_stem_on_one_scale():
    stems = torch.stack([sine(100.0 * (i + 1), amplitude=0.8 / (i + 1)) for i in range(4)]).unsqueeze(1).repeat(1, 2, 1)
    fig = plots.waveforms(stems, SR)
    assert len(fig.axes) == 4
    assert [ax.get_ylabel() for ax in fig.axes] == ["drums", "bass", "other", "vocals"]
    for ax in fig.axes:  # shared: 1.05 x the loudest peak
        assert ax.get_ylim() == pytest.approx((-0.84, 0.84))
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # left and right
    assert np.allclose(fig.axes[1].lines[0].get_ydata(), stems[1, 0].numpy())


def test_waveforms_draws_long_signals_as_an_envelope():
    x = torch.rand(2, 3, 20_000) - 0.5
    fig = plots.waveforms(x, SR, names=["a", "b"])
    polys = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(polys) == 3 and not fig.axes[0].lines
    vertices = polys[0].get_paths()[0].vertices
    assert vertices[:, 1].max() == pytest.approx(float(x[0, 0].max()))
    assert vertices[:, 1].min() == pytest.approx(float(x[0, 0].min()))


def test_waveforms_rejects_bad_shapes():
    with pytest.raises(ValueError, match="names must be 4 strings"):
        plots.waveforms(torch.zeros(4, 1, 100), SR, names=["a", "b"])
    with pytest.raises(ValueError, match=r"\(source, channel, time\)"):
        plots.waveforms(torch.zeros(100), SR)


def test_stems_overview_panels_share_scales():
    stems = torch.stack([sine(250.0, amplitude=0.5), sine(625.0, amplitude=0.05)]).unsqueeze(1)  # on STFT bins
    fig = plots.stems_overview(stems.sum(0), stems, SR, names=["bass", "vocals"])
    assert len(fig.axes) == 2 * 3 + 1  # (waveform, spectrogram) x (mixture + 2) + colour bar
    rows = np.array(fig.axes[:6]).reshape(3, 2)
    assert [ax.get_ylabel() for ax in rows[:, 0]] == ["mixture", "bass", "vocals"]
    assert len({ax.get_ylim() for ax in rows[:, 0]}) == 1
    clims = {ax.images[0].get_clim() for ax in rows[:, 1]}
    assert len(clims) == 1
    # The quiet stem stays 20 dB darker than the loud one on the shared scale.
    loud, quiet = rows[1, 1].images[0].get_array().max(), rows[2, 1].images[0].get_array().max()
    assert loud - quiet == pytest.approx(20.0, abs=0.2)


def test_stems_overview_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="to match the mixture"):
        plots.stems_overview(torch.zeros(1, 100), torch.zeros(4, 1, 90), SR)


# --- learning curves ----------------------------------------------------------------


def trainer_history(steps: int = 30, every: int = 10) -> list[dict[str, float]]:
    history = []
    for step in range(1, steps + 1):
        record = {"step": step, "loss": -0.5 * step, "lr": 1e-3, "seconds": 0.1 * step}
        if step % every == 0:
            record |= {"valid_drums": step / 10, "valid_mean": step / 5}
        history.append(record)
    return history


def test_learning_curves_from_trainer_records():
    fig = plots.learning_curves(trainer_history())
    assert len(fig.axes) == 2
    loss_ax, valid_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["training loss"] and loss_ax.get_ylabel() == "training loss"
    assert list(loss_ax.lines[0].get_xdata()) == list(range(1, 31))
    assert [line.get_label() for line in valid_ax.lines] == ["drums", "mean"]
    assert valid_ax.get_ylabel() == "validation SI-SDR improvement (dB)"
    assert list(valid_ax.lines[1].get_xdata()) == [10, 20, 30] and list(valid_ax.lines[1].get_ydata()) == [2, 4, 6]


def test_learning_curves_from_dict_of_lists_drops_nan_and_smooths_loss():
    nan = float("nan")
    history = {"step": [1, 2, 3, 4], "loss": [4.0, 2.0, 3.0, 1.0], "valid_sdr": [nan, 1.0, nan, 2.0]}
    history["loss"] = [torch.tensor(v) for v in history["loss"]]  # 0-d tensors count as numbers
    fig = plots.learning_curves(history, smooth=2)
    loss_ax, valid_ax = fig.axes
    raw, smoothed = loss_ax.lines
    assert list(raw.get_ydata()) == [4.0, 2.0, 3.0, 1.0]
    assert list(smoothed.get_xdata()) == [2, 3, 4] and list(smoothed.get_ydata()) == [3.0, 2.5, 2.0]
    assert list(valid_ax.lines[0].get_xdata()) == [2, 4]


def test_learning_curves_with_explicit_keys():
    fig = plots.learning_curves(trainer_history(), keys=["lr"])
    assert len(fig.axes) == 1 and [line.get_label() for line in fig.axes[0].lines] == ["lr"]
    assert fig.axes[0].get_ylabel() == "lr"


@pytest.mark.parametrize(
    ("history", "keys", "message"),
    [
        ([{"loss": 1.0}], None, "'step'"),
        ({"step": [1, 2], "loss": [1.0]}, None, "same length"),
        ("loss", None, "list of dicts"),
        ({"step": 1, "loss": 1.0}, None, "list of values"),
        (trainer_history(), ["missing"], "missing"),
    ],
)
def test_learning_curves_rejects_bad_history(history, keys, message):
    with pytest.raises(ValueError, match=message):
        plots.learning_curves(history, keys=keys)


# --- filters ------------------------------------------------------------------------


def test_fourier_basis_rows_and_peaks():
    basis = plots.fourier_basis(16)
    assert basis.shape == (16, 1, 16)
    peaks = torch.fft.rfft(basis[:, 0], n=256).abs().argmax(-1) * (SR / 256)  # where each row's response peaks
    assert peaks[2:7].tolist() == [k * SR / 16 for k in range(2, 7)]  # cosines k = 2..6
    assert peaks[11:14].tolist() == [k * SR / 16 for k in range(3, 6)]  # sines k = 3..5


def test_filters_sorted_by_peak_frequency_next_to_responses():
    freqs = [3000.0, 500.0, 2000.0, 1000.0]
    weights = torch.stack([sine(f, seconds=64 / SR) for f in freqs]).unsqueeze(1)
    fig = plots.filters(weights, SR)
    assert len(fig.axes) == 2
    waves, responses = fig.axes[0].images[0].get_array(), fig.axes[1].images[0].get_array()
    order = np.argsort(freqs)
    assert np.allclose(waves, weights[order, 0].numpy())
    assert responses.shape == (4, 129) and responses.max() == pytest.approx(0.0, abs=0.5)
    assert np.argmax(responses, axis=1).tolist() == [round(f / (SR / 256)) for f in sorted(freqs)]


def test_filters_subset_and_comparison_basis():
    weights = torch.randn(32, 1, 16)
    fig = plots.filters(weights, SR, n=8, basis=plots.fourier_basis(16))
    assert len(fig.axes) == 4
    assert fig.axes[0].images[0].get_array().shape == (8, 16)
    assert fig.axes[2].images[0].get_array().shape == (8, 16)
    assert "basis" in fig.axes[2].get_title()


@pytest.mark.parametrize(
    ("weights", "kwargs", "message"),
    [
        (torch.zeros(8, 16), {}, r"\(filters, 1, length\)"),
        (torch.zeros(8, 2, 16), {}, "1-D conv weights"),
        (torch.zeros(8, 1, 16), {"n": 0}, "n must be"),
        (torch.zeros(8, 1, 16), {"basis": torch.zeros(4, 16)}, "basis must be"),
    ],
)
def test_filters_rejects_bad_shapes(weights, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.filters(weights, SR, **kwargs)


# --- similarity matrix --------------------------------------------------------------


def test_similarity_matrix_annotates_every_value():
    m = torch.tensor([[1.0, 0.25, -0.5], [0.25, 1.0, 0.125], [-0.5, 0.125, 1.0]])
    fig = plots.similarity_matrix(m, ["drums", "bass", "vocals"], title="cosine")
    ax = fig.axes[0]
    assert len(fig.axes) == 2 and ax.get_title() == "cosine"
    assert ax.images[0].get_array().shape == (3, 3)
    assert [t.get_text() for t in ax.texts] == [format(v, ".2f") for v in m.flatten().tolist()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["drums", "bass", "vocals"]


def test_similarity_matrix_in_given_axes_leaves_nan_blank():
    fig = Figure()
    ax = fig.add_subplot()
    m = np.array([[0.0, np.nan], [2.0, 0.0]])
    assert plots.similarity_matrix(m, ["a", "b"], ax=ax, fmt=".1f") is fig
    assert len(fig.axes) == 1
    assert [t.get_text() for t in ax.texts] == ["0.0", "2.0", "0.0"]


@pytest.mark.parametrize(
    ("matrix", "labels", "message"),
    [
        (torch.zeros(2, 3), ["a", "b"], "square"),
        ([[1.0]], ["a"], "square"),
        (torch.zeros(2, 2), ["a"], "labels must be 2 strings"),
    ],
)
def test_similarity_matrix_rejects_bad_input(matrix, labels, message):
    with pytest.raises(ValueError, match=message):
        plots.similarity_matrix(matrix, labels)


def test_source_bars_draws_one_bar_per_method_and_source():
    table = {"mixture": [-5.0, -3.0, 0.0, 1.0], "oracle": torch.tensor([10.0, 9.0, float("nan"), 12.0])}
    fig = plots.source_bars(table, title="t")
    ax = fig.axes[0]
    assert len(ax.patches) == 8 and [t.get_text() for t in ax.get_xticklabels()] == list(SOURCES)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mixture", "oracle"]
    with pytest.raises(ValueError, match="3 values; expected one per source"):
        plots.source_bars({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="table is empty"):
        plots.source_bars({})
