"""The shipped models and excerpts as the notebooks play them.

A chapter's notebook trains its own small model (the exercise) but lets the student *hear*
the course's shipped model of that chapter (:mod:`metalearn_sep.pretrained`): trained at cpu
scale by ``make checkpoints``, it separates far better than a model trained for seconds in
CI. :func:`shipped_estimates` runs one on a song the way the sweep scored it;
:func:`compare_variants` lays out the recorded variants of a chapter's experiment side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import torch

from . import SOURCES
from .experiments import chapter, estimate_song, test_songs
from .listen import Compare, StemPlayer
from .pretrained import pretrained, read_manifest, variant_excerpts


def shipped_estimates(name: str, mixture: torch.Tensor, root: str | os.PathLike | None = None) -> torch.Tensor:
    """The four stems ``(4, C, T)`` shipped chapter model ``name`` estimates from ``mixture`` ``(C, T)``.

    The mixture must be at the chapter's rate (``chapter(n).RATE``); the estimates are rescaled
    by least squares against it (:func:`~metalearn_sep.experiments.estimate_song`), as when scored.
    """
    entry = read_manifest(root).get(name, {})
    if "chapter" not in entry or "variant" not in entry:
        raise ValueError(f"{name!r} is not a shipped chapter model: use separate() for the default separator.")
    model = pretrained(name, root)
    return estimate_song([(model, chapter(entry["chapter"]).objective(entry["variant"]))], mixture)


class VariantSong(NamedTuple):
    """One held-out excerpt of a chapter's song and every recorded variant's estimates of it (``sources`` rows only)."""

    mixture: torch.Tensor  # (C, T)
    references: torch.Tensor  # (len(sources), C, T)
    estimates: dict[str, torch.Tensor]  # {variant: (len(sources), C, T)}
    sample_rate: int
    title: str


def variant_song(number: str, sources: Sequence[str] = SOURCES, root: str | os.PathLike | None = None) -> VariantSong:
    """Chapter ``number``'s held-out excerpt with each variant's estimates, for players and listening tests.

    The estimates are those ``make checkpoints`` recorded from the sweep's seed-0 runs
    (``chapter-<NN>-variants``); the mixture and references are the chapter's held-out song,
    rendered again (the synthetic band is a function of its seed). ``sources`` picks the rows.
    """
    unknown = [name for name in sources if name not in SOURCES]
    if unknown or not sources:
        raise ValueError(f"sources must be some of {', '.join(SOURCES)}, got {list(sources)!r}.")
    rows = [SOURCES.index(name) for name in sources]
    estimates, entry = variant_excerpts(number, root)
    module = chapter(number)
    mixture, stems = test_songs(module.SETTINGS[entry.get("scale", "cpu")], module.RATE)[entry["song"]]
    length = next(iter(estimates.values())).shape[-1]
    title = f"Chapter {number}: every variant (seed {entry['seed']} of the recorded sweep) on held-out song {entry['song']}"
    return VariantSong(mixture[..., :length], stems[rows, ..., :length], {v: x[rows] for v, x in estimates.items()},
                       module.RATE, title)


def compare_variants(number: str, sources: Sequence[str] = SOURCES, max_seconds: float | None = None,
                     spectrograms: bool = False, root: str | os.PathLike | None = None) -> StemPlayer:
    """A player with one column per variant of chapter ``number``'s experiment (:func:`variant_song`).

    Spectrograms are off by default: a comparison has many clips and a notebook must stay under 1 MiB.
    """
    song = variant_song(number, sources, root)
    return StemPlayer(song.mixture, song.references, song.estimates, sample_rate=song.sample_rate, names=list(sources),
                      title=song.title, max_seconds=max_seconds, spectrograms=spectrograms)


def variant_grid(number: str, sources: Sequence[str] = SOURCES, max_seconds: float | None = None,
                 root: str | os.PathLike | None = None) -> Compare:
    """:func:`variant_song` as a :class:`~metalearn_sep.listen.Compare` grid: a cell per variant and source,
    a residual row, the best cell per row marked.

    The mixture row plays the whole mix, so its residual row compares what each variant left out
    of *all four* stems even when ``sources`` picks fewer rows.
    """
    song = variant_song(number, SOURCES, root)
    return Compare(song.mixture, song.references, song.estimates, sample_rate=song.sample_rate, title=song.title,
                   max_seconds=max_seconds, rows=sources)
