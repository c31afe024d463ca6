"""The first cell of every notebook, and the self-checks that follow each exercise.

``cfg = course.setup()`` picks the profile, seeds every generator, chooses the device
and prints one short block of versions, so a student's bug report says everything.
The ``check_*`` helpers compare a student's answer with the package's and say
precisely what differs (shape, dtype, which value), never just "wrong".
``course.pretrained(name)`` loads one of the course's shipped models (:mod:`metalearn_sep.pretrained`);
``course.shipped_estimates``, ``course.compare_variants``, ``course.variant_grid`` and
``course.variant_song`` play them (:mod:`metalearn_sep.shipped`).
"""

from __future__ import annotations

import os
import platform
import random
import warnings

import numpy as np
import torch

from . import __version__
from .config import MUSDB_ENV, CourseConfig, default_device, resolve_profile
from .exercises import confirm, exercise, self_check
from .pretrained import pretrained
from .shipped import compare_variants, shipped_estimates, variant_grid, variant_song

__all__ = ["check_close", "compare_variants", "confirm", "exercise", "pretrained", "self_check", "seed_everything", "setup", "shipped_estimates", "variant_grid",
           "variant_song"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(profile: str | None = None, seed: int = 0, device: str | None = None, verbose: bool = True) -> CourseConfig:
    """Prepare a notebook: profile, seeds, device, quiet warnings, and a versions block.

    Args:
        profile: ``"ci"``, ``"cpu"`` or ``"gpu"``; default ``$METALEARN_SEP_PROFILE``,
            else ``gpu`` when CUDA is present, else ``cpu``.
        seed: seed for Python, NumPy and torch.
        device: force a device (``"cpu"``, ``"cuda"``, ``"mps"``); default the best present.
        verbose: print the versions block.
    """
    prof = resolve_profile(profile)
    seed_everything(seed)
    dev = torch.device(device) if device is not None else default_device()
    # Warnings that depend on the machine (not on the course) would make notebook
    # outputs differ between a laptop, Colab and CI.
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.nn.modules.conv")
    musdb = os.environ.get(MUSDB_ENV) or None
    cfg = CourseConfig(profile=prof, device=dev, seed=seed, musdb_path=musdb)
    if verbose:
        import torchaudio

        threads = torch.get_num_threads()
        gpu = f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""
        data = f"MUSDB18 at {musdb}" if musdb else f"synthetic band (set {MUSDB_ENV} to use MUSDB18)"
        print(
            f"metalearn-sep {__version__} | profile {prof.name} | device {dev}{gpu} | {threads} CPU threads | seed {seed}\n"
            f"python {platform.python_version()} | torch {torch.__version__} | torchaudio {torchaudio.__version__} "
            f"| numpy {np.__version__}\n"
            f"data: {data}"
        )
    return cfg


def _as_tensor(x: object) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def check_close(actual: object, expected: object, what: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Self-check: ``actual`` must have ``expected``'s shape and values (within tolerance).

    Raises an ``AssertionError`` that names ``what``, and the shape, the first wrong
    index and both values, or the presence of NaN, when they differ. Prints a short
    confirmation when they agree.
    """
    got, want = _as_tensor(actual), _as_tensor(expected)
    if tuple(got.shape) != tuple(want.shape):
        raise AssertionError(f"{what}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}.")
    got, want = got.double(), want.double()
    if torch.isnan(got).any() and not torch.isnan(want).any():
        raise AssertionError(f"{what}: your result contains NaN ({int(torch.isnan(got).sum())} values).")
    bad = ~torch.isclose(got, want, atol=atol, rtol=rtol, equal_nan=True)
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.numel()} values differ; first at index {idx}: "
            f"got {got[idx].item():.6g}, expected {want[idx].item():.6g}."
        )
    confirm(f"{what}: matches the package.")
