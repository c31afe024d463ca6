"""Mixer: mute, solo, turn up or down, and swap reference for estimate, stem by stem.

One excerpt, its stems (references ``s_i`` and/or estimates ``ŝ_i``) and, with estimates,
the residual ``r = x - Σ_i ŝ_i`` as a stem of its own: what the separator put in no
output (silence for a mask-based model whose masks sum to one; artefacts otherwise). A
row per stem has a mute and a solo toggle, a gain slider in dB and, when both are given,
a switch between the reference and the estimate; what is audible is summed in the kernel
and sent to one core ``Audio`` widget (no front-end extension). Listening to "the mix of
the estimates with the drums estimate replaced by the reference" is how one hears what a
single bad stem costs.

Level preserving: the stems are summed as they are, and only when the sum would clip is
it scaled by one common gain ``1 / peak``, shown in the caption. Solo follows mixing
desks: while any stem is soloed, exactly the soloed stems play; otherwise every stem that
is not muted.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import torch

from .. import SOURCES
from ..checks import check_rate
from .clips import (Cell, Row, StaticCopy, audio_widget, check_format, check_mixture, check_names, check_stems,
                    common_gain, crop, encode, html_table, level_note)
from .player import excerpt_caption

RESIDUAL = "residual"
GAIN_RANGE_DB = (-30.0, 12.0)
"""The gain slider's range: -30 dB is nearly inaudible under the rest, +12 dB brings a quiet stem forward."""


def css_name(name: str) -> str:
    """``name`` as a CSS class suffix: lower case, runs of other characters as one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "stem"


class Mixer(StaticCopy, widgets.VBox):
    """A per-stem mixer of one excerpt, mixed in the kernel and played by one ``Audio`` widget.

    Args:
        mixture: ``x``, ``(channel, time)`` with 1 or 2 channels.
        references: ``s``, ``(source, channel, time)``, or None.
        estimates: ``ŝ``, ``(source, channel, time)``, or None (one of the two is required).
            With estimates, a residual stem ``x - Σ ŝ_i`` is added.
        sample_rate: Hz.
        names: one per source.
        title: shown above the mixer.
        max_seconds: mix only the first ``max_seconds`` (None: all).
        audio_format: as :func:`~metalearn_sep.listen.encode`.

    Attributes:
        stems: ``{stem: {"reference"|"estimate": (channel, time)}}`` (the residual has an estimate only).
        gain: the common gain applied to the current mix (1.0 unless it would clip).
        clip: the current mix as :class:`~metalearn_sep.listen.EncodedAudio`.
        output: the ``Audio`` widget that plays it.
    """

    def __init__(
        self,
        mixture: torch.Tensor | np.ndarray,
        references: torch.Tensor | np.ndarray | None = None,
        estimates: torch.Tensor | np.ndarray | None = None,
        sample_rate: int | None = None,
        names: Sequence[str] = SOURCES,
        title: str | None = None,
        max_seconds: float | None = 10.0,
        audio_format: str = "auto",
    ) -> None:
        if sample_rate is None:
            raise ValueError("Mixer needs sample_rate (Hz): audio played at a wrong rate sounds plausible but wrong.")
        if references is None and estimates is None:
            raise ValueError("Mixer needs references, estimates or both: there is nothing to mix.")
        self.sample_rate = check_rate(sample_rate)
        check_format(audio_format)
        self._format = audio_format
        names = check_names(names, reserved=("mixture", RESIDUAL))
        mix = check_mixture(mixture)
        given = {kind: check_stems(x, f"{kind}s", names, mix) for kind, x in (("reference", references), ("estimate", estimates))
                 if x is not None}
        full_length = mix.shape[-1]
        mix = crop(mix, self.sample_rate, max_seconds)
        given = {kind: crop(x, self.sample_rate, max_seconds) for kind, x in given.items()}
        self.stems: dict[str, dict[str, torch.Tensor]] = {n: {kind: x[i] for kind, x in given.items()} for i, n in enumerate(names)}
        if "estimate" in given:
            self.stems[RESIDUAL] = {"estimate": mix - given["estimate"].sum(0)}
        self._silence = torch.zeros_like(mix)

        self._mute: dict[str, widgets.ToggleButton] = {}
        self._solo: dict[str, widgets.ToggleButton] = {}
        self._gain: dict[str, widgets.FloatSlider] = {}
        self._source: dict[str, widgets.ToggleButtons] = {}
        rows = []
        for stem, kinds in self.stems.items():
            suffix = css_name(stem)
            mute = widgets.ToggleButton(description="mute", tooltip=f"mute {stem}", layout=widgets.Layout(width="64px"))
            mute.add_class("metalearn-sep-mute")
            mute.add_class(f"metalearn-sep-mute-{suffix}")
            solo = widgets.ToggleButton(description="solo", tooltip=f"solo {stem}", layout=widgets.Layout(width="64px"))
            solo.add_class(f"metalearn-sep-solo-{suffix}")
            gain = widgets.FloatSlider(value=0.0, min=GAIN_RANGE_DB[0], max=GAIN_RANGE_DB[1], step=0.5, description="dB",
                                       continuous_update=False, readout_format=".1f", layout=widgets.Layout(width="260px"))
            row: list[widgets.Widget] = [widgets.Label(stem, layout=widgets.Layout(width="80px")), mute, solo, gain]
            if len(kinds) == 2:
                source = widgets.ToggleButtons(options=["estimate", "reference"], value="estimate",
                                               style={"button_width": "80px"})
                self._source[stem] = source
                row.append(source)
            self._mute[stem], self._solo[stem], self._gain[stem] = mute, solo, gain
            rows.append(widgets.HBox(row))

        self._excerpt = excerpt_caption(mix.shape[-1], full_length, self.sample_rate, mix.shape[0])
        self._caption = widgets.HTML()
        self.output = audio_widget(encode(self._silence, self.sample_rate, audio_format), "metalearn-sep-mixer-output")
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        self._static_html = self._static_copy(heading, mix)
        self._title = title
        super().__init__(children=[*([widgets.HTML(heading)] if heading else []), *rows, self.output, self._caption])
        self.add_class("metalearn-sep-mixer")
        for control in [*self._mute.values(), *self._solo.values(), *self._gain.values(), *self._source.values()]:
            control.observe(self._render, names="value")
        self._render()

    def set(self, stem: str, *, mute: bool | None = None, solo: bool | None = None, gain_db: float | None = None,
            source: str | None = None) -> None:
        """Change one stem's controls (as clicking them would); the mix is rendered again."""
        if stem not in self.stems:
            raise ValueError(f"Unknown stem {stem!r}; the mixer has {', '.join(self.stems)}.")
        if source is not None and source not in self.stems[stem]:
            raise ValueError(f"{stem} has no {source!r}; it has {', '.join(self.stems[stem])}.")
        if mute is not None:
            self._mute[stem].value = bool(mute)
        if solo is not None:
            self._solo[stem].value = bool(solo)
        if gain_db is not None:
            self._gain[stem].value = float(gain_db)
        if source is not None and stem in self._source:
            self._source[stem].value = source

    def audible(self) -> list[str]:
        """The stems that play: the soloed ones while any is soloed, else every stem not muted."""
        soloed = [s for s, b in self._solo.items() if b.value]
        return soloed or [s for s, b in self._mute.items() if not b.value]

    def _choice(self, stem: str) -> str:
        return self._source[stem].value if stem in self._source else next(iter(self.stems[stem]))

    def mix(self) -> torch.Tensor:
        """``Σ_{audible i} 10^(g_i / 20) · (s_i or ŝ_i)``, ``(channel, time)``, before the common gain."""
        out = self._silence.clone()
        for stem in self.audible():
            out += 10 ** (self._gain[stem].value / 20) * self.stems[stem][self._choice(stem)]
        return out

    def describe(self) -> str:
        """What plays, in words: each audible stem with its source and gain."""
        parts = [f"{stem} ({self._choice(stem)}, {self._gain[stem].value:+.1f} dB)" for stem in self.audible()]
        return "Playing " + (" + ".join(parts) if parts else "nothing (every stem muted)")

    def _render(self, change: dict | None = None) -> None:
        mixed = self.mix()
        self.gain = common_gain([mixed])
        self.clip = encode(mixed * self.gain, self.sample_rate, self._format)
        self.output.value = self.clip.data
        note = level_note(self.gain, "mix") if self.gain != 1.0 else "No clipping: the mix plays at its own level."
        self._caption.value = f"<small>{html.escape(self.describe())}. {html.escape(self._excerpt)}. {html.escape(note)}</small>"
        self._text = f"Mixer{' ' + repr(self._title) if self._title else ''}: {', '.join(self.stems)}; {self.describe()}; {note}"

    def _static_copy(self, heading: str, mix: torch.Tensor) -> str:
        """Every stem as it is (one common gain for all), for front ends without a kernel."""
        kinds = [k for k in ("reference", "estimate") if any(k in v for v in self.stems.values())]
        clips = [mix] + [x for v in self.stems.values() for x in v.values()]
        gain = common_gain(clips)
        cells = {(stem, kind): Cell(encode(x * gain, self.sample_rate, self._format))
                 for stem, v in self.stems.items() for kind, x in v.items()}
        rows = [Row("mixture", [Cell(encode(mix * gain, self.sample_rate, self._format))] + [None] * (len(kinds) - 1))]
        rows += [Row(stem, [cells.get((stem, k)) for k in kinds]) for stem in self.stems]
        note = ("The mixer needs a live kernel; here are its stems as they are. "
                f"{self._excerpt}. {level_note(gain)}")
        return (f'<div class="metalearn-sep-mixer-static">{heading}<p>{html.escape(note)}</p>'
                f"{html_table(['', *kinds], rows)}</div>")
