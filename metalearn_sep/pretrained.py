"""The course's own trained models: ``assets/checkpoints/``, each verified against its manifest before loading.

``assets/checkpoints/MANIFEST.json`` maps a name to its file and what it is::

    {"meta-tasnet-cpu": {"file": "meta-tasnet-cpu.pt", "sha256": "...", "bytes": 5460123,
                         "dtype": "float16", "model_class": "MetaTasNet", "source": "...",
                         "commit": "...", "scores": {...}, "margin_db": 8.1, ...}, ...}

A file holds the weights only (:func:`~metalearn_sep.checkpoint.model_state`: class,
configuration, state dict; no optimiser), in float16 where the manifest says so: the
manifest's ``fp16_change_db`` records how much the rounding moved the held-out SI-SDR
improvement. :func:`pretrained` checks the file's size and SHA-256 against the manifest
first, so a truncated download or an edited file is refused in one sentence instead of
loading wrong weights. :func:`ship` writes a model and its manifest entry (atomically).

Beside the models, ``chapter-<NN>-variants`` entries (``"kind": "excerpts"``) hold a few seconds
of every variant's estimates on one held-out song of a chapter's experiment, so that a notebook
can play the variants side by side without shipping every variant's weights
(:func:`ship_excerpts`, :func:`variant_excerpts`): float16 arrays in a ``.npz``, read without pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import SOURCES
from .atomic import atomic_write, atomic_write_text
from .checkpoint import file_sha256, load_model, model_state, save_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
"""The repository's ``assets/checkpoints/`` folder."""

MANIFEST = "MANIFEST.json"
DEFAULT_SEPARATOR = "meta-tasnet-cpu"
"""The model ``python -m metalearn_sep separate`` uses without ``--checkpoint``: chapter 05's recipe, trained on a CPU."""


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else ASSETS


def read_manifest(root: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """``root/MANIFEST.json`` (default :data:`ASSETS`) as a dict, empty when the file does not exist; a file that is not one is a ValueError."""
    path = _root(root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it with git or run make checkpoints.") from None
    if not isinstance(manifest, dict) or not all(isinstance(v, dict) and "file" in v and "sha256" in v for v in manifest.values()):
        raise ValueError(f"{path} is not a checkpoint manifest (each entry needs a file and a sha256).")
    return manifest


def verified_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """The file of shipped model ``name``, after checking its size and SHA-256 against the manifest."""
    manifest = read_manifest(root)
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "none (run make checkpoints)"
        raise ValueError(f"No shipped model is called {name!r}; the course ships: {known}.")
    entry = manifest[name]
    path = _root(root) / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"The shipped model {name!r} is missing: {path} does not exist (git checkout it or run make checkpoints).")
    if path.stat().st_size != entry.get("bytes", path.stat().st_size) or file_sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its SHA-256 in {MANIFEST}: the file is corrupt or was changed, "
                         f"so it was not loaded (git checkout it or run make checkpoints).")
    return path


def pretrained(name: str = DEFAULT_SEPARATOR, root: str | os.PathLike | None = None) -> nn.Module:
    """The shipped model ``name`` (see ``MANIFEST.json``), verified, in float32 and eval mode on the CPU."""
    path = verified_path(name, root)
    if read_manifest(root)[name].get("kind") == "excerpts":
        raise ValueError(f"{name!r} is a set of recorded excerpts, not a model: read it with variant_excerpts().")
    model, _ = load_model(path)
    return model.float().eval()


def excerpts_name(chapter: str) -> str:
    """The manifest name of chapter ``chapter``'s variant excerpts."""
    return f"chapter-{chapter}-variants"


def ship_excerpts(chapter: str, estimates: dict[str, torch.Tensor], root: str | os.PathLike | None = None,
                  **facts: Any) -> dict[str, Any]:
    """Write ``{variant: estimates (4, C, T)}`` (float16) to ``root/chapter-<NN>-variants.npz`` and its manifest entry."""
    root = _root(root)
    root.mkdir(parents=True, exist_ok=True)
    name = excerpts_name(chapter)
    arrays = {f"variant{i}": x.detach().cpu().numpy().astype(np.float16) for i, x in enumerate(estimates.values())}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:
            np.savez_compressed(file, **arrays)

    path = atomic_write(root / f"{name}.npz", write)
    entry = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size, "kind": "excerpts",
             "chapter": chapter, "variants": list(estimates), **facts}
    _write_entry(root, name, entry)
    return entry


def variant_excerpts(chapter: str, root: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``({variant: estimates (4, C, T) float32}, manifest entry)`` of chapter ``chapter``, verified.

    The entry says which held-out song (``song``), seed and sample rate the estimates come from.
    """
    name = excerpts_name(chapter)
    path = verified_path(name, root)
    entry = read_manifest(root)[name]
    with np.load(path, allow_pickle=False) as data:
        estimates = {v: torch.from_numpy(data[f"variant{i}"].astype(np.float32)) for i, v in enumerate(entry["variants"])}
    return estimates, entry


def ship(model: nn.Module, name: str, root: str | os.PathLike | None = None, *, half: bool = False, **facts: Any) -> dict[str, Any]:
    """Write ``model``'s weights to ``root/<name>.pt`` (float16 when ``half``) and its manifest entry; returns the entry.

    ``facts`` (JSON-serialisable: source, commit, scores, ...) go into the entry beside the
    file's name, size, SHA-256 and dtype. The file and the manifest are each written atomically.
    """
    root = _root(root)
    root.mkdir(parents=True, exist_ok=True)
    state = model_state(model)
    if half:
        state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    path = save_checkpoint(state, root / f"{name}.pt")
    entry = {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
             "dtype": str(torch.float16 if half else torch.float32).removeprefix("torch."),
             "model_class": state["model_class"], **facts}
    _write_entry(root, name, entry)
    return entry


def _write_entry(root: Path, name: str, entry: dict[str, Any]) -> None:
    manifest = {**read_manifest(root), name: entry}
    atomic_write_text(root / MANIFEST, json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


def held_out_scores(name: str, root: str | os.PathLike | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """``(SI-SDR improvement, SDR)`` per source and mean of shipped model ``name``, scored again as its manifest says.

    A chapter's model (``chapter``, ``variant``, ``scale`` in its entry) on that chapter's held-out
    songs (:func:`metalearn_sep.experiments.rescore`); the default separator on the synthetic
    band's test songs of its ``scoring`` entry (:func:`metalearn_sep.evaluate.band_scores`).
    """
    from .evaluate import band_scores
    from .experiments import rescore, with_mean

    model = pretrained(name, root)  # an unknown or corrupt model is named first
    entry = read_manifest(root)[name]
    if "chapter" in entry:
        return rescore(entry["chapter"], entry["variant"], model, entry.get("scale", "cpu"))
    scoring = entry["scoring"]
    gains, sdr = band_scores(model, scoring["sample_rate"], scoring["stereo"], scoring["songs"], scoring["seconds"], device="cpu")
    return with_mean(dict(zip(SOURCES, gains.tolist()))), with_mean(dict(zip(SOURCES, sdr.tolist())))
