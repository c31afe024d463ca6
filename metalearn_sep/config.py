"""Course profiles: one switch that scales every notebook between CI, a laptop and a GPU.

``ci``    every notebook in about a minute on 2 CPU cores (the course CI runs this);
``cpu``   a student without a GPU: minutes per chapter, audible results;
``gpu``   one 16 GB GPU, at most 20 minutes per chapter on a T4 (the default with CUDA);
``paper`` the paper's sizes: hours per chapter, more memory than a 16 GB GPU has; only on request.

The two GPU profiles' chapter sizes are in :mod:`metalearn_sep.scales` and costed by
``benchmarks/plan_gpu.py``.

Notebooks read sizes from :class:`Profile` and choose anything chapter-specific with
:meth:`CourseConfig.pick`, so all three profiles run the same code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")

PROFILE_ENV = "METALEARN_SEP_PROFILE"
MUSDB_ENV = "MUSDB_PATH"


@dataclass(frozen=True)
class Profile:
    """Sizes shared by the chapters.

    Attributes:
        name: ``"ci"``, ``"cpu"``, ``"gpu"`` or ``"paper"``.
        sample_rate: rate (Hz) the single-rate chapters (00-03) work at.
        segment_seconds: length of one training crop.
        song_seconds: length of one synthetic-band song that crops are taken from.
        batch_size: training examples per step.
        eval_songs: held-out songs every evaluation averages over.
        eval_seconds: length of each held-out excerpt.
    """

    name: str
    sample_rate: int
    segment_seconds: float
    song_seconds: float
    batch_size: int
    eval_songs: int
    eval_seconds: float


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", 8000, 1.0, 4.0, 4, 4, 4.0),
    "cpu": Profile("cpu", 8000, 2.0, 8.0, 8, 8, 8.0),
    "gpu": Profile("gpu", 8000, 4.0, 16.0, 8, 16, 16.0),
    "paper": Profile("paper", 8000, 8.0, 16.0, 12, 16, 16.0),
}


def default_device() -> torch.device:
    """CUDA when present, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, else ``$METALEARN_SEP_PROFILE``, else gpu with CUDA or cpu (never paper)."""
    if name is None:
        name = os.environ.get(PROFILE_ENV) or ("gpu" if torch.cuda.is_available() else "cpu")
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"Unknown course profile {name!r}: expected one of {', '.join(PROFILES)} "
            f"(set {PROFILE_ENV} or pass profile=)."
        )
    return PROFILES[key]


@dataclass(frozen=True)
class CourseConfig:
    """What :func:`metalearn_sep.course.setup` returns to a notebook.

    Attributes:
        profile: the active :class:`Profile`.
        device: where models run.
        seed: the seed every random generator was given.
        musdb_path: the MUSDB18 root from ``$MUSDB_PATH``, or ``None`` (synthetic band).
    """

    profile: Profile
    device: torch.device
    seed: int
    musdb_path: str | None

    @property
    def name(self) -> str:
        return self.profile.name

    def pick(self, *, ci: T, cpu: T, gpu: T, paper: T | None = None) -> T:
        """The value for the active profile, e.g. ``steps = cfg.pick(ci=40, cpu=1500, gpu=5000, paper=50_000)``.

        ``paper`` defaults to the ``gpu`` value: give it where the paper's size differs.
        """
        return {"ci": ci, "cpu": cpu, "gpu": gpu, "paper": gpu if paper is None else paper}[self.profile.name]


CONV_TASNET_SIZES: dict[str, dict[str, int | str]] = {
    "ci": {"N": 64, "L": 16, "B": 32, "H": 64, "Sc": 32, "X": 4, "R": 2, "start": "fourier"},
    "cpu": {"N": 128, "L": 64, "B": 64, "H": 128, "Sc": 64, "X": 6, "R": 2, "mask": "softmax", "start": "fourier"},
    "gpu": {"N": 256, "L": 16, "B": 128, "H": 256, "Sc": 128, "X": 8, "R": 2},
    "paper": {"N": 512, "L": 16, "B": 128, "H": 512, "Sc": 128, "X": 8, "R": 3},
}
"""Chapter 01's Conv-TasNet per profile (``paper`` is the paper's best configuration; ``gpu`` halves its
widths and drops a repeat to fit a T4's 20 minutes, see :mod:`metalearn_sep.scales`).

The cpu model trades the paper's 2 ms window for an 8 ms one (L = 64 at 8 kHz, N = 128):
four times fewer latent frames, so more than twice the training steps in five minutes; a
softmax mask across the sources; and an encoder and decoder that start from a windowed
Fourier basis (``start="fourier"``, :func:`~metalearn_sep.models.conv_tasnet.fourier_start_`)
instead of random filters, which keeps other and vocals from stalling on some seeds. With
these it reaches the chapter's target, >= 10 dB mean SI-SDR improvement after 5 minutes on
2 CPU cores, on every seed measured (``benchmarks/bench_conv_tasnet_train.py``; every run
and setting tried is in ``benchmarks/RESULTS.md``). The ci model starts from the Fourier
basis too, so the notebook's two profiles show the same thing; the gpu model is the
paper's, random filters and all."""

CONV_TASNET_STEPS: dict[str, int] = {"ci": 40, "cpu": 760, "gpu": 1000, "paper": 30_000}
"""Training steps of chapter 01's models per profile. The cpu profile's 760 steps (batch 4 x 2 s) keep
each of the chapter's models within about 5 minutes on 2 CPU cores, the budget that
``benchmarks/bench_conv_tasnet_train.py`` measures (step times in ``benchmarks/RESULTS.md``)."""

CONV_TASNET_TRAINING: dict[str, dict[str, int | float | str]] = {
    "ci": {"batch_size": 4, "lr": 3e-3, "schedule": "constant"},
    "cpu": {"batch_size": 4, "lr": 3e-3, "schedule": "wsd", "schedule_decay": 0.3},
    "gpu": {"batch_size": 8, "lr": 2e-3, "schedule": "wsd", "schedule_decay": 0.3},
    "paper": {"batch_size": 12, "lr": 1e-3, "schedule": "constant"},
}
"""Chapter 01's :class:`~metalearn_sep.train.Trainer` settings per profile, over ``CONV_TASNET_STEPS`` steps
(``schedule_period``). cpu: Adam at 3e-3, held for 70 % of the run and then decayed linearly to zero
(``wsd``): in 5-minute screening runs a decay at the end beat a constant rate, and a cosine decay over the
whole run lost to a constant rate (``benchmarks/RESULTS.md``, under ``bench_conv_tasnet_train``)."""
