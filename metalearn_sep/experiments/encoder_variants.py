"""Chapter 02's experiment: which encoder/decoder pair separates best, and is it only its size?

:class:`~metalearn_sep.models.encoder_ablation.EncoderSeparator` with the chapter's cpu widths
(N 128, B 64, H 128, X 6, R 2; sigmoid masks; L = stride = 20 at 8 kHz) and four
encoder/decoder pairs: ``plain`` (Conv-TasNet's), ``multi`` (three kernel lengths), ``multi+spec``
(plus the spectrogram branch: Meta-TasNet's) and the ``capacity control``, a plain pair
widened to multi+spec's parameter count. Every variant starts from the same masking network
(``torch.manual_seed(seed)`` right before it is built) and trains on the same pre-rendered
2 s crops with Adam (constant rate).
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.band import BandDataset
from ..models.encoder_ablation import EncoderSeparator
from ..train import SeparationObjective, Trainer, TrainerConfig
from . import RunResult, rendered_pool, score, test_songs

CHAPTER = "02"
QUESTION = "Does Meta-TasNet's enhanced encoder (three kernel lengths + a spectrogram branch) help, beyond its extra parameters?"
VARIANTS = ("plain", "multi", "multi+spec", "capacity control")
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu": {"sizes": {"N": 128, "B": 64, "H": 128, "Sc": 64, "X": 6, "R": 2, "spec_channels": 128},
            "steps": 500, "lr": 2e-3, "batch": 8, "crops": 1024, "test_songs": 8, "test_seconds": 8.0},
    "ci": {"sizes": {"N": 32, "B": 16, "H": 32, "Sc": 16, "X": 2, "R": 1, "spec_channels": 32},
           "steps": 4, "lr": 3e-3, "batch": 4, "crops": 16, "test_songs": 2, "test_seconds": 2.0},
}
"""Per scale: the separator's widths, the steps, Adam's rate, the batch, the pre-rendered crops and the test songs."""
RATE = 8000
SEGMENT, SONG = 2.0, 8.0  # seconds per crop, per song the crops come from


def prepare(scale: str = "cpu") -> dict[str, Any]:
    """The pre-rendered training crops (the same for every variant and seed) and the test songs."""
    settings = SETTINGS[scale]
    crops = BandDataset("train", RATE, segment=SEGMENT, song_duration=SONG, size=settings["crops"])
    pool = rendered_pool(crops)
    test = test_songs(settings, RATE)
    return {"settings": settings, "train": pool, "mixtures": pool.tensors[0], "test": test}


def objective(variant: str) -> SeparationObjective:
    """Every variant's objective: negative SI-SNR over the four sources."""
    return SeparationObjective()


def build(variant: str, seed: int, settings: dict[str, Any]) -> EncoderSeparator:
    """``variant``'s separator; after ``torch.manual_seed(seed)`` so that every variant's masking network starts alike."""
    common = dict(L=20, stride=20, sample_rate=RATE, mask="sigmoid", **settings["sizes"])
    reference = EncoderSeparator("multi+spec", **common) if variant == "capacity control" else None
    torch.manual_seed(seed)
    return EncoderSeparator.capacity_control(reference) if reference is not None else EncoderSeparator(variant, **common)


def run(variant: str, seed: int, data: dict[str, Any]) -> RunResult:
    """Train ``variant`` with ``seed`` and score it on the test songs."""
    if variant not in VARIANTS:
        raise ValueError(f"Chapter 02 has no variant {variant!r}: expected one of {', '.join(VARIANTS)}.")
    settings = data["settings"]
    model = build(variant, seed, settings)
    if variant == "multi+spec":
        model.set_spectrogram_statistics(data["mixtures"].split(256))
    training = TrainerConfig(batch_size=settings["batch"], lr=settings["lr"], seed=seed)
    history = Trainer(model, data["train"], config=training, device="cpu", progress=False).fit(settings["steps"])
    gains, sdr = score([(model, objective(variant))], data["test"], RATE)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunResult(gains, sdr, settings["steps"], history[-1]["seconds"], {"all": model},
                     {"parameters": parameters})
