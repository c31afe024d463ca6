"""Chapter 04's experiment: do 2 or 3 stages (8 -> 16 -> 32 kHz) beat one?

Meta-TasNet with 1, 2 and 3 stages at the chapter's cpu widths (N 64, B 64, H 64, X 4, R 2,
32 spectrogram channels), trained on the same pre-rendered 1 s crops at 32 kHz with Adam
and the sum of the stages' SI-SNR losses (no auxiliary terms), scored at 32 kHz. Each
run also records every stage's score at its own rate; :func:`reference_rows` gives the
band-limited oracles: the true stems resampled to 8 or 16 kHz and back, the best a
model whose last stage runs at that rate could do.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import SOURCES
from ..audio import resample
from ..data.band import BandDataset
from ..losses import MetaTasNetObjective
from ..metrics import si_sdr_improvement
from ..models import MetaTasNet
from ..recipe import measure_statistics
from ..train import Trainer, TrainerConfig
from . import RunResult, rendered_pool, score, test_songs, with_mean

CHAPTER = "04"
QUESTION = "Do two or three stages (8, 16, 32 kHz) separate better than one?"
VARIANTS = ("1 stage", "2 stages", "3 stages")
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu": {"size": {"N": 64, "B": 64, "H": 64, "X": 4, "R": 2, "spec_channels": 32}, "segment": 1.0, "steps": 600,
            "lr": 5e-3, "batch": 4, "crops": 1024, "statistics_examples": 64, "test_songs": 8, "test_seconds": 8.0},
    "ci": {"size": {"N": 16, "B": 16, "H": 16, "X": 2, "R": 1, "spec_channels": 16}, "segment": 0.5, "steps": 4,
           "lr": 5e-3, "batch": 2, "crops": 8, "statistics_examples": 8, "test_songs": 2, "test_seconds": 1.0},
}
"""Per scale: widths, crop length, steps, Adam's rate, batch, pre-rendered crops, statistics examples, test songs."""
RATE = 32_000


def objective(variant: str) -> MetaTasNetObjective:
    """Every variant's objective: the sum of the stages' SI-SNR losses, no auxiliary terms; estimates at 32 kHz."""
    return MetaTasNetObjective(data_rate=RATE, lambda_rec=0.0, lambda_dis=0.0, lambda_sim=0.0)


def prepare(scale: str = "cpu") -> dict[str, Any]:
    """The pre-rendered crops at 32 kHz, the test songs and the objective every variant shares."""
    settings = SETTINGS[scale]
    songs = BandDataset("train", RATE, segment=settings["segment"], song_duration=max(4.0, settings["segment"]), size=settings["crops"])
    pool = rendered_pool(songs)
    return {"settings": settings, "train": pool, "test": test_songs(settings, RATE), "objective": objective("3 stages")}


@torch.no_grad()
def stage_scores(model: MetaTasNet, test: BandDataset) -> list[list[float]]:
    """SI-SDR improvement ``[stage][source]`` of every stage at its own rate, over the test songs (silent stems skipped)."""
    model.eval()
    total, counted = torch.zeros(len(model.stages), 4, dtype=torch.float64), torch.zeros(len(model.stages), 4)
    for mixture, stems in test:
        song = torch.cat([mixture[None], stems]) / mixture.std()  # (1 + 4, 1, T) at unit level
        signals = model.stage_inputs(song[None], RATE)             # one (1, 5, 1, T_s) per stage
        for s, (out, signal) in enumerate(zip(model([x[:, 0] for x in signals]), signals)):
            gain = si_sdr_improvement(out.estimates, signal[:, 1:], signal[:, 0])[0].double()
            total[s] += torch.nan_to_num(gain)
            counted[s] += ~gain.isnan()
    model.train()
    return (total / counted).tolist()


def run(variant: str, seed: int, data: dict[str, Any]) -> RunResult:
    """Train ``variant`` from ``torch.manual_seed(seed)`` and score its output (32 kHz) and each stage."""
    if variant not in VARIANTS:
        raise ValueError(f"Chapter 04 has no variant {variant!r}: expected one of {', '.join(VARIANTS)}.")
    settings, loss = data["settings"], data["objective"]
    torch.manual_seed(seed)
    model = MetaTasNet(stages=int(variant[0]), **settings["size"])
    measure_statistics(model, loss, data["train"], examples=settings["statistics_examples"])
    training = TrainerConfig(batch_size=settings["batch"], lr=settings["lr"], clip_grad=5.0, seed=seed)
    history = Trainer(model, data["train"], config=training, objective=loss, device="cpu", progress=False).fit(settings["steps"])
    gains, sdr = score([(model, loss)], data["test"], RATE)
    per_stage = [dict(zip(SOURCES, row)) for row in stage_scores(model, data["test"])]
    return RunResult(gains, sdr, settings["steps"], history[-1]["seconds"], {"all": model},
                     {"per_stage": per_stage})


def reference_rows(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """SI-SDR improvement at 32 kHz of the perfect separator band-limited to 8 and to 16 kHz (seed-independent)."""
    rows = {}
    for rate in (8000, 16000):
        total, counted = torch.zeros(4, dtype=torch.float64), torch.zeros(4)
        for mixture, stems in data["test"]:
            perfect = resample(resample(stems, RATE, rate), rate, RATE)[..., : stems.shape[-1]]
            gain = si_sdr_improvement(perfect[None], stems[None], mixture[None])[0].double()
            total += torch.nan_to_num(gain)
            counted += ~gain.isnan()
        rows[f"oracle, perfect at {rate // 1000} kHz"] = with_mean(dict(zip(SOURCES, (total / counted).tolist())))
    return rows
