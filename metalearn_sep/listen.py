"""Listening: level-preserving players for an excerpt's mixture, references and estimates.

:class:`StemPlayer` lays out one excerpt as a grid of core ipywidgets (``Audio``,
``Image``, ``Label``, ``HTML``, ``VBox``, ``GridBox``; no front-end extension beyond the
core widgets that JupyterLab, Notebook, VS Code and Colab ship): a row for the mixture
``x``, then a row per source ``i`` with the reference ``s_i``, the estimate ``ŝ_i``, their
spectrograms and ``SI-SDR(ŝ_i, s_i)`` with its improvement over the mixture.

Loudness is part of what a student must hear, so no clip is normalised on its own. When
some clip peaks above 1.0, every clip of the player is scaled by the same factor (and
the caption says so); otherwise the samples are played as they are.

The same player carries a static copy for places where widgets do not render: its
``text/html`` representation holds HTML5 ``<audio controls>`` elements with the audio
embedded as data URIs and the spectrograms as base64 PNG, next to the widget view and
a short ``text/plain``. Which one a front end shows (read in JupyterLab 4.6,
jupyterlab_widgets 3.0, widgetsnbextension 4.0 and nbconvert 7.17):

* JupyterLab and Notebook 7 rank the widget renderer -10 against 50 for HTML, so a
  live player is the widget. Untrusted outputs (a notebook someone else saved) may use
  only "safe" renderers, so they show the static copy (the sanitizer keeps
  ``<audio controls src>`` and ``<img src="data:...">``). A trusted notebook reopened
  without its kernel or saved widget state shows "Error displaying widget: model not
  found" (the widget renderer does not fall back): run the cell again.
* Notebook 6 puts the widget first; nbconvert (and nbviewer) renders the widget when
  the notebook holds widget state, the static copy otherwise.

``display(player, exclude=[WIDGET_VIEW_MIME])`` shows the static copy only.

Audio is embedded as MP3 when libsndfile can encode it at the rate (libsndfile >= 1.1,
MPEG rates 8 to 48 kHz): every modern browser plays it, and libsndfile's encoder is
deterministic, so re-running a cell gives the same bytes (its Ogg/Vorbis and Opus
output differs from run to run). It costs 2 to 5 kB per second of audio at
8 kHz mono and up to 26 kB/s at 44.1 kHz stereo (:data:`MAX_BYTES_PER_SECOND`), against
16 and 176 kB/s for the 16-bit WAV used otherwise. Base64 adds a third in the notebook
file, and each clip's spectrogram about 8 kB. A full player (mixture + 4 references +
4 estimates) adds to a notebook about 40 kB per second of excerpt at 8 kHz mono, 55 kB/s
at 16 kHz mono, 95 kB/s at 32 kHz mono and 200 kB/s at 44.1 kHz stereo (measured), so
the default ``max_seconds=5`` keeps one player under 1 MiB at rates up to 44.1 kHz.

Shapes: the mixture is ``(channel, time)``, references and estimates ``(source, channel,
time)`` with 1 or 2 channels, torch tensors or numpy arrays, in the order of ``names``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import ipywidgets as widgets
import matplotlib
import numpy as np
import soundfile as sf
import torch
from IPython.display import HTML
from matplotlib.figure import Figure

from . import SOURCES
from .checks import check_duration, check_rate
from .metrics import si_sdr
from .plots import DYNAMIC_RANGE_DB, as_waveform, log_spectrogram, palette_png, spectrogram

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
"""The MIME type of a widget view; exclude it from ``display`` to get the static copy only."""

MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""The sample rates MPEG-1/2/2.5 layer III can encode (libsndfile refuses the others)."""

MAX_BYTES_PER_SECOND = {
    (8000, 1): 5_000,
    (16000, 1): 7_500,
    (32000, 1): 12_000,
    (32000, 2): 24_000,
    (44100, 1): 13_000,
    (44100, 2): 26_000,
}
"""Bytes per second of audio (before base64) that the MP3 encoding costs at ``(rate,
channels)``: the largest figure measured on music-like test signals (harmonic voices,
drum hits, bass; white noise costs less) with libsndfile 1.2's default variable bit
rate, rounded up. Typical stems cost a half to two thirds of it. The hard ceiling is
the largest MP3 frame rate (64 kbit/s = 8 kB/s at 8 kHz, 320 kbit/s = 40 kB/s at 32
to 48 kHz). 16-bit WAV costs ``2 * channels * rate``: 16 kB/s at 8 kHz mono, 176.4 kB/s
at 44.1 kHz stereo."""

_PALETTE_COLOURS = 64  # spectrogram PNGs are palette images: about 4x smaller than RGB


class EncodedAudio(NamedTuple):
    """Encoded audio file bytes and their MIME type (``audio/mpeg`` or ``audio/wav``)."""

    data: bytes
    mime: str

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def mp3_supported(sample_rate: int) -> bool:
    """Whether the installed libsndfile can encode MP3 at ``sample_rate``."""
    return "MP3" in sf.available_formats() and check_rate(sample_rate) in MP3_RATES


def _check_format(audio_format: str) -> None:
    if audio_format not in ("auto", "mp3", "wav"):
        raise ValueError(f"audio_format must be 'auto', 'mp3' or 'wav', got {audio_format!r}.")


def encode(audio: torch.Tensor | np.ndarray, sample_rate: int, audio_format: str = "auto") -> EncodedAudio:
    """Encode ``(channel, time)`` samples in [-1, 1] as a file in memory, without changing their level.

    Args:
        audio: ``(channel, time)``, 1 or 2 channels; samples beyond [-1, 1] are clipped.
        sample_rate: Hz.
        audio_format: ``"mp3"``, ``"wav"`` (16-bit PCM) or ``"auto"`` (MP3 where
            :func:`mp3_supported`, else WAV).
    """
    sample_rate = check_rate(sample_rate)
    x = as_waveform(audio, "audio", (2,), "(channel, time) with 1 or 2 channels")
    if x.shape[0] not in (1, 2):
        raise ValueError(f"audio must have 1 or 2 channels, got shape {tuple(x.shape)}.")
    _check_format(audio_format)
    if audio_format == "mp3" and not mp3_supported(sample_rate):
        raise ValueError(
            f"This libsndfile cannot encode MP3 at {sample_rate} Hz (it needs libsndfile >= 1.1 and one of "
            f"{MP3_RATES} Hz); use audio_format='wav' or 'auto'."
        )
    use_mp3 = audio_format == "mp3" or (audio_format == "auto" and mp3_supported(sample_rate))
    buffer = io.BytesIO()
    samples = x.clamp(-1.0, 1.0).numpy().T
    if use_mp3:
        sf.write(buffer, samples, sample_rate, format="MP3", subtype="MPEG_LAYER_III")
        return EncodedAudio(buffer.getvalue(), "audio/mpeg")
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return EncodedAudio(buffer.getvalue(), "audio/wav")


def common_gain(clips: Sequence[torch.Tensor]) -> float:
    """The one factor applied to every clip: ``1 / peak`` if the loudest sample exceeds 1.0, else 1."""
    peak = max(float(c.abs().max()) for c in clips)
    return 1.0 / peak if peak > 1.0 else 1.0


def _level_note(gain: float) -> str:
    if gain == 1.0:
        return "Levels as given: no clip is normalised on its own."
    return (
        f"The loudest clip peaked at {1 / gain:.2f}, so every clip is scaled by the same "
        f"{gain:.3f} ({20 * math.log10(gain):.1f} dB): relative levels are kept."
    )


def _crop(x: torch.Tensor, sample_rate: int, max_seconds: float | None) -> torch.Tensor:
    if max_seconds is None:
        return x
    return x[..., : max(1, round(check_duration(max_seconds, "max_seconds") * sample_rate))]


def _spectrogram_png(fig: Figure, clip: torch.Tensor, sample_rate: int, vmax: float) -> bytes:
    """A small palette PNG of ``clip``'s spectrogram on the colour scale ``[vmax - 80, vmax]`` dB."""
    fig.clear()
    spectrogram(clip, sample_rate, ax=fig.add_subplot(), vmin=vmax - DYNAMIC_RANGE_DB, vmax=vmax, colorbar=False)
    return palette_png(fig, _PALETTE_COLOURS)


class _Clip(NamedTuple):
    audio: EncodedAudio
    png: bytes | None


class _Row(NamedTuple):
    """One row of the player: a name, a clip (or None) per column, and the score cells."""

    name: str
    clips: list[_Clip | None]
    scores: list[str]


def _check_stems(x: object, name: str, names: list[str], mixture: torch.Tensor) -> torch.Tensor:
    stems = as_waveform(x, name, (3,), "(source, channel, time)")
    if stems.shape[0] != len(names):
        raise ValueError(f"{name} has {stems.shape[0]} sources but names has {len(names)} ({', '.join(names)}).")
    if stems.shape[1:] != mixture.shape:
        raise ValueError(
            f"Each source of {name} must have the mixture's (channel, time) shape {tuple(mixture.shape)}, "
            f"got {tuple(stems.shape[1:])}."
        )
    return stems


def _si_sdr(references: torch.Tensor, estimates: torch.Tensor, mixture: torch.Tensor) -> tuple[list[float], list[float]]:
    """``(SI-SDR(ŝ_i, s_i), its improvement over the mixture)`` per source in dB, channels averaged; NaN for a silent s_i."""
    refs, ests = references.double(), estimates.double()
    silent = refs.pow(2).sum(dim=(-1, -2)) == 0
    est_sdr = si_sdr(ests, refs).mean(-1).masked_fill(silent, float("nan"))
    mix_sdr = si_sdr(mixture.double().expand_as(refs), refs).mean(-1)
    return est_sdr.tolist(), (est_sdr - mix_sdr).tolist()


def _score_cells(score: float, improvement: float) -> list[str]:
    if math.isnan(score):
        return ["n/a (silent reference)", ""]
    return [f"{score:.2f} dB", f"{improvement:+.2f} dB"]


def _widget_grid(headers: list[str], rows: list[_Row]) -> widgets.GridBox:
    cells: list[widgets.Widget] = [widgets.HTML(f"<b>{html.escape(h)}</b>") for h in headers]
    for row in rows:
        cells.append(widgets.Label(row.name))
        for clip in row.clips:
            if clip is None:
                cells.append(widgets.Label(""))
                continue
            fmt = clip.audio.mime.split("/")[1]
            player = widgets.Audio(value=clip.audio.data, format=fmt, autoplay=False, loop=False, controls=True)
            image = [widgets.Image(value=clip.png, format="png")] if clip.png else []
            cells.append(widgets.VBox([player, *image]))
        cells.extend(widgets.Label(text) for text in row.scores)
    layout = widgets.Layout(
        grid_template_columns=f"repeat({len(headers)}, max-content)", grid_gap="4px 12px", align_items="center"
    )
    return widgets.GridBox(cells, layout=layout)


def _html_table(headers: list[str], rows: list[_Row]) -> str:
    lines = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    for row in rows:
        cells = [f"<td><b>{html.escape(row.name)}</b></td>"]
        for header, clip in zip(headers[1:], row.clips):
            if clip is None:
                cells.append("<td></td>")
                continue
            what = row.name if row.name == "mixture" else f"{row.name} {header}"
            image = ""
            if clip.png:
                alt = html.escape(f"spectrogram of {what}")
                image = f'<br><img alt="{alt}" src="data:image/png;base64,{base64.b64encode(clip.png).decode("ascii")}">'
            cells.append(f'<td><audio controls preload="metadata" src="{clip.audio.data_uri}"></audio>{image}</td>')
        cells.extend(f"<td>{html.escape(text)}</td>" for text in row.scores)
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{''.join(lines)}</table>"


class StemPlayer(widgets.VBox):
    """Players, spectrograms and SI-SDR for one excerpt, as core widgets plus a static HTML copy.

    Args:
        mixture: ``x``, ``(channel, time)`` with 1 or 2 channels.
        references: ``s``, ``(source, channel, time)``, or None.
        estimates: ``ŝ``, ``(source, channel, time)``, or None; or ``{column: (source, channel,
            time)}`` to compare several separations of the same excerpt (one column each, scored
            by SI-SDRi per column).
        sample_rate: Hz (required; there is no safe default).
        names: one per source, in the order of the source axis.
        title: shown above the grid.
        max_seconds: play (and embed) only the first ``max_seconds``; None plays all.
            It bounds the notebook's size (see the module docstring).
        audio_format: ``"auto"`` (MP3 where possible, else WAV), ``"mp3"`` or ``"wav"``.
        spectrograms: draw each clip's spectrogram (about 8 kB per clip in the notebook).

    Attributes:
        gain: the common factor applied to every clip (1.0 unless some clip peaked above 1).
        si_sdr: ``{name: SI-SDR(ŝ_i, s_i)}`` in dB over the played excerpt, channels
            averaged; NaN for a silent reference. Empty without both references and estimates.
            With several estimate columns: ``{column: {name: dB}}``.
        si_sdr_improvement: ``{name: SI-SDR(ŝ_i, s_i) - SI-SDR(x, s_i)}`` in dB (per column likewise).
        clips: ``{(row, column): EncodedAudio}``: ``("mixture", "mixture")`` and
            ``(name, "reference")``, ``(name, "estimate")`` (or ``(name, column)`` per estimate
            column) for what was given.
        nbytes: bytes of audio and images embedded (the notebook stores 4/3 of it as base64).
        html: the static HTML copy.
    """

    def __init__(
        self,
        mixture: torch.Tensor | np.ndarray,
        references: torch.Tensor | np.ndarray | None = None,
        estimates: torch.Tensor | np.ndarray | None = None,
        sample_rate: int | None = None,
        names: Sequence[str] = SOURCES,
        title: str | None = None,
        max_seconds: float | None = 5.0,
        audio_format: str = "auto",
        spectrograms: bool = True,
    ) -> None:
        if sample_rate is None:
            raise ValueError("StemPlayer needs sample_rate (Hz): audio played at a wrong rate sounds plausible but wrong.")
        sample_rate = check_rate(sample_rate)
        _check_format(audio_format)
        names = list(names)
        if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names) or "mixture" in names:
            raise ValueError(f"names must be distinct strings other than 'mixture', one per source, got {names!r}.")
        mix = as_waveform(mixture, "mixture", (2,), "(channel, time) with 1 or 2 channels")
        if mix.shape[0] not in (1, 2):
            raise ValueError(f"mixture must have 1 (mono) or 2 (stereo) channels, got shape {tuple(mix.shape)}.")
        compared = isinstance(estimates, Mapping)
        if compared and (not estimates or any(not isinstance(c, str) or c in ("mixture", "reference") for c in estimates)):
            raise ValueError(f"estimate columns must be named by strings other than 'mixture' and 'reference', got {list(estimates)!r}.")
        stems = [("reference", references)] + (list(estimates.items()) if compared else [("estimate", estimates)])
        given = {c: _check_stems(x, "references" if c == "reference" else f"estimates {c!r}" if compared else "estimates", names, mix)
                 for c, x in stems if x is not None}
        full_length = mix.shape[-1]
        mix = _crop(mix, sample_rate, max_seconds)
        given = {c: _crop(x, sample_rate, max_seconds) for c, x in given.items()}

        # SI-SDR over what is played, before the common gain (it is scale-invariant anyway).
        per_column = {c: _si_sdr(given["reference"], x, mix) for c, x in given.items() if c != "reference"} if "reference" in given else {}
        scores = {c: dict(zip(names, v[0])) for c, v in per_column.items()}
        improvements = {c: dict(zip(names, v[1])) for c, v in per_column.items()}
        if not compared:
            scores, improvements = scores.get("estimate", {}), improvements.get("estimate", {})

        columns = list(given) or ["mixture"]
        audio = {("mixture", columns[0]): mix} | {(n, c): x[i] for c, x in given.items() for i, n in enumerate(names)}
        gain = common_gain(list(audio.values()))
        audio = {key: clip * gain for key, clip in audio.items()}
        scale_note = ""
        if spectrograms:
            vmax = max(float(log_spectrogram(clip, sample_rate)[0].max()) for clip in audio.values())
            scale_note = f" Spectrograms share one colour scale ({vmax - DYNAMIC_RANGE_DB:.0f} to {vmax:.0f} dB re full scale)."
            with matplotlib.rc_context({"font.size": 6}):
                fig = Figure(figsize=(3.4, 1.4), dpi=80, layout="constrained")
                pngs = {key: _spectrogram_png(fig, clip, sample_rate, vmax) for key, clip in audio.items()}
        encoded = {key: _Clip(encode(clip, sample_rate, audio_format), pngs[key] if spectrograms else None)
                   for key, clip in audio.items()}

        if compared:
            headers = ["", *columns] + [f"SI-SDRi {c}" for c in per_column]
            score_cells = {n: [_score_cells(scores[c][n], improvements[c][n])[1] or "n/a" for c in per_column] for n in names}
        else:
            headers = ["", *columns] + (["SI-SDR", "SI-SDRi"] if scores else [])
            score_cells = {n: _score_cells(scores[n], improvements[n]) for n in scores}
        blank = [""] * (len(headers) - 1 - len(columns))
        rows = [_Row("mixture", [encoded.get(("mixture", c)) for c in columns], blank)]
        rows += [_Row(n, [encoded[n, c] for c in columns], score_cells.get(n, [])) for n in names if given]

        length = mix.shape[-1]
        excerpt = f"{length / sample_rate:.2f} s"
        if length < full_length:
            excerpt = f"the first {excerpt} of {full_length / sample_rate:.2f} s"
        layout = "mono" if mix.shape[0] == 1 else "stereo"
        caption = f"{sample_rate} Hz {layout}, {excerpt}. {_level_note(gain)}{scale_note}"
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        table = _html_table(headers, rows)
        self._static_html = f'<div class="metalearn-sep-stem-player">{heading}<p>{html.escape(caption)}</p>{table}</div>'
        sources = f" + {len(names)} sources ({', '.join(names)})" if given else ""
        text = [f"StemPlayer{' ' + repr(title) if title else ''}: mixture{sources}, {sample_rate} Hz {layout}, {excerpt}"]
        if compared:
            text += [f"SI-SDRi (dB), {c}: " + " | ".join(f"{n} {v:.2f}" for n, v in improvements[c].items()) for c in per_column]
        elif scores:
            text.append("SI-SDR (dB): " + " | ".join(f"{n} {v:.2f}" for n, v in scores.items()))
        text.append(_level_note(gain))
        self._text = "\n".join(text)

        header = [widgets.HTML(heading)] if heading else []
        small_caption = widgets.HTML(f"<small>{html.escape(caption)}</small>")
        super().__init__(children=[*header, small_caption, _widget_grid(headers, rows)])
        self.gain = gain
        self.si_sdr: dict[str, float] = scores
        self.si_sdr_improvement: dict[str, float] = improvements
        self.clips: dict[tuple[str, str], EncodedAudio] = {
            (row, "mixture" if row == "mixture" else col): c.audio for (row, col), c in encoded.items()
        }
        self.nbytes = sum(len(c.audio.data) + len(c.png or b"") for c in encoded.values())

    @property
    def html(self) -> str:
        """The static copy: ``<audio controls>`` elements and PNG spectrograms, all embedded."""
        return self._static_html

    def __repr__(self) -> str:
        return self._text

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self._text
        bundle["text/html"] = self._static_html
        return bundle


def play(
    audio: torch.Tensor | np.ndarray, sample_rate: int, max_seconds: float | None = None, audio_format: str = "auto"
) -> HTML:
    """One level-preserving HTML5 player (static: it renders wherever HTML does, widgets or not).

    Unlike ``IPython.display.Audio`` (``normalize=True``), the samples are played as
    they are; a clip that peaks above 1.0 is scaled down to 1.0 and the player says so.

    Args:
        audio: ``(time,)`` or ``(channel, time)``, 1 or 2 channels.
        sample_rate: Hz.
        max_seconds: embed only the first ``max_seconds``.
        audio_format: as :func:`encode`.
    """
    sample_rate = check_rate(sample_rate)
    x = as_waveform(audio, "audio", (1, 2), "(time,) or (channel, time)")
    x = _crop(x.unsqueeze(0) if x.dim() == 1 else x, sample_rate, max_seconds)
    gain = common_gain([x])
    clip = encode(x * gain, sample_rate, audio_format)
    note = "" if gain == 1.0 else f"<br><small>{html.escape(_level_note(gain))}</small>"
    return HTML(f'<audio controls preload="metadata" src="{clip.data_uri}"></audio>{note}')
