"""Each chapter's experiment as a function of (variant, seed): what ``make results`` records.

Chapters 01-05 each ask one question and answer it by training a few variants of a model
on the synthetic band with the same budget. The notebooks train them in their own cells
(the exercise); the modules here train the same variants at a fixed size so that
``benchmarks/results.py`` can run every variant with several seeds and record the answer:

============  ======================================  =========================================
chapter       module                                  variants
============  ======================================  =========================================
01            :mod:`.conv_tasnet_outputs`             4-output, 4 dedicated
02            :mod:`.encoder_variants`                plain, multi, multi+spec, capacity control
03            :mod:`.masking_variants`                4 dedicated, 4-output, generated, independent, FiLM
04            :mod:`.stage_count`                     1, 2, 3 stages (+ band-limited oracle rows)
05            :mod:`.objective_terms`                 none, rec only, dis only, sim only, all three
============  ======================================  =========================================

The ``cpu`` scale uses each notebook's cpu-profile sizes, with fewer steps where the whole
sweep (3 seeds of every variant) would not fit in 3 hours on 2 CPU cores: chapter 02 trains 500
steps (its notebook 600), chapter 03 300 (600) and chapter 04 600 (1000); chapters 01 (760) and
05 (500) keep theirs. ``python benchmarks/results.py --estimate`` gives 174 min from the step
times measured with ``--time-steps 10``. The ``ci`` scale is for the tests only.

Every module exposes ``CHAPTER``, ``QUESTION``, ``VARIANTS``, ``SETTINGS`` (the sizes and
budget), ``objective(variant)`` (how the variant's model estimates: what it is scored with),
``prepare() -> data`` (what every variant shares: rendered crops, test songs,
spectrogram statistics; seed-independent) and ``run(variant, seed, data) ->``
:class:`RunResult`. Some modules add ``reference_rows(data)``: seed-independent rows
(oracles) printed under the table.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from .. import SOURCES
from ..data.band import BandDataset
from ..metrics import framewise_sdr
from ..rescale import least_squares_gains
from ..sisec import sisec_aggregate
from ..train import SeparationObjective, evaluate

MODULES = {
    "01": "conv_tasnet_outputs",
    "02": "encoder_variants",
    "03": "masking_variants",
    "04": "stage_count",
    "05": "objective_terms",
}
"""Chapter number -> module name in this package."""


def chapter(number: str) -> ModuleType:
    """The experiment module of chapter ``number`` ("01" ... "05")."""
    if number not in MODULES:
        raise ValueError(f"No recorded experiment for chapter {number!r}: expected one of {', '.join(MODULES)}.")
    return importlib.import_module(f"{__name__}.{MODULES[number]}")


@dataclass
class RunResult:
    """One trained variant, scored on the chapter's held-out songs.

    Attributes:
        scores: SI-SDR improvement (dB) per source and ``"mean"`` (:func:`~metalearn_sep.train.evaluate`).
        sdr: BSS Eval v4 SDR (dB) per source and ``"mean"``: median over 1 s frames per song,
            then median over songs (:func:`~metalearn_sep.sisec.sisec_aggregate`).
        steps: training steps (per model, for variants made of several models).
        seconds: training time, summed over the variant's models.
        models: the trained model(s), keyed by what each separates (``"all"`` or a source).
        extra: chapter-specific figures (e.g. per-stage scores), JSON-serialisable.
    """

    scores: dict[str, float]
    sdr: dict[str, float]
    steps: int
    seconds: float
    models: dict[str, nn.Module]
    extra: dict[str, Any] = field(default_factory=dict)


def with_mean(per_source: dict[str, float]) -> dict[str, float]:
    """``per_source`` in :data:`SOURCES` order plus its ``"mean"`` (NaN sources skipped)."""
    ordered = {name: float(per_source[name]) for name in SOURCES if name in per_source}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {**ordered, "mean": float(np.nanmean(list(ordered.values())))}


Part = tuple[nn.Module, SeparationObjective]
"""A trained model and the objective that says how it estimates and which sources (its ``targets``)."""


@torch.no_grad()
def held_out_sdr(parts: Sequence[Part], test: Dataset, sample_rate: int) -> dict[str, float]:
    """SDR per source on ``test`` (songs ``(C, T)`` with stems ``(4, C, T)``), as SiSEC aggregates it.

    For each song, every part's estimates (``objective.estimate``) are stacked in its targets'
    order; when they cover all four sources they are rescaled by least squares against the
    mixture, as :func:`~metalearn_sep.separate.separate` does (the SI-SNR loss leaves each
    estimate's scale free, and SDR is not scale-invariant). Then
    :func:`~metalearn_sep.metrics.framewise_sdr` in 1 s frames and the SiSEC median of medians.
    """
    targets = [t for _, objective in parts for t in objective.targets]
    states = [model.training for model, _ in parts]
    songs = []
    for model, _ in parts:
        model.eval()
    for index in range(len(test)):
        mixture, stems = test[index]
        songs.append(framewise_sdr(estimate_song(parts, mixture), stems[targets], sample_rate))
    for (model, _), training in zip(parts, states):
        model.train(training)
    return dict(zip((SOURCES[t] for t in targets), sisec_aggregate(songs).tolist()))


@torch.no_grad()
def estimate_song(parts: Sequence[Part], mixture: torch.Tensor) -> torch.Tensor:
    """The estimates ``(targets, C, T)`` of the models in ``parts`` (in eval mode) for one song ``(C, T)``.

    Stacked in the parts' targets' order; when they cover all four sources they are rescaled by
    least squares against the mixture (the level that best explains it; the SI-SNR loss leaves
    each estimate's scale free).
    """
    targets = [t for _, objective in parts for t in objective.targets]
    estimates = torch.cat([objective.estimate(model, mixture[None].to(next(model.parameters()).device))[0].float().cpu()
                           for model, objective in parts])
    if sorted(targets) == list(range(len(SOURCES))):
        estimates = estimates * least_squares_gains(estimates, mixture.float())[..., None].float()
    return estimates


def rendered_pool(crops: Dataset) -> TensorDataset:
    """``crops`` rendered once into tensors: mixtures ``(n, C, T)`` and stems ``(n, 4, C, T)``.

    Every variant and seed of a chapter then trains on the same examples, so a difference between
    variants is not a difference between draws of the synthetic band.
    """
    examples = [crops[i] for i in range(len(crops))]
    return TensorDataset(torch.stack([m for m, _ in examples]), torch.stack([s for _, s in examples]))


def test_songs(settings: dict[str, Any], sample_rate: int) -> BandDataset:
    """The held-out songs of a chapter's ``settings`` (``test_songs`` mono songs of ``test_seconds`` at ``sample_rate``)."""
    return BandDataset("test", sample_rate, segment=None, song_duration=settings["test_seconds"], size=settings["test_songs"])


def rescore(number: str, variant: str, model: nn.Module, scale: str = "cpu") -> tuple[dict[str, float], dict[str, float]]:
    """``(SI-SDR improvement, SDR)`` per source and mean of a trained single-model ``variant`` of chapter ``number``.

    The same songs and estimate as the run that trained it: how a shipped model is checked.
    """
    module = chapter(number)
    return score([(model, module.objective(variant))], test_songs(module.SETTINGS[scale], module.RATE), module.RATE)


def score(parts: Sequence[Part], test: Dataset, sample_rate: int) -> tuple[dict[str, float], dict[str, float]]:
    """``(SI-SDR improvement, SDR)`` per source, with their means, of the models in ``parts`` together on ``test``."""
    gains = {}
    for model, objective in parts:
        scores = evaluate(model, test, objective)
        scores.pop("mean")
        gains.update(scores)
    return with_mean(gains), with_mean(held_out_sdr(parts, test, sample_rate))
