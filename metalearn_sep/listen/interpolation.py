"""An extractor nobody trained: the one generated from a point between two instrument embeddings.

In generated mode (chapter 03) each Meta-TasNet stage writes its masking network's weights
from an instrument embedding ``e_k``. Any ``(K, E1)`` table works, so the embedding
``e(w) = (1 - w) e_first + w e_second`` generates an extractor for every ``w`` in [0, 1]:
``w = 0`` is the learned ``first`` extractor, ``w = 1`` the learned ``second`` one. Because the
generator is linear in ``e``, the *weights* interpolate linearly too; the masks (a softmax
over instruments) and so the outputs do not. :class:`Interpolation` is a slider over ``w``
that regenerates the extractor, plays its output and scores it against both instruments.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import torch

from .. import SOURCES
from ..audio import resample
from ..checks import check_rate
from ..metrics import si_sdr_improvement
from ..models import MetaTasNet
from .clips import StaticCopy, audio_tag, check_mixture, check_stems, common_gain, crop, encode, level_note


def interpolated_extractor(model: MetaTasNet, mixture: torch.Tensor, first: int, second: int, w: float,
                           sample_rate: int) -> torch.Tensor:
    """The output ``(1, T)`` of the extractor generated from ``(1 - w) e_first + w e_second``.

    Every stage's ``first`` and ``second`` rows are replaced by the one interpolated row, next
    to the other instruments' learned rows, so the masks' softmax still competes with them.
    ``mixture`` is ``(1, T)`` at ``sample_rate`` (any rate; it is resampled to the stages'
    rates and back) and is scaled to unit standard deviation and back, as in training.
    """
    if not isinstance(model, MetaTasNet) or model.stages[0].embedding is None:
        raise ValueError("interpolated_extractor needs a MetaTasNet in generated mode (its stages own embedding tables).")
    rows = [k for k in range(len(SOURCES)) if k not in (first, second)]
    if first == second or {first, second} - set(range(len(SOURCES))):
        raise ValueError(f"first and second must be two different instrument indices in 0..{len(SOURCES) - 1}, got {first}, {second}.")
    sample_rate = check_rate(sample_rate)
    level = mixture.std() + 1e-8
    device = next(model.parameters()).device
    inputs = [x[None].to(device) for x in model.stage_inputs(mixture / level, sample_rate, pad=True)]
    with torch.no_grad():
        tables = [torch.cat([stage.embedding.interpolate(first, second, w), stage.embedding(rows)]) for stage in model.stages]
        estimate = model(inputs, embeddings=tables)[-1].estimates[0, 0].cpu()
    return resample(estimate, model.sample_rates[-1], sample_rate)[..., : mixture.shape[-1]] * level


class Interpolation(StaticCopy, widgets.VBox):
    """A slider over ``w`` between two instruments' embeddings, playing the generated extractor's output.

    Args:
        model: a generated :class:`~metalearn_sep.models.MetaTasNet`.
        mixture: ``(1, time)`` (mono, as the model separates).
        first, second: the instruments at ``w = 0`` and ``w = 1``, by name (in ``SOURCES``).
        sample_rate: Hz of ``mixture``.
        references: ``(4, 1, time)`` stems in ``SOURCES`` order, or None; with them each output
            is scored (SI-SDR improvement) against first, second and first + second.
        value: the starting ``w``.
        max_seconds: play the first ``max_seconds``; scores are over what plays.
        audio_format: as :func:`~metalearn_sep.listen.encode`.

    Attributes:
        w: the current ``w``; estimate: its output ``(1, time)``; improvements: ``{reference: dB}``.
    """

    def __init__(self, model: MetaTasNet, mixture: torch.Tensor | np.ndarray, first: str, second: str,
                 sample_rate: int, references: torch.Tensor | np.ndarray | None = None, value: float = 0.5,
                 max_seconds: float | None = 4.0, audio_format: str = "auto") -> None:
        unknown = [n for n in (first, second) if n not in SOURCES]
        if unknown:
            raise ValueError(f"first and second must be among {', '.join(SOURCES)}, got {first!r}, {second!r}.")
        self.sample_rate = check_rate(sample_rate)
        self._model, self._format, self._max_seconds = model, audio_format, max_seconds
        self._mixture = check_mixture(mixture)
        if self._mixture.shape[0] != 1:
            raise ValueError(f"Interpolation separates a mono mixture (1, time), got shape {tuple(self._mixture.shape)}.")
        self._first, self._second = SOURCES.index(first), SOURCES.index(second)
        self._names = (first, second, f"{first} + {second}")
        self._references = None
        if references is not None:
            stems = check_stems(references, "references", list(SOURCES), self._mixture)
            self._references = torch.stack([stems[self._first], stems[self._second], stems[self._first] + stems[self._second]])
        self._slider = widgets.FloatSlider(value=value, min=0.0, max=1.0, step=0.05, description="w", continuous_update=False,
                                           readout_format=".2f", layout=widgets.Layout(width="420px"))
        self._player = widgets.HTML()
        self._scores = widgets.HTML()
        super().__init__(children=[widgets.HTML(f"<b>{html.escape(first)}</b> (w = 0) ↔ <b>{html.escape(second)}</b> (w = 1)"),
                                   self._slider, self._player, self._scores])
        self.add_class("metalearn-sep-interpolation")
        self._slider.observe(self._render, names="value")
        self._render()

    @property
    def w(self) -> float:
        return float(self._slider.value)

    @w.setter
    def w(self, value: float) -> None:
        self._slider.value = value

    def _render(self, change: dict | None = None) -> None:
        self.estimate = interpolated_extractor(self._model, self._mixture, self._first, self._second, self.w, self.sample_rate)
        played = crop(self.estimate, self.sample_rate, self._max_seconds)
        gain = common_gain([played])
        tag = audio_tag(encode(played * gain, self.sample_rate, self._format))
        self.improvements: dict[str, float] = {}
        if self._references is not None:
            refs = crop(self._references, self.sample_rate, self._max_seconds)
            mix = crop(self._mixture, self.sample_rate, self._max_seconds)
            gains = si_sdr_improvement(played.expand_as(refs)[None], refs[None], mix[None])[0]
            self.improvements = dict(zip(self._names, gains.flatten().tolist()))
        scores = ", ".join(f"vs {n} {v:+.2f} dB" for n, v in self.improvements.items())
        text = f"w = {self.w:.2f}" + (f": SI-SDR improvement {scores}" if scores else "")
        note = "" if gain == 1.0 else f" {level_note(gain)}"
        self._player.value = tag
        self._scores.value = f"<small>{html.escape(text + note)}</small>"
        self._text = text
        self._static_html = (f'<div class="metalearn-sep-interpolation-static"><p>{html.escape(self._names[0])} (w = 0) ↔ '
                             f"{html.escape(self._names[1])} (w = 1); the slider needs a live kernel.</p>{tag}"
                             f"<p>{html.escape(text + note)}</p></div>")
