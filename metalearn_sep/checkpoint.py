"""The course's checkpoint format: what a file holds, how it is written, how a model comes back from it.

A checkpoint is a dict saved with ``torch.save`` and read with ``weights_only=True`` (so a
file can only hold tensors and plain containers, never code that runs when it is read)::

    {
      "format": "metalearn-sep-checkpoint/1",
      "model_class": "MetaTasNet" | "ConvTasNet" | ...,  # a key of MODEL_CLASSES
      "model_config": {...},                          # the constructor's arguments (model.config)
      "model": state_dict,
      ... the Trainer's state: "optimizer", "scheduler", "trainer" (its settings, with
          "extra": {"recipe": the JSON recipe} for a recipe run), "step", "elapsed",
          "history", "rng"
    }

Files are written atomically (:func:`save_checkpoint`): a run killed while saving leaves
the previous checkpoint intact. Reading fails early with one sentence for a missing,
corrupt or foreign file, an unknown model class, a configuration that does not build,
or weights that do not fit it.

The original Meta-TasNet code's checkpoints (the paper's released ``best_model.pt``:
``{"state_dict": ..., "args": argparse.Namespace}``) are read too: :func:`load_original`,
and :func:`load_model` for every command, map them onto :class:`MetaTasNet`
(:mod:`metalearn_sep.original` lists what differs). Every file is unpickled with
``weights_only=True`` and only ``argparse.Namespace`` allowed besides tensors and plain
containers, so a file carrying any other object is refused before anything in it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .models import ConvTasNet, MetaTasNet
from .models.encoder_ablation import EncoderSeparator
from .original import from_original, is_original_layout

CHECKPOINT_FORMAT = "metalearn-sep-checkpoint/1"
"""The marker every course checkpoint carries."""

MODEL_CLASSES: dict[str, type[nn.Module]] = {"MetaTasNet": MetaTasNet, "ConvTasNet": ConvTasNet,
                                             "EncoderSeparator": EncoderSeparator}
"""The model classes a checkpoint may name (EncoderSeparator: chapter 02's ablation models). A recipe trains
only the classes :data:`metalearn_sep.recipe.OBJECTIVES` has an objective for."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under ``DistributedDataParallel`` and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments a course model keeps in ``model.config`` (``{}`` if none)."""
    return dict(getattr(unwrap_model(model), "config", {}) or {})


def model_state(model: nn.Module) -> dict[str, Any]:
    """The model's part of a checkpoint: its class name, configuration and weights."""
    plain = unwrap_model(model)
    return {
        "format": CHECKPOINT_FORMAT,
        "model_class": type(plain).__name__,
        "model_config": model_config(plain),
        "model": plain.state_dict(),
    }


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (with :func:`model_state`'s keys) to ``path`` atomically; returns the path."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"A checkpoint state must carry format {CHECKPOINT_FORMAT!r} (build it with model_state).")
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_file(path: str | os.PathLike) -> object:
    """What a checkpoint file holds, unpickled safely: tensors, plain containers and ``argparse.Namespace`` only.

    ``torch.load(weights_only=True)`` with ``argparse.Namespace`` allowed for this call only
    (the original code's checkpoints keep their arguments in one). ``FileNotFoundError`` for
    a missing file; ``ValueError`` for a corrupt one, and for one whose pickle names any
    other global (a class or function whose reconstruction could run code), which is
    refused before anything in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated, foreign or unsafe files
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if unsafe is not None:
            raise ValueError(
                f"{path} is not a readable checkpoint: its pickle carries {unsafe.group(1)}, which was not loaded because "
                f"a checkpoint may hold only tensors, plain containers and argparse.Namespace (anything else could run code)."
            ) from None
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated file, or one holding objects other than tensors: {type(err).__name__}).") from None


def _course_state(state: object, path: str | os.PathLike) -> dict[str, Any]:
    """``state`` if it carries the course's format marker, else ``ValueError`` saying what ``path`` holds instead."""
    if is_original_layout(state):
        raise ValueError(f"{path} is a checkpoint of the original Meta-TasNet code, not a course one: read it with load_model or load_original.")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a metalearn-sep checkpoint (no '{CHECKPOINT_FORMAT}' marker).")
    return state


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The dict a course checkpoint holds, read safely (:func:`load_file`) and checked for the format marker."""
    return _course_state(load_file(path), path)


def load_original(path: str | os.PathLike) -> MetaTasNet:
    """The :class:`MetaTasNet` an original Meta-TasNet checkpoint (``{"state_dict", "args"}``) describes, with its weights.

    The paper's released ``best_model.pt`` loads this way (45,531,260 trained parameters).
    Read safely (:func:`load_file`); the architecture comes from ``args`` and the weights are
    mapped exactly (:func:`metalearn_sep.original.from_original`, whose module lists every
    layout difference). ``ValueError`` names what is wrong: a file of another layout, an
    argument our model cannot honour (``residual_bias=True``, a non-zero ``dropout``), or a
    missing, extra or mis-shaped key. Returns the model on the CPU in training mode.
    """
    state = load_file(path)
    if not is_original_layout(state):
        raise ValueError(f"{path} is not a checkpoint of the original Meta-TasNet code (a dict with 'state_dict' and 'args').")
    return from_original(state["state_dict"], state["args"], str(path))


def _defaults(cls: type[nn.Module], names: set[str]) -> dict[str, Any]:
    """The constructor defaults of ``cls`` for ``names``: what a checkpoint written before an argument existed meant."""
    parameters = inspect.signature(cls).parameters
    return {n: parameters[n].default for n in names if n in parameters and parameters[n].default is not inspect.Parameter.empty}


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Read a course checkpoint into ``model`` (which must be of its class and configuration); returns the dict.

    Raises ``ValueError`` naming what differs when the checkpoint holds another model class
    or configuration.
    """
    state = read_checkpoint(path)
    plain = unwrap_model(model)
    if state["model_class"] != type(plain).__name__:
        raise ValueError(f"{path} holds a {state['model_class']}, not a {type(plain).__name__}.")
    mine = model_config(plain)
    saved = {**_defaults(type(plain), set(mine) - set(state["model_config"])), **state["model_config"]}
    diff = sorted(k for k in set(mine) | set(saved) if saved.get(k) != mine.get(k))
    if diff:
        parts = ", ".join(f"{k}={saved.get(k)!r} in the checkpoint but {mine.get(k)!r} in the model" for k in diff)
        raise ValueError(f"{path} was saved from another configuration: {parts}.")
    plain.load_state_dict(state["model"])
    return state


def build_model(name: object, config: object, source: str = "The configuration") -> nn.Module:
    """``MODEL_CLASSES[name](**config)``, or ``ValueError`` naming ``source`` and what is wrong."""
    if not isinstance(name, str) or name not in MODEL_CLASSES:
        raise ValueError(f"{source} names a {name!r} model; the course builds {' or '.join(MODEL_CLASSES)}.")
    if not isinstance(config, dict):
        raise ValueError(f"{source} has no model configuration (got {config!r}).")
    try:
        return MODEL_CLASSES[name](**config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: its {name} configuration does not build a model ({err})") from None


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any] | None]:
    """The model a course checkpoint, or an original Meta-TasNet one, holds, with its weights, and its recipe.

    Returns:
        ``(model, recipe)``: the model on the CPU in training mode; ``recipe`` the JSON
        recipe (a dict with ``model``, ``data``, ``training``, ... sections, see
        :mod:`metalearn_sep.recipe`) for a run started from one, else ``None`` (always for
        the original code's checkpoints, read as :func:`load_original` does).
    """
    state = load_file(path)
    if is_original_layout(state):
        return from_original(state["state_dict"], state["args"], str(path)), None
    state = _course_state(state, path)
    model = build_model(state.get("model_class"), state.get("model_config"), str(path))
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{path}: the weights do not fit its {state['model_class']} configuration ({first})") from None
    recipe = (state.get("trainer") or {}).get("extra", {}).get("recipe")
    return model, recipe if isinstance(recipe, dict) else None
