"""Chapter 01's experiment: one Conv-TasNet with 4 outputs against 4 dedicated ones, same budget.

The chapter's cpu models (:data:`~metalearn_sep.config.CONV_TASNET_SIZES`, Fourier start,
softmax mask for 4 outputs) trained with :data:`~metalearn_sep.config.CONV_TASNET_TRAINING`
(Adam 3e-3, warm-stable-decay schedule) on fresh 2 s crops at 8 kHz, scored on the 8 held-out
songs of 8 s. A dedicated model (``num_sources=1``, sigmoid mask: :data:`DEDICATED`) is trained on
its own stem with the same number of steps, so "4 dedicated" costs four trainings.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import SOURCES, config
from ..data.band import BandDataset
from ..models import ConvTasNet
from ..train import SeparationObjective, Trainer, TrainerConfig
from . import RunResult, score, test_songs

CHAPTER = "01"
QUESTION = "Does one Conv-TasNet with four outputs separate as well as four dedicated ones?"
VARIANTS = ("4-output", "4 dedicated")
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu": {"profile": "cpu", "steps": 760, "test_songs": 8, "test_seconds": 8.0},
    "ci": {"profile": "ci", "steps": 4, "test_songs": 2, "test_seconds": 2.0},
}
"""Per scale: the chapter's model sizes and recipe of that course profile, with the steps of each training."""
RATE = 8000
DEDICATED = {"mask": "sigmoid"}
"""What a dedicated model changes in the chapter's sizes: a softmax across its one source would be 1 everywhere."""


def prepare(scale: str = "cpu") -> dict[str, Any]:
    """The training crops (drawn afresh by the Trainer), the test songs and the settings."""
    settings = SETTINGS[scale]
    profile = config.PROFILES[settings["profile"]]
    return {
        "settings": settings,
        "sizes": config.CONV_TASNET_SIZES[settings["profile"]],
        "recipe": config.CONV_TASNET_TRAINING[settings["profile"]],
        "train": BandDataset("train", RATE, segment=profile.segment_seconds, song_duration=profile.song_seconds),
        "test": test_songs(settings, RATE),
    }


def objective(variant: str) -> SeparationObjective:
    """The 4-output model's objective (negative SI-SNR over the four sources); dedicated models have one target each."""
    return SeparationObjective()


def build(sizes: dict[str, Any], target: list[int] | None = None) -> ConvTasNet:
    """The 4-output model (``target=None``) or the dedicated model of source ``target[0]``, at ``sizes``."""
    if target is None:
        return ConvTasNet(num_sources=len(SOURCES), **sizes)
    return ConvTasNet(num_sources=1, **{**sizes, **DEDICATED})


def _train(model: ConvTasNet, objective: SeparationObjective, seed: int, data: dict[str, Any]) -> float:
    steps = data["settings"]["steps"]
    training = TrainerConfig(**data["recipe"], schedule_period=steps, clip_grad=5.0, seed=seed)
    return Trainer(model, data["train"], config=training, objective=objective, device="cpu", progress=False).fit(steps)[-1]["seconds"]


def run(variant: str, seed: int, data: dict[str, Any]) -> RunResult:
    """Train ``variant`` from ``torch.manual_seed(seed)`` and score it on the test songs."""
    if variant not in VARIANTS:
        raise ValueError(f"Chapter 01 has no variant {variant!r}: expected one of {', '.join(VARIANTS)}.")
    parts, models, seconds = [], {}, 0.0
    targets = [None] if variant == "4-output" else [[i] for i in range(len(SOURCES))]
    for target in targets:
        torch.manual_seed(seed)
        model = build(data["sizes"], target)
        loss = SeparationObjective(targets=target)
        seconds += _train(model, loss, seed, data)
        parts.append((model, loss))
        models["all" if target is None else SOURCES[target[0]]] = model
    gains, sdr = score(parts, data["test"], RATE)
    return RunResult(gains, sdr, data["settings"]["steps"], seconds, models)
