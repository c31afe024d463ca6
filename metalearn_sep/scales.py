"""What chapters 01-05 train in the ``gpu`` and ``paper`` profiles, and the training runs that makes.

The ``ci`` and ``cpu`` sizes live in the notebooks and in :mod:`metalearn_sep.experiments`
(they were tuned by measuring on 2 CPU cores). The two GPU profiles are sized here, in one
place that the notebooks read and ``benchmarks/plan_gpu.py`` costs:

* ``gpu``: one 16 GB GPU, at most 20 minutes per chapter on a T4 (fp32, no bf16), the GPU
  most students get (Colab). Every chapter's whole set of runs was sized from its measured
  FLOPs, kernel count and activation bytes per step (:mod:`metalearn_sep.cost`) so that the
  plan's T4 estimate stays under about 15 minutes, leaving a margin for the estimate's error.
  Models are mid-sized (a few million parameters, between the cpu profile's and the paper's),
  crops 4 s, batch 8; steps are what the budget then allows.
* ``paper``: the paper's sizes (Meta-TasNet's N = 440, B = H = 160, X = 6, R = 3, 256 spectrogram
  channels; Conv-TasNet's best configuration), batch 12 x 8 s, tens of thousands of steps: hours
  to days on one GPU, and the paper model needs more than a 16 GB GPU holds (see the plan). It is
  never chosen by default: ``METALEARN_SEP_PROFILE=paper`` asks for it.

:func:`large` gives a notebook both values of one setting for :meth:`CourseConfig.pick
<metalearn_sep.config.CourseConfig.pick>`; :func:`runs` lists a chapter's training runs for
the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from . import SOURCES
from .config import CONV_TASNET_SIZES, CONV_TASNET_STEPS, CONV_TASNET_TRAINING, PROFILES
from .cost import GPU, StepCost, estimate, measure_step
from .experiments import encoder_variants, objective_terms
from .experiments.conv_tasnet_outputs import build as conv_tasnet
from .experiments.masking_variants import StageObjective
from .losses import MetaTasNetObjective
from .models import ConvTasNet, MetaTasNet
from .train import SeparationObjective

GPU_PROFILES = ("gpu", "paper")
"""The profiles sized here."""

CHAPTER_06_MINUTES = 15.0
"""Chapter 06's ``gpu`` run: the one-GPU recipe for as many steps as the plan puts at this many minutes on the GPU found."""

_STAGE_PAPER = {"N": 440, "B": 160, "H": 160, "X": 6, "R": 3}
_STAGE_GPU = {"N": 256, "B": 128, "H": 128, "X": 6, "R": 2}

SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "02": {
        "gpu": {"settings": {"sizes": dict(N=256, B=128, H=128, Sc=128, X=6, R=2, spec_channels=128),
                             "steps": 2500, "lr": 2e-3, "batch": 8},
                "seeds": [0], "crops": 3000, "workers": 2},
        "paper": {"settings": {"sizes": dict(_STAGE_PAPER, Sc=160, spec_channels=256),  # Meta-TasNet's stage 0, Conv-TasNet's TCN
                               "steps": 10_000, "lr": 1e-3, "batch": 12},
                  "seeds": [0, 1, 2], "crops": 3000, "workers": 8},
    },
    "03": {
        "gpu": {"widths": _STAGE_GPU, "spec_channels": 128, "steps": 1400, "lr": 2e-3, "statistics_examples": 2000},
        "paper": {"widths": _STAGE_PAPER, "spec_channels": 256, "steps": 20_000, "lr": 1e-3, "statistics_examples": 5000},
    },
    "04": {
        "gpu": {"size": dict(_STAGE_GPU, spec_channels=128), "steps": 750, "lr": 2e-3, "pool": 4096},
        "paper": {"size": dict(_STAGE_PAPER, spec_channels=256), "steps": 20_000, "lr": 1e-3, "pool": 4096},
    },
    "05": {
        "gpu": {"size": dict(_STAGE_GPU, spec_channels=128), "steps": 550, "lr": 2e-3, "seeds": [0, 1], "pool": 2048},
        "paper": {"size": dict(_STAGE_PAPER, spec_channels=256), "steps": 4000, "lr": 2e-3, "seeds": [0, 1, 2], "pool": 2048},
    },
}
"""Chapters 02-05: per profile, the settings the notebook reads (names as in the notebook). Chapter 01's
sizes, steps and recipe are in :mod:`metalearn_sep.config` (``CONV_TASNET_SIZES`` and its neighbours)."""


def large(chapter: str, key: str) -> dict[str, Any]:
    """``{"gpu": ..., "paper": ...}``: setting ``key`` of ``chapter`` in both GPU profiles, for ``cfg.pick(ci=..., cpu=..., **large(...))``."""
    if chapter not in SETTINGS:
        raise ValueError(f"Chapter {chapter!r} has no GPU settings here: expected one of {', '.join(SETTINGS)}.")
    return {profile: SETTINGS[chapter][profile][key] for profile in GPU_PROFILES}


@dataclass(frozen=True)
class Run:
    """One kind of training run of a chapter, repeated ``count`` times (variants x seeds).

    Attributes:
        label: what the chapter calls it.
        build: makes the model (the plan calls it on the meta device).
        objective: makes the objective the Trainer calls.
        rate, seconds, batch: the crops (mono, ``rate`` Hz, ``seconds`` long, ``batch`` per step).
        steps: optimisation steps of one run.
        optimizer: the optimiser (it sets the memory of its states).
    """

    label: str
    count: int
    build: Callable[[], nn.Module]
    objective: Callable[[], Any]
    rate: int
    seconds: float
    batch: int
    steps: int
    optimizer: str = "adam"


def runs(chapter: str, profile: str) -> list[Run]:
    """The training runs chapter ``chapter`` makes in ``profile`` (``"gpu"`` or ``"paper"``), as its notebook makes them."""
    if profile not in GPU_PROFILES:
        raise ValueError(f"profile must be one of {', '.join(GPU_PROFILES)}, got {profile!r}.")
    shape = PROFILES[profile]
    crop = dict(rate=shape.sample_rate, seconds=shape.segment_seconds, batch=shape.batch_size)
    if chapter == "01":
        sizes, steps = CONV_TASNET_SIZES[profile], CONV_TASNET_STEPS[profile]
        crop["batch"] = CONV_TASNET_TRAINING[profile]["batch_size"]
        return [Run("4-output Conv-TasNet", 1, lambda: conv_tasnet(sizes), SeparationObjective, steps=steps, **crop),
                Run("dedicated Conv-TasNet", len(SOURCES), lambda: conv_tasnet(sizes, [0]),
                    lambda: SeparationObjective(targets=[0]), steps=steps, **crop)]
    chosen = SETTINGS[chapter][profile]
    if chapter == "02":
        settings = chosen["settings"]
        crop["batch"] = settings["batch"]
        return [Run(variant, len(chosen["seeds"]), lambda v=variant: encoder_variants.build(v, 0, settings),
                    SeparationObjective, steps=settings["steps"], **crop) for variant in encoder_variants.VARIANTS]
    if chapter == "03":
        widths, spec, steps = chosen["widths"], chosen["spec_channels"], chosen["steps"]
        stage = {"generated": {}, "independent": {"generated": False}, "FiLM": {"film": True}}
        return [Run("dedicated Conv-TasNet", len(SOURCES), lambda: ConvTasNet(num_sources=1, L=40, Sc=widths["B"], **widths),
                    lambda: SeparationObjective(targets=[0]), steps=steps, **crop),
                Run("4-output Conv-TasNet", 1, lambda: ConvTasNet(num_sources=4, L=40, Sc=widths["B"], **widths),
                    SeparationObjective, steps=steps, **crop),
                *(Run(f"Meta-TasNet stage, {name}", 1, lambda o=options: MetaTasNet(stages=1, spec_channels=spec, **widths, **o),
                      StageObjective, steps=steps, **crop) for name, options in stage.items())]
    if chapter == "04":
        rate = 32_000
        return [Run(f"{stages} stage(s)", 1, lambda s=stages: MetaTasNet(stages=s, **chosen["size"]),
                    lambda: MetaTasNetObjective(rate, lambda_rec=0.0, lambda_dis=0.0, lambda_sim=0.0),
                    rate=rate, seconds=shape.segment_seconds, batch=shape.batch_size, steps=chosen["steps"])
                for stages in (1, 2, 3)]
    if chapter == "05":
        return [Run(variant, len(chosen["seeds"]), lambda: MetaTasNet(stages=1, **chosen["size"]),
                    lambda v=variant: MetaTasNetObjective(shape.sample_rate, **objective_terms.TERMS[v]),
                    steps=chosen["steps"], optimizer="ranger", **crop) for variant in objective_terms.VARIANTS]
    raise ValueError(f"Chapter {chapter!r} trains nothing on a GPU here: expected 01-05.")


@dataclass(frozen=True)
class PlannedRun:
    """A :class:`Run` with its measured :class:`~metalearn_sep.cost.StepCost`."""

    run: Run
    cost: StepCost

    def minutes(self, gpu: GPU) -> float:
        """All ``count`` runs of this kind on ``gpu``, in minutes (training steps only)."""
        return self.run.count * self.run.steps * estimate(self.cost, gpu, self.run.optimizer).seconds / 60

    def peak_gib(self, gpu: GPU) -> float:
        return estimate(self.cost, gpu, self.run.optimizer).peak_gib


def plan(chapter: str, profile: str) -> list[PlannedRun]:
    """Every run of ``chapter`` in ``profile`` with the cost of one of its steps (a few seconds on a CPU)."""
    return [PlannedRun(r, measure_step(r.build, r.objective(), r.batch, 1, round(r.rate * r.seconds)))
            for r in runs(chapter, profile)]
