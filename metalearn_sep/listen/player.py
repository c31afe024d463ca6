"""StemPlayer: one excerpt's mixture, references and estimates as a grid of players.

A row for the mixture ``x``, then a row per source ``i`` with the reference ``s_i``, the
estimate ``ŝ_i``, their spectrograms and ``SI-SDR(ŝ_i, s_i)`` with its improvement over the
mixture. A full player (mixture + 4 references + 4 estimates) adds to a notebook about
40 kB per second of excerpt at 8 kHz mono, 55 kB/s at 16 kHz mono, 95 kB/s at 32 kHz mono
and 200 kB/s at 44.1 kHz stereo (measured), so the default ``max_seconds=5`` keeps one
player under 1 MiB at rates up to 44.1 kHz. Embedding and the static copy:
:mod:`metalearn_sep.listen.clips`.

Shapes: the mixture is ``(channel, time)``, references and estimates ``(source, channel,
time)`` with 1 or 2 channels, torch tensors or numpy arrays, in the order of ``names``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import torch

from .. import SOURCES
from ..checks import check_rate
from ..metrics import si_sdr
from .clips import (Cell, EncodedAudio, Row, StaticCopy, check_format, check_mixture, check_names, check_stems,
                    common_gain, crop, encode, html_table, level_note, spectrogram_pngs, widget_grid)


def si_sdr_scores(references: torch.Tensor, estimates: torch.Tensor, mixture: torch.Tensor) -> tuple[list[float], list[float]]:
    """``(SI-SDR(ŝ_i, s_i), its improvement over the mixture)`` per source in dB, channels averaged.

    ``references`` and ``estimates`` are ``(source, channel, time)``, ``mixture`` ``(channel,
    time)``; NaN for a silent ``s_i`` (its SI-SDR is undefined).
    """
    refs, ests = references.double(), estimates.double()
    silent = refs.pow(2).sum(dim=(-1, -2)) == 0
    est_sdr = si_sdr(ests, refs).mean(-1).masked_fill(silent, float("nan"))
    mix_sdr = si_sdr(mixture.double().expand_as(refs), refs).mean(-1)
    return est_sdr.tolist(), (est_sdr - mix_sdr).tolist()


def _score_cells(score: float, improvement: float) -> list[str]:
    if math.isnan(score):
        return ["n/a (silent reference)", ""]
    return [f"{score:.2f} dB", f"{improvement:+.2f} dB"]


def excerpt_caption(length: int, full_length: int, sample_rate: int, channels: int) -> str:
    """``"8000 Hz mono, the first 2.00 s of 6.00 s"``: what a widget plays."""
    excerpt = f"{length / sample_rate:.2f} s"
    if length < full_length:
        excerpt = f"the first {excerpt} of {full_length / sample_rate:.2f} s"
    return f"{sample_rate} Hz {'mono' if channels == 1 else 'stereo'}, {excerpt}"


class StemPlayer(StaticCopy, widgets.VBox):
    """Players, spectrograms and SI-SDR for one excerpt, as core widgets plus a static HTML copy.

    Args:
        mixture: ``x``, ``(channel, time)`` with 1 or 2 channels.
        references: ``s``, ``(source, channel, time)``, or None.
        estimates: ``ŝ``, ``(source, channel, time)``, or None; or ``{column: (source, channel,
            time)}`` to compare several separations of the same excerpt (one column each, scored
            by SI-SDRi per column; :class:`~metalearn_sep.listen.Compare` adds a residual row).
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
        estimates: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray] | None = None,
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
        check_format(audio_format)
        names = check_names(names)
        mix = check_mixture(mixture)
        compared = isinstance(estimates, Mapping)
        if compared and (not estimates or any(not isinstance(c, str) or c in ("mixture", "reference") for c in estimates)):
            raise ValueError(f"estimate columns must be named by strings other than 'mixture' and 'reference', got {list(estimates)!r}.")
        stems = [("reference", references)] + (list(estimates.items()) if compared else [("estimate", estimates)])
        given = {c: check_stems(x, "references" if c == "reference" else f"estimates {c!r}" if compared else "estimates", names, mix)
                 for c, x in stems if x is not None}
        full_length = mix.shape[-1]
        mix = crop(mix, sample_rate, max_seconds)
        given = {c: crop(x, sample_rate, max_seconds) for c, x in given.items()}

        # SI-SDR over what is played, before the common gain (it is scale-invariant anyway).
        per_column = {c: si_sdr_scores(given["reference"], x, mix) for c, x in given.items() if c != "reference"} if "reference" in given else {}
        scores = {c: dict(zip(names, v[0])) for c, v in per_column.items()}
        improvements = {c: dict(zip(names, v[1])) for c, v in per_column.items()}
        if not compared:
            scores, improvements = scores.get("estimate", {}), improvements.get("estimate", {})

        columns = list(given) or ["mixture"]
        audio = {("mixture", columns[0]): mix} | {(n, c): x[i] for c, x in given.items() for i, n in enumerate(names)}
        gain = common_gain(list(audio.values()))
        audio = {key: clip * gain for key, clip in audio.items()}
        pngs, scale_note = spectrogram_pngs(audio, sample_rate) if spectrograms else ({}, "")
        encoded = {
            key: Cell(encode(clip, sample_rate, audio_format), pngs.get(key),
                      alt=f"spectrogram of {key[0] if key[0] == 'mixture' else ' '.join(key)}")
            for key, clip in audio.items()
        }

        if compared:
            headers = ["", *columns] + [f"SI-SDRi {c}" for c in per_column]
            score_cells = {n: [_score_cells(scores[c][n], improvements[c][n])[1] or "n/a" for c in per_column] for n in names}
        else:
            headers = ["", *columns] + (["SI-SDR", "SI-SDRi"] if scores else [])
            score_cells = {n: _score_cells(scores[n], improvements[n]) for n in scores}
        blank: list[Cell | str | None] = [""] * (len(headers) - 1 - len(columns))
        rows = [Row("mixture", [encoded.get(("mixture", c)) for c in columns] + blank)]
        rows += [Row(n, [encoded[n, c] for c in columns] + score_cells.get(n, [])) for n in names if given]

        excerpt = excerpt_caption(mix.shape[-1], full_length, sample_rate, mix.shape[0])
        caption = f"{excerpt}. {level_note(gain)}{scale_note}"
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        self._static_html = (f'<div class="metalearn-sep-stem-player">{heading}<p>{html.escape(caption)}</p>'
                             f"{html_table(headers, rows)}</div>")
        sources = f" + {len(names)} sources ({', '.join(names)})" if given else ""
        text = [f"StemPlayer{' ' + repr(title) if title else ''}: mixture{sources}, {excerpt}"]
        if compared:
            text += [f"SI-SDRi (dB), {c}: " + " | ".join(f"{n} {v:.2f}" for n, v in improvements[c].items()) for c in per_column]
        elif scores:
            text.append("SI-SDR (dB): " + " | ".join(f"{n} {v:.2f}" for n, v in scores.items()))
        text.append(level_note(gain))
        self._text = "\n".join(text)

        header = [widgets.HTML(heading)] if heading else []
        small_caption = widgets.HTML(f"<small>{html.escape(caption)}</small>")
        super().__init__(children=[*header, small_caption, widget_grid(headers, rows)])
        self.add_class("metalearn-sep-stem-player")
        self.gain = gain
        self.si_sdr: dict = scores
        self.si_sdr_improvement: dict = improvements
        self.clips: dict[tuple[str, str], EncodedAudio] = {
            (row, "mixture" if row == "mixture" else col): c.audio for (row, col), c in encoded.items()
        }
        self.nbytes = sum(len(c.audio.data) + len(c.png or b"") for c in encoded.values())
