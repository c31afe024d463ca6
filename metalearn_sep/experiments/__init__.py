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
budget), ``prepare() -> data`` (what every variant shares: rendered crops, test songs,
spectrogram statistics; seed-independent) and ``run(variant, seed, data) ->``
:class:`RunResult`. Some modules add ``reference_rows(data)``: seed-independent rows
(oracles) printed under the table.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .. import SOURCES
from ..metrics import framewise_sdr
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


@torch.no_grad()
def held_out_sdr(model: nn.Module, test: Dataset, objective: SeparationObjective, sample_rate: int) -> dict[str, float]:
    """SDR per target source on ``test`` (songs ``(C, T)`` with stems ``(4, C, T)``), as SiSEC aggregates it.

    Each song is estimated by ``objective.estimate`` and scored by
    :func:`~metalearn_sep.metrics.framewise_sdr` in 1 s frames.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    songs = []
    for index in range(len(test)):
        mixture, stems = test[index]
        estimates = objective.estimate(model, mixture[None].to(device))[0].float().cpu()  # (targets, C, T)
        songs.append(framewise_sdr(estimates, stems[objective.targets], sample_rate))
    model.train(was_training)
    return dict(zip((SOURCES[t] for t in objective.targets), sisec_aggregate(songs).tolist()))


def score(model: nn.Module, test: Dataset, objective: SeparationObjective, sample_rate: int) -> tuple[dict[str, float], dict[str, float]]:
    """``(SI-SDR improvement, SDR)`` per target source of ``model`` on ``test`` (no mean added)."""
    gains = evaluate(model, test, objective)
    gains.pop("mean")
    return gains, held_out_sdr(model, test, objective, sample_rate)
