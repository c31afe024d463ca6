"""ABX: a blind, level-matched test of whether a listener can tell two systems apart.

Each trial plays a short excerpt of system A, the same excerpt of system B, and X: one of
the two, drawn at random by a seeded generator. The listener answers "X is A" or "X is B".
After N trials the widget reveals the answers, the score k/N and the one-sided binomial
p-value ``P(K >= k)`` for ``K ~ Binomial(N, 1/2)``: the chance that someone who hears no
difference (and so guesses) scores at least k. A small p (say below 0.05) is evidence that
the difference is audible; a large one is not evidence of *no* difference, only of none
heard in N trials (with N = 8, even a perfect score only reaches p = 1/256 = 0.004).

Fairness: A and B are matched in integrated loudness (ITU-R BS.1770, see
:mod:`~metalearn_sep.listen.loudness`) before anything is played, because the louder clip
is easy to pick out. Secrecy: the kernel holds the answers; the page has three fixed
``Audio`` widgets whose bytes change each trial. X is never the same bytes as A or B:
every clip gets its own inaudible dither (triangular, ±1 LSB of 16 bits, about -98 dBFS),
so the page cannot reveal X by comparing sources, sizes or order.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import ipywidgets as widgets
import numpy as np
import torch

from ..atomic import atomic_write_text
from ..checks import check_duration, check_rate
from ..plots import as_waveform
from .clips import StaticCopy, audio_tag, audio_widget, check_format, common_gain, encode
from .loudness import integrated_loudness, match_loudness

DITHER = 2.0**-15
"""Peak of the triangular dither added to each played clip: one least significant bit of 16-bit audio."""


def binomial_p_value(correct: int, trials: int) -> float:
    """``P(K >= correct)`` for ``K ~ Binomial(trials, 1/2)``: the one-sided p-value of an ABX score."""
    if not (isinstance(trials, int) and trials >= 1 and isinstance(correct, int) and 0 <= correct <= trials):
        raise ValueError(f"need whole numbers 0 <= correct <= trials and trials >= 1, got correct={correct!r}, trials={trials!r}.")
    return sum(math.comb(trials, k) for k in range(correct, trials + 1)) / 2**trials


class Trial(NamedTuple):
    """One ABX trial: where its excerpt starts (s), what X was, what the listener answered."""

    number: int
    start_seconds: float
    x_is: str
    answer: str | None

    @property
    def correct(self) -> bool:
        return self.answer == self.x_is


class ABX(StaticCopy, widgets.VBox):
    """A blind ABX test between systems A and B on short, level-matched excerpts.

    Args:
        a, b: ``(channel, time)`` each, the same shape (e.g. two systems' estimates of one
            stem, or an estimate and its reference).
        sample_rate: Hz.
        names: what A and B are; revealed only with the answers.
        trials: N, the number of trials.
        seconds: length of each trial's excerpt (at least 0.4 s, one loudness block); the
            excerpts start at random points of the clips.
        seed: seeds the generator that draws X and the excerpts (and the dither).
        audio_format: as :func:`~metalearn_sep.listen.encode`.
        title: shown above the test.

    Attributes:
        loudness: ``{"A": LUFS, "B": LUFS}`` before matching; gains_db: the gains that matched them.
        trials: the :class:`Trial` s so far (``x_is`` is the kernel's secret; do not print it
            before :meth:`reveal`, as a fair test needs).
    """

    def __init__(
        self,
        a: torch.Tensor | np.ndarray,
        b: torch.Tensor | np.ndarray,
        sample_rate: int | None = None,
        names: Sequence[str] = ("A", "B"),
        trials: int = 8,
        seconds: float = 3.0,
        seed: int = 0,
        audio_format: str = "auto",
        title: str | None = None,
    ) -> None:
        if sample_rate is None:
            raise ValueError("ABX needs sample_rate (Hz): audio played at a wrong rate sounds plausible but wrong.")
        self.sample_rate = check_rate(sample_rate)
        check_format(audio_format)
        if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
            raise ValueError(f"trials must be a positive whole number, got {trials!r}.")
        names = list(names)
        if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"names must be two non-empty strings (what A and B are), got {names!r}.")
        clips = [as_waveform(x, name, (2,), "(channel, time)") for x, name in ((a, "a"), (b, "b"))]
        if clips[0].shape != clips[1].shape or clips[0].shape[0] not in (1, 2):
            raise ValueError(f"a and b must have the same (channel, time) shape with 1 or 2 channels, "
                             f"got {tuple(clips[0].shape)} and {tuple(clips[1].shape)}.")
        self._length = round(check_duration(seconds, "seconds") * self.sample_rate)
        if self._length > clips[0].shape[-1]:
            raise ValueError(f"Each excerpt lasts {seconds} s but the clips last only {clips[0].shape[-1] / self.sample_rate:.2f} s.")
        if self._length < 0.4 * self.sample_rate:
            raise ValueError(f"seconds must be at least 0.4 (one BS.1770 loudness block), got {seconds}.")
        self.loudness = {"A": integrated_loudness(clips[0], self.sample_rate), "B": integrated_loudness(clips[1], self.sample_rate)}
        matched, gains = match_loudness(clips, self.sample_rate)
        self.gains_db = {"A": gains[0], "B": gains[1]}
        peak_gain = common_gain(matched)  # one gain for both, only if matching left a peak above 1
        self._clips = {"A": matched[0] * peak_gain, "B": matched[1] * peak_gain}
        self.names = {"A": names[0], "B": names[1]}
        self._format = audio_format
        self._rng = np.random.default_rng(seed)  # X and the excerpts
        self._dither_rng = np.random.default_rng([seed, 1])  # apart, so the draws do not depend on the clips' length
        self._count = trials
        self.trials: list[Trial] = []
        self.revealed = False

        self._players = {key: audio_widget(encode(torch.zeros(1, 1), self.sample_rate, audio_format), "metalearn-sep-abx-player")
                         for key in ("A", "B", "X")}
        self._answer_buttons = {}
        for key in ("A", "B"):
            button = widgets.Button(description=f"X is {key}", button_style="primary")
            button.add_class(f"metalearn-sep-abx-{key.lower()}")
            button.on_click(lambda _, key=key: self.answer(key))
            self._answer_buttons[key] = button
        self._reveal_button = widgets.Button(description="reveal", disabled=True)
        self._reveal_button.add_class("metalearn-sep-abx-reveal")
        self._reveal_button.on_click(lambda _: self.reveal())
        self._status = widgets.HTML()
        self._status.add_class("metalearn-sep-abx-status")
        self._result = widgets.HTML()
        self._result.add_class("metalearn-sep-abx-result")
        heading = f"<h4>{html.escape(title)}</h4>" if title else ""
        match_note = (f"Level-matched by integrated loudness (BS.1770): A {self.loudness['A']:.1f} LUFS, "
                      f"B {self.loudness['B']:.1f} LUFS before matching; both now play at {min(self.loudness.values()):.1f} LUFS.")
        if peak_gain != 1.0:
            match_note += f" Both are also turned down by {-20 * math.log10(peak_gain):.1f} dB so that no peak clips."
        self._match_note = match_note
        players = widgets.HBox([widgets.VBox([widgets.Label(key), self._players[key]]) for key in ("A", "B", "X")])
        super().__init__(children=[*([widgets.HTML(heading)] if heading else []), widgets.HTML(f"<small>{html.escape(match_note)}</small>"),
                                   players, widgets.HBox([*self._answer_buttons.values(), self._reveal_button]),
                                   self._status, self._result])
        self.add_class("metalearn-sep-abx")
        self._static_html = self._static_copy(heading)
        self._next_trial()

    def _excerpt(self, key: str, start: int) -> bytes:
        clip = self._clips[key][:, start : start + self._length]
        u = self._dither_rng.random((2, *clip.shape))
        dither = torch.from_numpy((u[0] - u[1]) * DITHER).float()
        return encode(clip + dither, self.sample_rate, self._format).data

    def _next_trial(self) -> None:
        start = int(self._rng.integers(0, self._clips["A"].shape[-1] - self._length + 1))
        x_is = "A" if self._rng.random() < 0.5 else "B"
        self.trials.append(Trial(len(self.trials) + 1, start / self.sample_rate, x_is, None))
        data = {key: self._excerpt(key, start) for key in ("A", "B")}
        data["X"] = self._excerpt(x_is, start)
        for key, value in data.items():
            self._players[key].value = value
        self._status.value = f"Trial {len(self.trials)} of {self._count}: listen to A, B and X, then answer."

    def answer(self, x_is: str) -> None:
        """Record "X is ``x_is``" (``"A"`` or ``"B"``) for the current trial and go to the next one."""
        if x_is not in ("A", "B"):
            raise ValueError(f"An answer is 'A' or 'B', got {x_is!r}.")
        if self.answered == self._count:
            raise ValueError(f"All {self._count} trials are answered; reveal() shows the result.")
        self.trials[-1] = self.trials[-1]._replace(answer=x_is)
        if self.answered < self._count:
            self._next_trial()
            return
        for button in self._answer_buttons.values():
            button.disabled = True
        self._reveal_button.disabled = False
        self._status.value = f"All {self._count} trials answered: reveal the result."

    @property
    def answered(self) -> int:
        """How many trials have an answer."""
        return sum(t.answer is not None for t in self.trials)

    @property
    def score(self) -> int:
        """Correct answers so far (meaningful once revealed)."""
        return sum(t.correct for t in self.trials)

    def reveal(self) -> str:
        """After the N-th answer: show each trial's truth, the score and the p-value; returns the summary."""
        if self.answered < self._count:
            raise ValueError(f"Answer all {self._count} trials first ({self.answered} answered): revealing early would spoil the test.")
        self.revealed = True
        self._reveal_button.disabled = True
        p = binomial_p_value(self.score, self._count)
        summary = (f"Score {self.score}/{self._count} (A = {self.names['A']}, B = {self.names['B']}); "
                   f"p = {p:.3g}: a listener who only guessed would score at least this well with probability {p:.3g}.")
        rows = "".join(f"<tr><td>{t.number}</td><td>{t.start_seconds:.2f}</td><td>{t.x_is}</td><td>{t.answer}</td>"
                       f"<td>{'yes' if t.correct else 'no'}</td></tr>" for t in self.trials)
        self._result.value = (f"<p><b>{html.escape(summary)}</b></p><table><tr><th>trial</th><th>start (s)</th>"
                              f"<th>X was</th><th>answer</th><th>correct</th></tr>{rows}</table>")
        self._summary = summary
        return summary

    def table(self) -> list[dict[str, object]]:
        """The trials as rows (trial, start_seconds, x_is, x_was, answer, correct), once revealed."""
        if not self.revealed:
            raise ValueError("The trials' answers are secret until reveal(): answer every trial, then reveal.")
        return [{"trial": t.number, "start_seconds": round(t.start_seconds, 3), "x_is": t.x_is,
                 "x_was": self.names[t.x_is], "answer": t.answer, "correct": t.correct} for t in self.trials]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`table` as CSV, atomically (a temporary file renamed into place)."""
        rows = self.table()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, buffer.getvalue())

    def _static_copy(self, heading: str) -> str:
        """A and B (named) on their first excerpt: without a kernel there can be no blind test."""
        players = "".join(f"<p>{key} ({html.escape(self.names[key])}): "
                          f"{audio_tag(encode(self._clips[key][:, : self._length], self.sample_rate, self._format))}</p>"
                          for key in ("A", "B"))
        note = f"The blind ABX test needs a live kernel; here are A and B, named. {self._match_note}"
        return f'<div class="metalearn-sep-abx-static">{heading}<p>{html.escape(note)}</p>{players}</div>'

    @property
    def _text(self) -> str:  # type: ignore[override]
        if self.revealed:
            return self._summary
        return f"ABX: {self._count} trials, {self.answered} answered. {self._match_note}"
