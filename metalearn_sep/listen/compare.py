"""Compare: one excerpt separated by several systems, side by side, best cell marked.

Columns are systems (a chapter's variants, checkpoints, the released weights), rows are
sources, each cell a player with its ``SI-SDR(ŝ_i, s_i)`` and improvement over the
mixture; the best system per source is marked. A last row plays each system's residual
``x - Σ_i ŝ_i`` with its energy relative to the mixture, ``10 log10(‖r‖² / ‖x‖²)`` dB:
lower is better (what no output took). Every clip of the grid shares one common gain, so
the systems are heard at the levels they produced.
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
from .clips import (Cell, EncodedAudio, Row, StaticCopy, check_format, check_mixture, check_names, check_stems,
                    common_gain, crop, encode, html_table, level_note, spectrogram_pngs, widget_grid)
from .mixer import RESIDUAL
from .player import excerpt_caption, si_sdr_scores

BEST = "★ best"


def residual_db(mixture: torch.Tensor, estimates: torch.Tensor) -> float:
    """``10 log10(‖x - Σ ŝ_i‖² / ‖x‖²)`` in dB; -inf when the estimates sum to the mixture exactly."""
    residual = (mixture.double() - estimates.double().sum(0)).pow(2).sum()
    return 10 * math.log10(float(residual) / float(mixture.double().pow(2).sum())) if residual > 0 else -math.inf


def _best(values: Mapping[str, float], lowest: bool = False) -> str | None:
    finite = {k: v for k, v in values.items() if not math.isnan(v)}
    if not finite:
        return None
    return (min if lowest else max)(finite, key=finite.get)


class Compare(StaticCopy, widgets.VBox):
    """A grid of players: sources (and the residual) as rows, systems as columns.

    Args:
        mixture: ``x``, ``(channel, time)``.
        references: ``s``, ``(source, channel, time)`` (a "reference" column and the scores), or None.
        systems: ``{system: ŝ (source, channel, time)}``, at least one.
        sample_rate: Hz.
        names: one per source.
        title: shown above the grid.
        max_seconds: play only the first ``max_seconds`` (None: all); scores are over what plays.
        audio_format: as :func:`~metalearn_sep.listen.encode`.
        spectrograms: draw each clip's spectrogram (about 8 kB a clip in the notebook).
        rows: the sources to show (default all ``names``): every source is still scored and the
            residual still subtracts every estimate, so fewer rows keep a notebook small
            without changing what the residual means.

    Attributes:
        si_sdr: ``{system: {source: dB}}`` (empty without references); NaN for a silent reference.
        si_sdr_improvement: ``{system: {source: dB}}``, over the mixture's SI-SDR.
        residual_db: ``{system: dB}`` (:func:`residual_db`).
        best: ``{row: system}``: highest SI-SDR per source, lowest residual energy.
        clips: ``{(row, column): EncodedAudio}``; nbytes, gain: as :class:`StemPlayer`.
    """

    def __init__(
        self,
        mixture: torch.Tensor | np.ndarray,
        references: torch.Tensor | np.ndarray | None,
        systems: Mapping[str, torch.Tensor | np.ndarray],
        sample_rate: int | None = None,
        names: Sequence[str] = SOURCES,
        title: str | None = None,
        max_seconds: float | None = 5.0,
        audio_format: str = "auto",
        spectrograms: bool = False,
        rows: Sequence[str] | None = None,
    ) -> None:
        if sample_rate is None:
            raise ValueError("Compare needs sample_rate (Hz): audio played at a wrong rate sounds plausible but wrong.")
        sample_rate = check_rate(sample_rate)
        check_format(audio_format)
        names = check_names(names, reserved=("mixture", RESIDUAL))
        if not isinstance(systems, Mapping) or not systems:
            raise ValueError("systems must be a non-empty {name: estimates (source, channel, time)} mapping.")
        if any(not isinstance(c, str) or c in ("mixture", "reference") for c in systems):
            raise ValueError(f"systems must be named by strings other than 'mixture' and 'reference', got {list(systems)!r}.")
        shown = list(names if rows is None else rows)
        if not shown or any(r not in names for r in shown):
            raise ValueError(f"rows must be some of the names ({', '.join(names)}), got {shown!r}.")
        mix = check_mixture(mixture)
        full_length = mix.shape[-1]
        given = {c: crop(check_stems(x, f"estimates of {c!r}", names, mix), sample_rate, max_seconds) for c, x in systems.items()}
        refs = None if references is None else crop(check_stems(references, "references", names, mix), sample_rate, max_seconds)
        mix = crop(mix, sample_rate, max_seconds)

        scores = {c: si_sdr_scores(refs, x, mix) for c, x in given.items()} if refs is not None else {}
        self.si_sdr = {c: dict(zip(names, v[0])) for c, v in scores.items()}
        self.si_sdr_improvement = {c: dict(zip(names, v[1])) for c, v in scores.items()}
        self.residual_db = {c: residual_db(mix, x) for c, x in given.items()}
        self.best: dict[str, str] = {}
        for n in names if scores else []:
            winner = _best({c: self.si_sdr[c][n] for c in given})
            if winner:
                self.best[n] = winner
        if len(given) > 1:
            self.best[RESIDUAL] = _best(self.residual_db, lowest=True)

        columns = (["reference"] if refs is not None else []) + list(given)
        audio = {("mixture", columns[0]): mix}
        audio |= {(n, "reference"): refs[names.index(n)] for n in shown} if refs is not None else {}
        audio |= {(n, c): x[names.index(n)] for c, x in given.items() for n in shown}
        audio |= {(RESIDUAL, c): mix - x.sum(0) for c, x in given.items()}
        self.gain = common_gain(list(audio.values()))
        audio = {key: clip * self.gain for key, clip in audio.items()}
        pngs, scale_note = spectrogram_pngs(audio, sample_rate, (3.0, 1.3)) if spectrograms else ({}, "")

        def note(row: str, column: str) -> str:
            mark = f" {BEST}" if self.best.get(row) == column else ""
            if row == RESIDUAL:
                return f"{self.residual_db[column]:.1f} dB re mixture{mark}"
            if column == "reference" or column not in self.si_sdr:
                return ""
            score, gain = self.si_sdr[column][row], self.si_sdr_improvement[column][row]
            return "n/a (silent reference)" if math.isnan(score) else f"SI-SDR {score:.2f} dB ({gain:+.2f}){mark}"

        cells = {key: Cell(encode(clip, sample_rate, audio_format), pngs.get(key), note(*key), f"spectrogram of {' '.join(key)}",
                           "metalearn-sep-best" if self.best.get(key[0]) == key[1] else "")
                 for key, clip in audio.items()}
        grid_rows = [Row(r, [cells.get((r, c)) for c in columns]) for r in ["mixture", *shown, RESIDUAL]]
        excerpt = excerpt_caption(mix.shape[-1], full_length, sample_rate, mix.shape[0])
        caption = f"{excerpt}. {level_note(self.gain)}{scale_note} {BEST}: highest SI-SDR per source, least residual energy."
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        self._static_html = (f'<div class="metalearn-sep-compare-static">{heading}<p>{html.escape(caption)}</p>'
                             f"{html_table(['', *columns], grid_rows)}</div>")
        text = [f"Compare{' ' + repr(title) if title else ''}: {', '.join(given)} on {excerpt}"]
        text += [f"SI-SDR (dB), {c}: " + " | ".join(f"{n} {v:.2f}" for n, v in self.si_sdr[c].items()) for c in self.si_sdr]
        text.append("residual (dB re mixture): " + " | ".join(f"{c} {v:.1f}" for c, v in self.residual_db.items()))
        text.append("best: " + ", ".join(f"{r} {c}" for r, c in self.best.items()))
        self._text = "\n".join(text)

        grid = widget_grid(["", *columns], grid_rows, cell_class="metalearn-sep-compare-cell")
        super().__init__(children=[*([widgets.HTML(heading)] if heading else []), widgets.HTML(f"<small>{html.escape(caption)}</small>"), grid])
        self.add_class("metalearn-sep-compare")
        self.clips: dict[tuple[str, str], EncodedAudio] = {key: c.audio for key, c in cells.items()}
        self.nbytes = sum(len(c.audio.data) + len(c.png or b"") for c in cells.values())
