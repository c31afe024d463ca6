"""Chapter 05's experiment: do the auxiliary losses (reconstruction, dissimilarity, similarity) help?

One Meta-TasNet stage at 8 kHz (N 64, B 64, H 64, X 4, R 2, 32 spectrogram channels) trained
with the paper's recipe (Ranger, weight decay 5e-4, SGDR with one warm restart halfway,
clipping at 5, augmented stereo crops of 0.5 s) and the objective's auxiliary terms switched
on one at a time: λ_rec = 0.05, λ_dis = 3, λ_sim = 2 as in the paper, or 0.
"""

from __future__ import annotations

from typing import Any

import torch

from ..audio import unit_level
from ..data.augment import AugmentedDataset
from ..data.band import BandDataset
from ..losses import MetaTasNetObjective
from ..models import MetaTasNet
from ..models.enhanced import spectrogram_statistics
from ..train import Trainer, TrainerConfig
from . import RunResult, rendered_pool, score, test_songs

CHAPTER = "05"
QUESTION = "Do the auxiliary losses (reconstruction, dissimilarity, similarity) improve separation?"
TERMS = {
    "none": {"lambda_rec": 0.0, "lambda_dis": 0.0, "lambda_sim": 0.0},
    "rec only": {"lambda_rec": 0.05, "lambda_dis": 0.0, "lambda_sim": 0.0},
    "dis only": {"lambda_rec": 0.0, "lambda_dis": 3.0, "lambda_sim": 0.0},
    "sim only": {"lambda_rec": 0.0, "lambda_dis": 0.0, "lambda_sim": 2.0},
    "all three": {"lambda_rec": 0.05, "lambda_dis": 3.0, "lambda_sim": 2.0},
}
"""Each variant's weights λ of the auxiliary terms (the paper's values, or 0)."""
VARIANTS = tuple(TERMS)
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu": {"size": {"N": 64, "B": 64, "H": 64, "X": 4, "R": 2, "spec_channels": 32}, "segment": 0.5, "steps": 500,
            "lr": 2e-2, "batch": 8, "crops": 1024, "statistics_examples": 64, "test_songs": 8, "test_seconds": 8.0},
    "ci": {"size": {"N": 16, "B": 16, "H": 16, "X": 2, "R": 1, "spec_channels": 16}, "segment": 0.5, "steps": 4,
           "lr": 2e-2, "batch": 2, "crops": 8, "statistics_examples": 4, "test_songs": 2, "test_seconds": 1.0},
}
"""Per scale: widths, crop length, steps (SGDR period: half of them), Ranger's rate, batch, crops, statistics examples, test songs."""
RATE = 8000
SONG = 8.0


def objective(variant: str) -> MetaTasNetObjective:
    """The variant's objective: the stage's SI-SNR loss plus the auxiliary terms weighted by :data:`TERMS`."""
    return MetaTasNetObjective(data_rate=RATE, **TERMS[variant])


def prepare(scale: str = "cpu") -> dict[str, Any]:
    """The pre-rendered stereo crops, the spectrogram statistics (of augmented crops) and the test songs."""
    settings = SETTINGS[scale]
    songs = BandDataset("train", RATE, segment=settings["segment"], song_duration=SONG, stereo=True, size=settings["crops"])
    pool = rendered_pool(songs)
    encoder = MetaTasNet(stages=1, **settings["size"]).stages[0].encoder
    augmented = AugmentedDataset(pool)
    statistics = spectrogram_statistics(encoder, (unit_level(augmented[i][0]) for i in range(settings["statistics_examples"])))
    test = test_songs(settings, RATE)
    return {"settings": settings, "train": pool, "statistics": statistics, "test": test}


def run(variant: str, seed: int, data: dict[str, Any]) -> RunResult:
    """Train ``variant`` from ``torch.manual_seed(seed)`` and score it on the test songs."""
    if variant not in VARIANTS:
        raise ValueError(f"Chapter 05 has no variant {variant!r}: expected one of {', '.join(VARIANTS)}.")
    settings = data["settings"]
    torch.manual_seed(seed)
    model = MetaTasNet(stages=1, **settings["size"])
    model.stages[0].encoder.spectrogram.set_statistics(*data["statistics"])
    loss = objective(variant)
    training = TrainerConfig(batch_size=settings["batch"], optimizer="ranger", lr=settings["lr"], weight_decay=5e-4,
                             schedule="sgdr", schedule_period=settings["steps"] // 2, schedule_decay=0.85, clip_grad=5.0, seed=seed)
    trainer = Trainer(model, AugmentedDataset(data["train"], seed=seed), config=training, objective=loss,
                      device="cpu", progress=False)
    history = trainer.fit(settings["steps"])
    gains, sdr = score([(model, loss)], data["test"], RATE)
    return RunResult(gains, sdr, settings["steps"], history[-1]["seconds"], {"all": model})
