"""Clips as the listening widgets embed them: level-preserving encoding, grids of players, a static copy.

Every widget of :mod:`metalearn_sep.listen` is built from core ipywidgets (``Audio``,
``Image``, ``Label``, ``HTML``, ``Button``, ``ToggleButton``, ``FloatSlider``, boxes; no
front-end extension beyond the core widgets that JupyterLab, Notebook, VS Code and Colab
ship) and carries a static copy for places where widgets do not render: its
``text/html`` representation holds HTML5 ``<audio controls>`` elements with the audio
embedded as data URIs and images as base64 PNG, next to the widget view and a short
``text/plain``. Which one a front end shows (read in JupyterLab 4.6, jupyterlab_widgets
3.0, widgetsnbextension 4.0 and nbconvert 7.17):

* JupyterLab and Notebook 7 rank the widget renderer -10 against 50 for HTML, so a
  live widget is the widget. Untrusted outputs (a notebook someone else saved) may use
  only "safe" renderers, so they show the static copy (the sanitizer keeps
  ``<audio controls src>`` and ``<img src="data:...">``). A trusted notebook reopened
  without its kernel or saved widget state shows "Error displaying widget: model not
  found" (the widget renderer does not fall back): run the cell again.
* Notebook 6 puts the widget first; nbconvert (and nbviewer) renders the widget when
  the notebook holds widget state, the static copy otherwise.

``display(widget, exclude=[WIDGET_VIEW_MIME])`` shows the static copy only.

Loudness is part of what a student must hear, so no clip is normalised on its own. When
some clip peaks above 1.0, every clip of a widget is scaled by the same factor (and the
caption says so); otherwise the samples are played as they are.

Audio is embedded as MP3 when libsndfile can encode it at the rate (libsndfile >= 1.1,
MPEG rates 8 to 48 kHz): every modern browser plays it, and libsndfile's encoder is
deterministic, so re-running a cell gives the same bytes (its Ogg/Vorbis and Opus
output differs from run to run). It costs 2 to 5 kB per second of audio at
8 kHz mono and up to 26 kB/s at 44.1 kHz stereo (:data:`MAX_BYTES_PER_SECOND`), against
16 and 176 kB/s for the 16-bit WAV used otherwise. Base64 adds a third in the notebook
file, and each clip's spectrogram about 8 kB.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import NamedTuple

import ipywidgets as widgets
import matplotlib
import numpy as np
import soundfile as sf
import torch
from IPython.display import HTML
from matplotlib.figure import Figure

from ..checks import check_duration, check_rate
from ..plots import DYNAMIC_RANGE_DB, as_waveform, log_spectrogram, palette_png, spectrogram

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

PALETTE_COLOURS = 64  # spectrogram PNGs are palette images: about 4x smaller than RGB


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


def check_format(audio_format: str) -> None:
    """``audio_format`` must be ``"auto"``, ``"mp3"`` or ``"wav"``."""
    if audio_format not in ("auto", "mp3", "wav"):
        raise ValueError(f"audio_format must be 'auto', 'mp3' or 'wav', got {audio_format!r}.")


def check_mixture(mixture: object) -> torch.Tensor:
    """``mixture`` as a float32 ``(channel, time)`` tensor with 1 or 2 channels."""
    mix = as_waveform(mixture, "mixture", (2,), "(channel, time) with 1 or 2 channels")
    if mix.shape[0] not in (1, 2):
        raise ValueError(f"mixture must have 1 (mono) or 2 (stereo) channels, got shape {tuple(mix.shape)}.")
    return mix


def check_names(names: Sequence[str], reserved: Sequence[str] = ("mixture",)) -> list[str]:
    """``names`` as a list of distinct strings, none of them ``reserved``."""
    names = list(names)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names) or set(names) & set(reserved):
        others = " or ".join(repr(r) for r in reserved)
        raise ValueError(f"names must be distinct strings other than {others}, one per source, got {names!r}.")
    return names


def check_stems(x: object, name: str, names: list[str], mixture: torch.Tensor) -> torch.Tensor:
    """``x`` as ``(source, channel, time)`` with one source per name and the mixture's ``(channel, time)``."""
    stems = as_waveform(x, name, (3,), "(source, channel, time)")
    if stems.shape[0] != len(names):
        raise ValueError(f"{name} has {stems.shape[0]} sources but names has {len(names)} ({', '.join(names)}).")
    if stems.shape[1:] != mixture.shape:
        raise ValueError(
            f"Each source of {name} must have the mixture's (channel, time) shape {tuple(mixture.shape)}, "
            f"got {tuple(stems.shape[1:])}."
        )
    return stems


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
    check_format(audio_format)
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


def level_note(gain: float, what: str = "clip") -> str:
    """The caption that says whether (and by how much) the common gain scaled the clips."""
    if gain == 1.0:
        return f"Levels as given: no {what} is normalised on its own."
    return (
        f"The loudest {what} peaked at {1 / gain:.2f}, so every {what} is scaled by the same "
        f"{gain:.3f} ({20 * math.log10(gain):.1f} dB): relative levels are kept."
    )


def crop(x: torch.Tensor, sample_rate: int, max_seconds: float | None) -> torch.Tensor:
    """The first ``max_seconds`` of ``x`` (``(..., time)``); all of it for None."""
    if max_seconds is None:
        return x
    return x[..., : max(1, round(check_duration(max_seconds, "max_seconds") * sample_rate))]


def spectrogram_png(fig: Figure, clip: torch.Tensor, sample_rate: int, vmax: float) -> bytes:
    """A small palette PNG of ``clip``'s spectrogram on the colour scale ``[vmax - 80, vmax]`` dB."""
    fig.clear()
    spectrogram(clip, sample_rate, ax=fig.add_subplot(), vmin=vmax - DYNAMIC_RANGE_DB, vmax=vmax, colorbar=False)
    return palette_png(fig, PALETTE_COLOURS)


def spectrogram_pngs(audio: dict[tuple[str, str], torch.Tensor], sample_rate: int,
                     figsize: tuple[float, float] = (3.4, 1.4)) -> tuple[dict[tuple[str, str], bytes], str]:
    """Every clip's spectrogram on one shared colour scale, and the caption sentence that says so.

    One scale for all (the loudest clip's peak minus 80 dB) keeps loudness visible: a quieter
    estimate looks darker, as it sounds quieter.
    """
    vmax = max(float(log_spectrogram(clip, sample_rate)[0].max()) for clip in audio.values())
    with matplotlib.rc_context({"font.size": 6}):
        fig = Figure(figsize=figsize, dpi=80, layout="constrained")
        pngs = {key: spectrogram_png(fig, clip, sample_rate, vmax) for key, clip in audio.items()}
    return pngs, f" Spectrograms share one colour scale ({vmax - DYNAMIC_RANGE_DB:.0f} to {vmax:.0f} dB re full scale)."


def audio_widget(clip: EncodedAudio, css_class: str | None = None) -> widgets.Audio:
    """A core ``Audio`` widget (controls, no autoplay) playing ``clip``."""
    player = widgets.Audio(value=clip.data, format=clip.mime.split("/")[1], autoplay=False, loop=False, controls=True)
    if css_class:
        player.add_class(css_class)
    return player


def audio_tag(clip: EncodedAudio) -> str:
    """An HTML5 ``<audio controls>`` element with ``clip`` embedded as a data URI."""
    return f'<audio controls preload="metadata" src="{clip.data_uri}"></audio>'


class Cell(NamedTuple):
    """One cell of a grid of players: a clip, its spectrogram, a note under it (e.g. its SI-SDR)."""

    audio: EncodedAudio
    png: bytes | None = None
    note: str = ""
    alt: str = ""  # what the spectrogram shows, for its alt text
    css_class: str = ""  # an extra CSS class of the cell's widget (e.g. the best cell of a row)


class Row(NamedTuple):
    """One row of a grid: its name, then per column a :class:`Cell`, a text, or None (empty)."""

    name: str
    cells: list[Cell | str | None]


def widget_grid(headers: list[str], rows: list[Row], cell_class: str | None = None) -> widgets.GridBox:
    """The rows as a ``GridBox`` of core widgets; each :class:`Cell` a ``VBox`` (with ``cell_class``)."""
    items: list[widgets.Widget] = [widgets.HTML(f"<b>{html.escape(h)}</b>") for h in headers]
    for row in rows:
        items.append(widgets.Label(row.name))
        for cell in row.cells:
            if not isinstance(cell, Cell):
                items.append(widgets.Label(cell or ""))
                continue
            parts: list[widgets.Widget] = [audio_widget(cell.audio)]
            if cell.png:
                parts.append(widgets.Image(value=cell.png, format="png"))
            if cell.note:
                parts.append(widgets.HTML(f"<small>{html.escape(cell.note)}</small>"))
            box = widgets.VBox(parts)
            for css in (cell_class, cell.css_class):
                if css:
                    box.add_class(css)
            items.append(box)
    layout = widgets.Layout(
        grid_template_columns=f"repeat({len(headers)}, max-content)", grid_gap="4px 12px", align_items="center"
    )
    return widgets.GridBox(items, layout=layout)


def html_table(headers: list[str], rows: list[Row]) -> str:
    """The rows as an HTML table of ``<audio controls>`` elements and embedded PNGs (the static copy)."""
    lines = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    for row in rows:
        cells = [f"<td><b>{html.escape(row.name)}</b></td>"]
        for cell in row.cells:
            if not isinstance(cell, Cell):
                cells.append(f"<td>{html.escape(cell or '')}</td>")
                continue
            image = note = ""
            if cell.png:
                png = base64.b64encode(cell.png).decode("ascii")
                image = f'<br><img alt="{html.escape(cell.alt or "spectrogram")}" src="data:image/png;base64,{png}">'
            if cell.note:
                note = f"<br><small>{html.escape(cell.note)}</small>"
            cells.append(f"<td>{audio_tag(cell.audio)}{image}{note}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{''.join(lines)}</table>"


class StaticCopy:
    """Mixin for a widget that also carries a static HTML copy and a short text.

    The subclass sets ``self._static_html`` and ``self._text``; :meth:`_repr_mimebundle_`
    puts them beside the widget view, so the notebook keeps them as ``text/html`` and
    ``text/plain`` outputs.
    """

    _static_html: str = ""
    _text: str = ""

    @property
    def html(self) -> str:
        """The static copy: ``<audio controls>`` elements and PNG images, all embedded."""
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
    x = crop(x.unsqueeze(0) if x.dim() == 1 else x, sample_rate, max_seconds)
    gain = common_gain([x])
    clip = encode(x * gain, sample_rate, audio_format)
    note = "" if gain == 1.0 else f"<br><small>{html.escape(level_note(gain))}</small>"
    return HTML(f"{audio_tag(clip)}{note}")
