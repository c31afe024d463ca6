"""Chapter 03's experiment: dedicated, shared, generated, independent or FiLM-modulated masking networks.

Five ways to give each instrument its extractor, at the chapter's cpu widths (N 64, B 64,
H 128, X 6, R 2; 8 kHz, hop 20): four dedicated Conv-TasNets (one per stem), one
Conv-TasNet with four outputs, and one Meta-TasNet stage whose masking network is
generated from instrument embeddings (the paper's), stored as four independent copies, or
shared and modulated per instrument (FiLM). All train with Adam (constant rate) on the same
pre-rendered 2 s crops and the SI-SNR loss; the Meta-TasNet stages see their input divided
by its standard deviation, as in the original code (:class:`StageObjective`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import SOURCES
from ..audio import unit_level
from ..data.band import BandDataset
from ..losses import MetaTasNetObjective
from ..models import ConvTasNet, MetaTasNet
from ..models.enhanced import spectrogram_statistics
from ..models.generator import to_independent
from ..train import SeparationObjective, Trainer, TrainerConfig
from . import RunResult, rendered_pool, score, test_songs

CHAPTER = "03"
QUESTION = "Is a generated masking network better than dedicated models, a shared one, four independent ones or FiLM?"
VARIANTS = ("4 dedicated", "4-output", "generated", "independent", "FiLM")
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu": {"widths": {"N": 64, "B": 64, "H": 128, "X": 6, "R": 2}, "spec_channels": 64, "steps": 300, "lr": 2e-3,
            "batch": 8, "crops": 1024, "statistics_examples": 500, "test_songs": 8, "test_seconds": 8.0},
    "ci": {"widths": {"N": 16, "B": 16, "H": 16, "X": 2, "R": 1}, "spec_channels": 16, "steps": 4, "lr": 5e-3,
           "batch": 4, "crops": 16, "statistics_examples": 8, "test_songs": 2, "test_seconds": 2.0},
}
"""Per scale: widths, spectrogram channels, steps, Adam's rate, batch, pre-rendered crops, statistics examples, test songs."""
RATE = 8000
SEGMENT, SONG = 2.0, 8.0


class StageObjective(SeparationObjective):
    """Chapter 01's loss (negative SI-SNR) for a one-stage MetaTasNet fed as the original code feeds it.

    :meth:`MetaTasNetObjective.estimate <metalearn_sep.losses.MetaTasNetObjective.estimate>`
    divides the stage's input by its standard deviation and scales the estimates back.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stages = MetaTasNetObjective(RATE, lambda_rec=0, lambda_dis=0, lambda_sim=0)

    def estimate(self, model: nn.Module, mixture: torch.Tensor) -> torch.Tensor:
        return self.stages.estimate(model, mixture)


def extractor_parameters(model: nn.Module) -> int:
    """Parameters needed to run the extractor of ONE source once training is over.

    A Conv-TasNet: all of it. A one-stage MetaTasNet: its encoder and decoder plus one masking
    network: with an embedding (generated, FiLM), the layers as used for one instrument, written
    out as ordinary layers (:func:`~metalearn_sep.models.generator.to_independent`); with four
    stored copies, one copy (a quarter of the per-instrument parameters) and the shared PReLU slopes.
    """
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    if isinstance(model, ConvTasNet):
        return count(model)
    stage = model.stages[0]
    prelus = sum(p.numel() for n, p in stage.masker.named_parameters() if "prelu" in n)
    if stage.embedding is not None:
        masker = count(to_independent(stage.masker, stage.embedding([SOURCES.index("bass")])))
    else:
        masker = (count(stage.masker) - prelus) // len(SOURCES) + prelus
    return count(stage.encoder) + count(stage.decoder) + masker


def objective(variant: str) -> SeparationObjective:
    """The Meta-TasNet stages' :class:`StageObjective`, the Conv-TasNets' SI-SNR (4 outputs; dedicated: one target each)."""
    return SeparationObjective() if variant in ("4 dedicated", "4-output") else StageObjective()


def prepare(scale: str = "cpu") -> dict[str, Any]:
    """The pre-rendered crops, the test songs and the spectrogram statistics every Meta-TasNet stage starts from."""
    settings = SETTINGS[scale]
    crops = BandDataset("train", RATE, segment=SEGMENT, song_duration=SONG, size=settings["crops"])
    pool = rendered_pool(crops)
    encoder = MetaTasNet(stages=1, spec_channels=settings["spec_channels"], **settings["widths"]).stages[0].encoder
    statistics = spectrogram_statistics(encoder, (unit_level(m) for m in pool.tensors[0][: settings["statistics_examples"]]))
    test = test_songs(settings, RATE)
    return {"settings": settings, "train": pool, "statistics": statistics, "test": test}


def _fit(model: nn.Module, loss: SeparationObjective, seed: int, data: dict[str, Any]) -> float:
    """Train ``model`` on the shared crops; returns the training seconds."""
    settings = data["settings"]
    training = TrainerConfig(batch_size=settings["batch"], lr=settings["lr"], seed=seed)
    return Trainer(model, data["train"], config=training, objective=loss, device="cpu", progress=False).fit(settings["steps"])[-1]["seconds"]


def run(variant: str, seed: int, data: dict[str, Any]) -> RunResult:
    """Train ``variant`` from ``torch.manual_seed(seed)`` and score it on the test songs."""
    if variant not in VARIANTS:
        raise ValueError(f"Chapter 03 has no variant {variant!r}: expected one of {', '.join(VARIANTS)}.")
    settings, widths = data["settings"], data["settings"]["widths"]
    parts, models, seconds = [], {}, 0.0
    if variant in ("4 dedicated", "4-output"):
        for target in ([[i] for i in range(len(SOURCES))] if variant == "4 dedicated" else [None]):
            torch.manual_seed(seed)
            model = ConvTasNet(num_sources=1 if target else 4, L=40, Sc=widths["B"], **widths)
            loss = SeparationObjective(targets=target)
            seconds += _fit(model, loss, seed, data)
            parts.append((model, loss))
            models[SOURCES[target[0]] if target else "all"] = model
    else:
        torch.manual_seed(seed)
        options = {"generated": False} if variant == "independent" else {"film": True} if variant == "FiLM" else {}
        model = MetaTasNet(stages=1, spec_channels=settings["spec_channels"], **widths, **options)
        model.stages[0].encoder.spectrogram.set_statistics(*data["statistics"])
        seconds = _fit(model, objective(variant), seed, data)
        parts.append((model, objective(variant)))
        models["all"] = model
    gains, sdr = score(parts, data["test"], RATE)
    parameters = sum(p.numel() for m in models.values() for p in m.parameters() if p.requires_grad)
    return RunResult(gains, sdr, settings["steps"], seconds, models, {"parameters": parameters})
