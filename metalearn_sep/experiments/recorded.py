"""The sweep's trained variants, loaded again from the weights ``make results`` saved beside each run.

``results/<chapter>/<variant>-seed<k>-<model>.pt`` holds a run's model(s): ``all`` for a
single model, one per source for "4 dedicated". They are not committed (the whole sweep is about
100 MB); :func:`variant_estimates` turns them into the few seconds of audio per variant that
``make checkpoints`` ships for the chapters' comparison players.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import SOURCES
from ..checkpoint import load_model
from ..train import SeparationObjective
from . import Part, chapter, estimate_song, test_songs
from .summary import RESULTS_DIR, run_path


def recorded_parts(number: str, variant: str, seed: int, root: Path = RESULTS_DIR) -> list[Part]:
    """The models of a recorded run, in eval mode, each with the objective that says what it estimates."""
    module = chapter(number)
    path = run_path(number, variant, seed, root)
    parts = []
    for key in SOURCES if variant == "4 dedicated" else ("all",):
        weights = path.with_name(f"{path.stem}-{key}.pt")
        if not weights.is_file():
            raise FileNotFoundError(f"The weights of chapter {number} {variant!r} seed {seed} are missing: {weights} "
                                    "does not exist (make results saves them; they are not committed).")
        model, _ = load_model(weights)
        objective = module.objective(variant) if key == "all" else SeparationObjective(targets=[SOURCES.index(key)])
        parts.append((model.eval(), objective))
    return parts


def variant_estimates(number: str, seed: int = 0, song: int = 0, seconds: float = 3.0,
                     root: Path = RESULTS_DIR, scale: str = "cpu") -> dict[str, torch.Tensor]:
    """``{variant: estimates (4, C, T)}``: every variant's recorded run of ``seed`` on held-out song ``song``.

    Each is estimated on the whole song (as the run was scored) and cut to its first
    ``seconds``; the same seed for every variant, so that they differ only by what the chapter varies.
    ``scale`` names the songs (those the sweep of that scale scored on).
    """
    module = chapter(number)
    mixture, _ = test_songs(module.SETTINGS[scale], module.RATE)[song]
    length = round(seconds * module.RATE)
    return {variant: estimate_song(recorded_parts(number, variant, seed, root), mixture)[..., :length]
            for variant in module.VARIANTS}
