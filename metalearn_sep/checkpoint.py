"""The course's checkpoint format: what a file holds, how it is written, how a model comes back from it.

A checkpoint is a dict saved with ``torch.save`` and read with ``weights_only=True`` (so a
file can only hold tensors and plain containers, never code that runs when it is read)::

    {
      "format": "metalearn-sep-checkpoint/1",
      "model_class": "MetaTasNet" | "ConvTasNet",    # a key of MODEL_CLASSES
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
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .models import ConvTasNet, MetaTasNet

CHECKPOINT_FORMAT = "metalearn-sep-checkpoint/1"
"""The marker every course checkpoint carries."""

MODEL_CLASSES: dict[str, type[nn.Module]] = {"MetaTasNet": MetaTasNet, "ConvTasNet": ConvTasNet}
"""The model classes a checkpoint or a recipe may name."""


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


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (with :func:`model_state`'s keys) to ``path`` atomically; returns the path."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"A checkpoint state must carry format {CHECKPOINT_FORMAT!r} (build it with model_state).")
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The dict a course checkpoint holds, read safely (``weights_only=True``) and checked for the format marker."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated, foreign or unsafe files
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated file, or one holding objects other than tensors: {type(err).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a metalearn-sep checkpoint (no '{CHECKPOINT_FORMAT}' marker).")
    return state


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
    """The model a course checkpoint holds, with its weights, and the recipe it was trained with.

    Returns:
        ``(model, recipe)``: the model on the CPU in training mode; ``recipe`` the JSON
        recipe (a dict with ``model``, ``data``, ``training``, ... sections, see
        :mod:`metalearn_sep.recipe`) for a run started from one, else ``None``.
    """
    state = read_checkpoint(path)
    model = build_model(state.get("model_class"), state.get("model_config"), str(path))
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{path}: the weights do not fit its {state['model_class']} configuration ({first})") from None
    recipe = (state.get("trainer") or {}).get("extra", {}).get("recipe")
    return model, recipe if isinstance(recipe, dict) else None
