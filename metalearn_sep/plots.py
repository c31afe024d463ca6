"""Figures of the course: spectrograms, waveforms, learning curves, learned filters, similarities.

Every function returns a :class:`matplotlib.figure.Figure`. New figures are built
without pyplot, as :class:`InlineFigure` (a Figure that shows itself as a PNG in
Jupyter even before pyplot has set up the inline backend), so a notebook shows a
returned figure exactly once (pyplot also shows its own figures at the end of a cell),
and a script or test needs no display (any backend, Agg included). Functions that draw
one panel also take ``ax=`` to draw into an existing axes; they then return ``ax.figure``.

Levels are never normalised per panel: spectrograms are in dB relative to a full-scale
sine (a sine of amplitude 1 peaks near 0 dB), so stems drawn with the same ``vmin/vmax``
compare honestly, and waveforms of several stems share one y-scale.

Shapes: audio is ``(time,)`` or ``(channel, time)``; stems are ``(source, channel, time)``
in :data:`metalearn_sep.SOURCES` order; encoder filters are ``(N, 1, L)`` (the paper's
``N`` basis signals of ``L`` samples).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from . import SOURCES
from .checks import check_rate, check_waveform

DYNAMIC_RANGE_DB = 80.0
"""Default colour range of a spectrogram: from its loudest bin down this many dB."""

_FLOOR = 1e-10  # power floor of the dB scale (-100 dB)
_ENVELOPE_POINTS = 2000  # longer waveforms are drawn as a min/max envelope of this many points


def as_waveform(x: object, name: str, ndims: tuple[int, ...], layout: str) -> torch.Tensor:
    """``x`` (tensor or array) as a finite float32 CPU tensor with ``x.dim()`` in ``ndims``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or a numpy array {layout}, got {type(x).__name__}.")
    if x.dim() not in ndims:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(x.shape)}.")
    check_waveform(x, name)
    return x.detach().cpu().float()


def palette_png(fig: Figure, colours: int = 256) -> bytes:
    """``fig`` as a palette PNG of at most ``colours`` colours: about 3x smaller than RGB for
    spectrograms, which keeps notebooks small."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    buffer = io.BytesIO()
    rgb.quantize(colours).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


class InlineFigure(Figure):
    """A pyplot-free Figure with a PNG representation, so Jupyter displays it once, in any kernel state."""

    def _repr_png_(self) -> bytes:
        return palette_png(self)


def _new_figure(width: float, height: float) -> InlineFigure:
    return InlineFigure(figsize=(width, height), layout="constrained")


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    return _new_figure(*figsize).add_subplot() if ax is None else ax


def default_n_fft(sample_rate: int) -> int:
    """The STFT size used when none is given: the power of two closest to 32 ms."""
    return 2 ** round(math.log2(0.032 * check_rate(sample_rate)))


def log_spectrogram(
    audio: torch.Tensor | np.ndarray, sample_rate: int, n_fft: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Power spectrogram in dB re a full-scale sine, channels averaged in power.

    Hann window of ``n_fft`` samples, hop ``n_fft // 4``, frames centred (zero padding
    at both ends). The magnitude is divided by half the window's sum, so a sine of
    amplitude ``A`` peaks near ``20 log10(A)`` dB whatever ``n_fft``.

    Args:
        audio: ``(time,)`` or ``(channel, time)``.
        sample_rate: Hz.
        n_fft: window length in samples; default :func:`default_n_fft`.

    Returns:
        ``(db, freqs, times)``: ``(n_fft // 2 + 1, frame)`` dB (floor -100 dB), the bin
        frequencies in Hz and the frame centres in seconds.
    """
    sample_rate = check_rate(sample_rate)
    x = as_waveform(audio, "audio", (1, 2), "(time,) or (channel, time)")
    n_fft = default_n_fft(sample_rate) if n_fft is None else n_fft
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 4:
        raise ValueError(f"n_fft must be an integer of at least 4 samples, got {n_fft!r}.")
    hop = n_fft // 4
    window = torch.hann_window(n_fft)
    frames = x.reshape(-1, x.shape[-1])
    spec = torch.stft(frames, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    power = (spec.abs() / (window.sum() / 2)).pow(2).mean(0)
    db = 10 * torch.log10(power + _FLOOR)
    freqs = torch.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    times = torch.arange(db.shape[-1]) * (hop / sample_rate)
    return db, freqs, times


def spectrogram(
    audio: torch.Tensor | np.ndarray,
    sample_rate: int,
    ax: Axes | None = None,
    title: str | None = None,
    n_fft: int | None = None,
    max_freq: float | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> Figure:
    """Draw a log-magnitude STFT (see :func:`log_spectrogram`), time in s and frequency in Hz.

    Args:
        audio: ``(time,)`` or ``(channel, time)``; stereo is shown as the channels' mean power.
        sample_rate: Hz.
        ax: draw here; default a new figure.
        title: axes title.
        n_fft: STFT size; default about 32 ms.
        max_freq: highest frequency shown (Hz); default Nyquist.
        vmin, vmax: colour range in dB. Give the same values to several calls to compare
            stems on one scale; default ``max`` and ``max - 80`` of this spectrogram.
        colorbar: add a dB colour bar.
    """
    db, freqs, times = log_spectrogram(audio, sample_rate, n_fft)
    df = float(freqs[1] - freqs[0])
    if max_freq is not None:
        if not max_freq > 0:
            raise ValueError(f"max_freq must be a positive number of Hz, got {max_freq!r}.")
        keep = freqs <= max_freq
        db, freqs = db[keep], freqs[keep]
    vmax = float(db.max()) if vmax is None else vmax
    vmin = vmax - DYNAMIC_RANGE_DB if vmin is None else vmin
    ax = _new_axes(ax, (6.0, 3.0))
    dt = float(times[1] - times[0]) if len(times) > 1 else 1.0 / sample_rate
    extent = (-dt / 2, float(times[-1]) + dt / 2, -df / 2, float(freqs[-1]) + df / 2)
    image = ax.imshow(db.numpy(), origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=vmin, vmax=vmax)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    if title is not None:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="dB")
    return ax.figure


def _draw_waveform(ax: Axes, x: torch.Tensor, sample_rate: int, labels: bool) -> None:
    """Plot ``(channel, time)`` on ``ax``; long signals as a min/max envelope per pixel column."""
    n = x.shape[-1]
    for c, channel in enumerate(x):
        label = ("left", "right")[c] if labels and x.shape[0] == 2 else None
        if n <= 2 * _ENVELOPE_POINTS:
            ax.plot(np.arange(n) / sample_rate, channel.numpy(), linewidth=0.6, alpha=0.8, label=label)
            continue
        size = math.ceil(n / _ENVELOPE_POINTS)
        padded = torch.cat([channel, channel[-1].expand(size * _ENVELOPE_POINTS - n)])  # repeat the last sample
        buckets = padded.reshape(_ENVELOPE_POINTS, size)
        t = (np.arange(_ENVELOPE_POINTS) + 0.5) * size / sample_rate
        ax.fill_between(t, buckets.min(1).values.numpy(), buckets.max(1).values.numpy(), linewidth=0, alpha=0.6, label=label)
    ax.set_xlim(0, n / sample_rate)


def _check_names(names: Sequence[str], count: int, what: str, param: str = "names") -> list[str]:
    names = list(names)
    if len(names) != count or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{param} must be {count} strings, one per {what}, got {names!r}.")
    return names


def _as_stems(stems: object) -> torch.Tensor:
    x = as_waveform(stems, "stems", (2, 3), "(source, channel, time) or (source, time)")
    return x.unsqueeze(1) if x.dim() == 2 else x


def waveforms(stems: torch.Tensor | np.ndarray, sample_rate: int, names: Sequence[str] = SOURCES) -> Figure:
    """One row per stem, all on one y-scale (so a quiet stem looks quiet).

    Args:
        stems: ``(source, channel, time)`` or ``(source, time)``.
        sample_rate: Hz.
        names: one per source.
    """
    sample_rate = check_rate(sample_rate)
    x = _as_stems(stems)
    names = _check_names(names, x.shape[0], "stem")
    fig = _new_figure(8.0, 1.2 + 1.1 * len(names))
    axes = fig.subplots(len(names), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    peak = max(float(x.abs().max()), 1e-3)
    for i, (ax, name) in enumerate(zip(axes, names)):
        _draw_waveform(ax, x[i], sample_rate, labels=i == 0)
        ax.set_ylabel(name)
        ax.set_ylim(-1.05 * peak, 1.05 * peak)
    if x.shape[1] == 2:
        axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("time (s)")
    return fig


def stems_overview(
    mixture: torch.Tensor | np.ndarray,
    stems: torch.Tensor | np.ndarray,
    sample_rate: int,
    names: Sequence[str] = SOURCES,
    n_fft: int | None = None,
) -> Figure:
    """Mixture and stems, a waveform (left, one y-scale) and a spectrogram (right, one colour scale) each.

    Args:
        mixture: ``(channel, time)`` or ``(time,)``.
        stems: ``(source, channel, time)`` or ``(source, time)``, the same length.
        sample_rate: Hz.
        names: one per source.
        n_fft: STFT size of the spectrograms.

    The figure has ``2 * (source + 1)`` panels and one colour bar.
    """
    sample_rate = check_rate(sample_rate)
    mix = as_waveform(mixture, "mixture", (1, 2), "(channel, time) or (time,)")
    mix = mix.unsqueeze(0) if mix.dim() == 1 else mix
    x = _as_stems(stems)
    if x.shape[1:] != mix.shape:
        raise ValueError(
            f"stems must be (source, {mix.shape[0]}, {mix.shape[1]}) to match the mixture, got shape {tuple(x.shape)}."
        )
    names = ["mixture", *_check_names(names, x.shape[0], "stem")]
    clips = torch.cat([mix.unsqueeze(0), x])
    vmax = max(float(log_spectrogram(c, sample_rate, n_fft)[0].max()) for c in clips)
    peak = max(float(clips.abs().max()), 1e-3)
    fig = _new_figure(11.0, 1.2 + 1.4 * len(names))
    axes = fig.subplots(len(names), 2, sharex=True, squeeze=False)
    for i, (clip, name) in enumerate(zip(clips, names)):
        wave_ax, spec_ax = axes[i]
        _draw_waveform(wave_ax, clip, sample_rate, labels=False)
        wave_ax.set_ylim(-1.05 * peak, 1.05 * peak)
        wave_ax.set_ylabel(name)
        spectrogram(clip, sample_rate, ax=spec_ax, n_fft=n_fft, vmin=vmax - DYNAMIC_RANGE_DB, vmax=vmax, colorbar=False)
        spec_ax.set_ylabel("Hz")
        if i < len(names) - 1:
            wave_ax.set_xlabel("")
            spec_ax.set_xlabel("")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(axes[0, 1].images[0], ax=list(axes[:, 1]), label="dB")
    return fig


def _history_series(history: object) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{key: (steps, values)}`` from a list of records or a dict of equal-length lists; NaN and absent points dropped."""
    if isinstance(history, Mapping):
        if not all(isinstance(v, (Sequence, np.ndarray, torch.Tensor)) for v in history.values()):
            raise ValueError("A history dict must map each key to a list of values.")
        lengths = {k: len(v) for k, v in history.items()}
        if "step" not in history or len(set(lengths.values())) != 1:
            raise ValueError(f"A history dict must hold a 'step' list and lists of the same length, got lengths {lengths}.")
        records = [dict(zip(history, row)) for row in zip(*history.values())]
    elif isinstance(history, Sequence) and all(isinstance(r, Mapping) for r in history):
        records = list(history)
    else:
        raise ValueError(f"history must be a list of dicts or a dict of lists, got {type(history).__name__}.")
    if not records or any("step" not in r for r in records):
        raise ValueError("history must be non-empty and every record must have a 'step'.")
    series: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                continue
            if math.isfinite(value):
                series.setdefault(key, []).append((float(record["step"]), float(value)))
    return {k: (np.array([p[0] for p in v]), np.array([p[1] for p in v])) for k, v in series.items()}


def learning_curves(history: object, keys: Sequence[str] | None = None, smooth: int = 0) -> Figure:
    """Training loss and validation metrics against the step.

    Args:
        history: a list of records (dicts with ``step`` and numeric values; a key may be
            missing from some records, e.g. validation every N steps) or a dict of
            equal-length lists with a ``step`` list (NaN marks a missing value).
        keys: what to plot; default every key containing ``loss`` and every key starting
            with ``valid``, or, if there are none, every numeric key.
        smooth: if above 1, draw each loss curve as a running mean over this many
            points over the faded raw curve (per-step losses are noisy; validation
            metrics, already averaged over a set, are drawn as they are).

    Keys containing ``loss`` go on the left panel, the others (metrics) on the right;
    a panel is left out when it has nothing to show. ``loss`` is drawn as "training loss" and
    ``valid_<source>`` as the source, on "validation SI-SDR improvement (dB)" (the Trainer's logs).
    """
    series = _history_series(history)
    if keys is None:
        keys = [k for k in series if "loss" in k or k.startswith("valid")] or list(series)
    missing = [k for k in keys if k not in series]
    if not keys or missing:
        raise ValueError(f"No numeric values to plot for {missing or 'any key'}; the history has {sorted(series)}.")
    groups = [g for g in ([k for k in keys if "loss" in k], [k for k in keys if "loss" not in k]) if g]
    fig = _new_figure(5.0 * len(groups), 3.2)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, group in zip(axes, groups):
        for key in group:
            (steps, values), label = series[key], _curve_label(key)
            if smooth > 1 and "loss" in key and len(values) >= smooth:
                (line,) = ax.plot(steps, values, alpha=0.3, linewidth=0.8)
                smoothed = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
                ax.plot(steps[smooth - 1 :], smoothed, color=line.get_color(), label=label)
            else:
                ax.plot(steps, values, marker="o" if len(steps) < 50 else None, markersize=3, label=label)
        ax.set(xlabel="step", ylabel=_axis_label(group))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def _curve_label(key: str) -> str:  # loss -> training loss, valid_drums -> drums
    return "training loss" if key == "loss" else key.removeprefix("valid_")


def _axis_label(keys: Sequence[str]) -> str:
    if any("loss" in k for k in keys):
        return "training loss" if keys == ["loss"] else "loss"
    return "validation SI-SDR improvement (dB)" if all(k.startswith("valid_") for k in keys) else " / ".join(keys)


def _as_filters(weights: object, name: str) -> torch.Tensor:
    w = as_waveform(weights, name, (3,), "(filters, 1, length)")
    if w.shape[1] != 1:
        raise ValueError(f"{name} must be (filters, 1, length) 1-D conv weights, got shape {tuple(w.shape)}.")
    return w[:, 0]


def _responses(w: torch.Tensor) -> torch.Tensor:
    """``|H|`` of ``(filters, length)`` on at least 256 frequency bins."""
    n_fft = max(256, 2 ** math.ceil(math.log2(w.shape[-1])))
    return torch.fft.rfft(w, n=n_fft).abs()


def fourier_basis(length: int) -> torch.Tensor:
    """A Hann-windowed Fourier (STFT) basis of ``length`` samples, ``(N, 1, length)``.

    Cosines for ``k = 0 .. length // 2`` and sines for ``k = 1 .. (length - 1) // 2``
    (the sines that are not identically zero), so ``N = length``. The main lobe of index
    ``k`` is centred on ``k * sample_rate / length`` (the window's lobe pulls the peaks
    of the lowest and highest ``k`` aside): a fixed encoder to compare learned filters with.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an integer of at least 2 samples, got {length!r}.")
    t = torch.arange(length, dtype=torch.float64)
    window = torch.hann_window(length, periodic=False, dtype=torch.float64)
    cos = [torch.cos(2 * math.pi * k * t / length) for k in range(length // 2 + 1)]
    sin = [torch.sin(2 * math.pi * k * t / length) for k in range(1, (length - 1) // 2 + 1)]
    return (torch.stack(cos + sin) * window).float().unsqueeze(1)


def _draw_filter_bank(axes: Sequence[Axes], w: torch.Tensor, sample_rate: int, n: int | None, label: str) -> None:
    mag = _responses(w)
    order = torch.argsort(mag.argmax(-1), stable=True)
    if n is not None:
        order = order[torch.linspace(0, len(order) - 1, min(n, len(order))).round().long()]
    w, mag = w[order], mag[order]
    db = (20 * torch.log10(mag / mag.max().clamp_min(1e-12) + 1e-12)).clamp_min(-60.0)
    span = float(w.abs().max()) or 1.0
    length_ms = 1000 * w.shape[-1] / sample_rate
    rows = (-0.5, len(w) - 0.5)
    style = {"aspect": "auto", "origin": "lower", "interpolation": "nearest"}
    axes[0].imshow(w.numpy(), cmap="RdBu_r", vmin=-span, vmax=span, extent=(0, length_ms, *rows), **style)
    axes[0].set_title(f"{label}: {len(w)} filters, sorted by peak frequency")
    axes[0].set_xlabel("time (ms)")
    axes[0].set_ylabel("filter (by peak frequency)")
    axes[1].imshow(db.numpy(), cmap="magma", vmin=-60, vmax=0, extent=(0, sample_rate / 2, *rows), **style)
    axes[1].set_title(f"{label}: frequency response (dB)")
    axes[1].set_xlabel("frequency (Hz)")


def filters(
    weights: torch.Tensor | np.ndarray,
    sample_rate: int,
    n: int | None = None,
    basis: torch.Tensor | np.ndarray | None = None,
) -> Figure:
    """Learned 1-D conv filters (e.g. the encoder's ``U``), sorted by peak frequency, beside their responses.

    Left: the filters as an image (one row each, time in ms); right: their magnitude
    responses in dB relative to the largest response of the bank (-60 dB floor).

    Args:
        weights: ``(N, 1, L)``, e.g. ``model.encoder.conv.weight``.
        sample_rate: Hz, for the axes.
        n: show only ``n`` filters, evenly spaced in the sorted order; default all.
        basis: ``(M, 1, L')`` filters to compare with, drawn as a second row, e.g.
            :func:`fourier_basis` ``(L)``.

    The figure has 2 panels, or 4 with a ``basis``.
    """
    sample_rate = check_rate(sample_rate)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive number of filters or None, got {n!r}.")
    banks = [("learned", _as_filters(weights, "weights"))]
    if basis is not None:
        banks.append(("basis", _as_filters(basis, "basis")))
    fig = _new_figure(10.0, 3.5 * len(banks))
    axes = fig.subplots(len(banks), 2, squeeze=False)
    for row, (label, w) in zip(axes, banks):
        _draw_filter_bank(row, w, sample_rate, n, label)
    return fig


def similarity_matrix(
    matrix: torch.Tensor | np.ndarray,
    labels: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
    fmt: str = ".2f",
) -> Figure:
    """A heat map of a square matrix with every value written in its cell.

    For cosine similarities between instrument embeddings or distances between them.

    Args:
        matrix: ``(n, n)``; NaN cells are left blank.
        labels: ``n`` names, for both axes.
        ax: draw here; default a new figure (with a colour bar).
        title: axes title.
        fmt: format of the annotations.
    """
    m = torch.as_tensor(matrix).detach().cpu().double() if isinstance(matrix, (torch.Tensor, np.ndarray)) else None
    if m is None or m.dim() != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        shape = tuple(m.shape) if m is not None else type(matrix).__name__
        raise ValueError(f"matrix must be a square (n, n) tensor or array, got {shape}.")
    labels = _check_names(labels, m.shape[0], "row", param="labels")
    values = m.numpy()
    own = ax is None
    ax = _new_axes(ax, (1.2 + 0.8 * len(labels), 0.8 + 0.8 * len(labels)))
    image = ax.imshow(values, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            colour = "black" if value > middle else "white"
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize="small", color=colour)
    if title is not None:
        ax.set_title(title)
    if own:
        ax.figure.colorbar(image, ax=ax)
    return ax.figure


def source_bars(
    table: Mapping[str, Sequence[float] | torch.Tensor | np.ndarray],
    names: Sequence[str] = SOURCES,
    ylabel: str = "SI-SDR (dB)",
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Grouped bars: one group per source, one bar per method (e.g. mixture, oracles, models).

    Args:
        table: method name -> one value per source (NaN draws no bar).
        names: the sources, in the order of the values.
        ylabel, title: axis label and title.
        ax: draw here; default a new figure.
    """
    if not table:
        raise ValueError("table is empty: give at least one method with one value per source.")
    rows = {k: np.asarray(torch.as_tensor(v).detach().cpu().double()) for k, v in table.items()}
    for method, values in rows.items():
        if values.shape != (len(names),):
            raise ValueError(f"{method!r} has {values.size} values; expected one per source ({len(names)}).")
    ax = _new_axes(ax, (1.5 + 1.3 * len(names), 3.0))
    width = 0.8 / len(rows)
    x = np.arange(len(names))
    for k, (method, values) in enumerate(rows.items()):
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, values, width, label=method)
    ax.set_xticks(x, list(names))
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylabel(ylabel)
    ax.legend(ncol=min(len(rows), 4), fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax.figure
