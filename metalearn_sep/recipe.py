"""Training recipes: a JSON config (``configs/*.json``) turned into the pieces of a training run.

A config is a JSON object with up to five sections; only ``model.class`` is required::

    {
      "description": "one line for people",
      "model":     {"class": "MetaTasNet", "N": 64, ...},
      "objective": {"lambda_rec": 0.05, "lambda_dis": 3.0, "lambda_sim": 2.0},
      "data":      {"sample_rate": 32000, "segment": 1.0, "stereo": true, "augment": true, ...},
      "training":  {"steps": 1000, "batch_size": 4, "optimizer": "ranger", "lr": 0.01, ...}
    }

* ``model``: ``class`` (``"MetaTasNet"`` or ``"ConvTasNet"``) and any of that class's
  constructor arguments; the class's defaults fill the rest (``MetaTasNet()`` is the
  paper's released configuration).
* ``objective``: for MetaTasNet the weights of :class:`~metalearn_sep.losses.MetaTasNetObjective`
  (``lambda_rec``, ``lambda_dis``, ``lambda_sim``); for ConvTasNet the ``targets`` (source
  names, in the model's output order) and ``zero_mean`` of
  :class:`~metalearn_sep.train.SeparationObjective`. Omitted keys take the class's defaults.
* ``data`` (:data:`DATA`): the rate the data is served at (default: a MetaTasNet's last
  stage rate, 8 kHz for a ConvTasNet), training crops of ``segment`` seconds from songs of
  ``song_seconds`` (the synthetic band) or from MUSDB18 (``samples_per_track`` crops per
  song and epoch), ``stereo`` songs, ``augment`` with the paper's augmentations
  (:class:`~metalearn_sep.data.augment.AugmentedDataset`: a random channel and gain per
  stem, half of each batch remixed across songs), ``valid_songs`` mono validation songs of
  ``valid_seconds``, and for MetaTasNet the ``statistics_examples`` training mixtures its
  spectrogram branches are normalised with.
* ``training`` (:data:`TRAINING`): ``steps`` and the :class:`~metalearn_sep.train.Trainer`'s
  settings (``optimizer``, ``lr``, ``weight_decay``, ``schedule`` with ``schedule_period``
  and ``schedule_decay``, ``clip_grad``, ``batch_size``, ``valid_every``,
  ``checkpoint_every``, ``seed``, ...), defaults those of :class:`~metalearn_sep.train.TrainerConfig`.

:func:`load_recipe` / :func:`parse_recipe` check a config: an unknown key, a wrong type or an
impossible value raises ``ValueError`` with one sentence naming the key, what was expected
and what came (the model is built on the ``meta`` device to check its arguments, which
allocates nothing). :func:`prepare` builds a :class:`Run` (model, objective, data, spectrogram
statistics); :meth:`Run.trainer` its Trainer, which records the recipe in every checkpoint;
:func:`continue_run` continues a run from one. ``python -m metalearn_sep train`` is these steps
inside :func:`process_group`, which starts ``torch.distributed`` under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from . import SOURCES
from .audio import unit_level
from .checkpoint import MODEL_CLASSES, build_model as build_named_model, load_checkpoint
from .checks import is_int
from .config import MUSDB_ENV, PROFILES, default_device
from .data.augment import AugmentedDataset
from .data.band import BandDataset
from .losses import MetaTasNetObjective
from .models import MetaTasNet
from .models.enhanced import spectrogram_statistics
from .optim import OPTIMIZERS, SCHEDULES
from .train import MAY_CHANGE_ON_RESUME, SeparationObjective, Trainer, TrainerConfig

SECTIONS = ("description", "model", "objective", "data", "training")
"""The sections a config may have."""

CONV_TASNET_RATE = PROFILES["cpu"].sample_rate
"""A ConvTasNet recipe's default data rate: chapter 01's 8 kHz."""

RESUME_MAY_CHANGE = ("description", "training.steps", *(f"training.{name}" for name in MAY_CHANGE_ON_RESUME))
"""Recipe entries a resumed run may change; any other difference is refused."""


@dataclass(frozen=True)
class Key:
    """One config entry: its default, what it must be (``expect``, for messages) and the check (``ok``).

    A default of ``None`` leaves the value to the class (model and objective sections) or to
    the model (``data.sample_rate``); ``training.clip_grad`` may be ``null`` itself.
    """

    default: Any
    expect: str
    ok: Callable[[Any], bool]


def _is_number(value: object, strict: bool = True) -> bool:
    """A finite JSON number, positive (``strict``) or non-negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if strict else value >= 0


def _integer(default: int | None, low: int) -> Key:
    return Key(default, "a positive integer" if low else "a non-negative integer", lambda v: is_int(v, low))


def _number(default: float | None, strict: bool = True) -> Key:
    return Key(default, "a positive number" if strict else "a non-negative number", lambda v: _is_number(v, strict=strict))


def _flag(default: bool | None) -> Key:
    return Key(default, "true or false", lambda v: isinstance(v, bool))


def _choice(default: str, options: tuple[str, ...]) -> Key:
    return Key(default, f"one of {', '.join(map(repr, options))}", lambda v: isinstance(v, str) and v in options)


def _is_targets(value: object) -> bool:
    return (isinstance(value, list) and 0 < len(value) == len(set(map(str, value)))
            and all(isinstance(v, str) and v in SOURCES for v in value))


_TRAINER = asdict(TrainerConfig())

TRAINING: dict[str, Key] = {
    "steps": _integer(1000, 1),
    "batch_size": _integer(_TRAINER["batch_size"], 1),
    "optimizer": _choice(_TRAINER["optimizer"], OPTIMIZERS),
    "lr": _number(_TRAINER["lr"]),
    "weight_decay": _number(_TRAINER["weight_decay"], strict=False),
    "schedule": _choice(_TRAINER["schedule"], SCHEDULES),
    "warmup_steps": _integer(_TRAINER["warmup_steps"], 0),
    "schedule_period": _integer(_TRAINER["schedule_period"], 0),
    "schedule_decay": Key(_TRAINER["schedule_decay"], "a number in (0, 1]", lambda v: _is_number(v) and v <= 1),
    "clip_grad": Key(_TRAINER["clip_grad"], "a positive number or null", lambda v: v is None or _is_number(v)),
    "valid_every": _integer(_TRAINER["valid_every"], 0),
    "checkpoint_every": _integer(_TRAINER["checkpoint_every"], 0),
    "seed": _integer(_TRAINER["seed"], 0),
    "num_workers": _integer(_TRAINER["num_workers"], 0),
}
"""The ``training`` section: ``steps`` (the total a run trains to) and every :class:`TrainerConfig` setting."""

DATA: dict[str, Key] = {
    "sample_rate": Key(None, "a positive integer number of Hz", lambda v: is_int(v, 1)),
    "segment": _number(1.0),
    "song_seconds": _number(8.0),
    "stereo": _flag(False),
    "augment": _flag(False),
    "samples_per_track": _integer(64, 1),
    "valid_songs": _integer(4, 1),
    "valid_seconds": _number(4.0),
}
"""The ``data`` section (MetaTasNet recipes also take ``statistics_examples``, default 32)."""

OBJECTIVES: dict[str, dict[str, Key]] = {
    "MetaTasNet": {name: _number(None, strict=False) for name in ("lambda_rec", "lambda_dis", "lambda_sim")},
    "ConvTasNet": {
        "targets": Key(None, f"a non-empty list of distinct source names from {list(SOURCES)}", _is_targets),
        "zero_mean": _flag(None),
    },
}
"""The ``objective`` section per model class (omitted keys take the objective's defaults)."""

_STATISTICS = {"statistics_examples": _integer(32, 1)}


def _model_keys(cls: type[nn.Module]) -> dict[str, Key]:
    """The constructor arguments of ``cls``, each expected to have its default's type."""
    keys = {}
    for name, parameter in inspect.signature(cls).parameters.items():
        default = parameter.default
        if isinstance(default, bool):
            keys[name] = _flag(None)
        elif isinstance(default, int):
            keys[name] = _integer(None, 0)
        elif isinstance(default, str):
            keys[name] = Key(None, "a string", lambda v: isinstance(v, str))
        else:
            keys[name] = _number(None, strict=False)
    return keys


def _section(name: str, given: object, schema: Mapping[str, Key], fill: bool) -> dict[str, Any]:
    """Check ``given`` against ``schema``; with ``fill``, add the defaults of the missing keys."""
    if not isinstance(given, dict):
        raise ValueError(f"The {name} section must be a JSON object, got {given!r}.")
    for key, value in given.items():
        if key not in schema:
            raise ValueError(f"Unknown key {name}.{key}: expected one of {', '.join(schema)}.")
        if not schema[key].ok(value):
            raise ValueError(f"{name}.{key} must be {schema[key].expect}, got {value!r}.")
    return {key: given.get(key, spec.default) for key, spec in schema.items() if fill or key in given}


@dataclass(frozen=True)
class Recipe:
    """A checked config: the model class and the other sections as plain JSON-safe dicts.

    ``model`` and ``objective`` hold only the keys the config gave (the classes' defaults do
    the rest); ``data`` and ``training`` hold every key, defaults filled in.
    """

    description: str
    model_class: str
    model: dict[str, Any]
    objective: dict[str, Any]
    data: dict[str, Any]
    training: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a config (``parse_recipe(r.to_dict()) == r``)."""
        return {
            "description": self.description, "model": {"class": self.model_class, **self.model},
            "objective": dict(self.objective), "data": dict(self.data), "training": dict(self.training),
        }


def parse_recipe(config: object) -> Recipe:
    """Check a config (the object a ``configs/*.json`` file holds) and fill in its defaults.

    Raises:
        ValueError: one sentence naming the first unknown key, wrong type or impossible value.
    """
    if not isinstance(config, dict):
        raise ValueError(f"A recipe is a JSON object with sections {', '.join(SECTIONS)}, got {type(config).__name__}.")
    for key in config:
        if key not in SECTIONS:
            raise ValueError(f"Unknown section {key!r}: expected one of {', '.join(SECTIONS)}.")
    description = config.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"description must be a string, got {description!r}.")
    model = config.get("model")
    if not isinstance(model, dict) or model.get("class") not in OBJECTIVES:  # the classes a recipe can train
        got = model.get("class") if isinstance(model, dict) else model
        raise ValueError(f"model.class must be one of {', '.join(map(repr, OBJECTIVES))}, got {got!r}.")
    name = model["class"]
    model = _section("model", {k: v for k, v in model.items() if k != "class"}, _model_keys(MODEL_CLASSES[name]), fill=False)
    objective = _section("objective", config.get("objective", {}), OBJECTIVES[name], fill=False)
    data = _section("data", config.get("data", {}), {**DATA, **(_STATISTICS if name == "MetaTasNet" else {})}, fill=True)
    training = _section("training", config.get("training", {}), TRAINING, fill=True)

    try:
        with torch.device("meta"):  # checks the arguments, allocates nothing
            built = MODEL_CLASSES[name](**model)
    except (ValueError, TypeError, RuntimeError) as err:
        reason = str(err).splitlines()[0].rstrip(".")
        raise ValueError(f"The model section does not build a {name}: {reason}.") from None
    if name == "MetaTasNet":
        top = built.sample_rates[-1]
        data["sample_rate"] = data["sample_rate"] or top
        if data["sample_rate"] < top:
            raise ValueError(
                f"data.sample_rate must be at least the last stage's rate ({top} Hz) for this MetaTasNet, "
                f"got {data['sample_rate']} (the stages are resampled down from the data)."
            )
    else:
        data["sample_rate"] = data["sample_rate"] or model.get("sample_rate") or CONV_TASNET_RATE
        if model.get("sample_rate", data["sample_rate"]) != data["sample_rate"]:
            raise ValueError(
                f"model.sample_rate must equal data.sample_rate ({data['sample_rate']} Hz), got {model['sample_rate']}."
            )
        targets = objective.get("targets", list(SOURCES))
        if len(targets) != built.num_sources:
            raise ValueError(
                f"objective.targets must name one source per model output ({built.num_sources}), got {targets!r}."
            )
        if data["stereo"] and not data["augment"]:
            raise ValueError("data.stereo must be false for a ConvTasNet unless data.augment is true, got true (it takes mono input).")
    if data["segment"] > data["song_seconds"]:
        raise ValueError(f"data.segment must be at most data.song_seconds ({data['song_seconds']} s), got {data['segment']}.")
    if training["schedule"] != "constant" and training["schedule_period"] < 1:
        raise ValueError(
            f"training.schedule_period must be a positive number of steps for the {training['schedule']!r} schedule, "
            f"got {training['schedule_period']}."
        )
    return Recipe(description, name, model, objective, data, training)


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and check a JSON config file (see :func:`parse_recipe`).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that is
    not JSON or not a valid recipe (the message starts with the file's name).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}.") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 text file, so it is no JSON config.") from None
    try:
        return parse_recipe(config)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def musdb_root(musdb: str | os.PathLike | None = None) -> str | None:
    """The MUSDB18 folder (or cache) to train on: ``musdb``, else ``$MUSDB_PATH``, else ``None`` (the synthetic band)."""
    return str(musdb) if musdb else os.environ.get(MUSDB_ENV) or None


def build_model(recipe: Recipe) -> nn.Module:
    """The recipe's model, initialised right after ``torch.manual_seed(training.seed)``.

    A ConvTasNet records the data's rate as its ``sample_rate`` (the rate it separates at).
    """
    config = dict(recipe.model)
    if recipe.model_class == "ConvTasNet":  # trained at the data's rate, and separates at it
        config.setdefault("sample_rate", recipe.data["sample_rate"])
    torch.manual_seed(recipe.training["seed"])
    return build_named_model(recipe.model_class, config, "The recipe")


def build_objective(recipe: Recipe) -> MetaTasNetObjective | SeparationObjective:
    """:class:`MetaTasNetObjective` at the data rate for MetaTasNet, :class:`SeparationObjective` for ConvTasNet."""
    if recipe.model_class == "MetaTasNet":
        return MetaTasNetObjective(data_rate=recipe.data["sample_rate"], **recipe.objective)
    settings = dict(recipe.objective)
    if "targets" in settings:
        settings["targets"] = [SOURCES.index(name) for name in settings["targets"]]
    return SeparationObjective(**settings)


def build_data(recipe: Recipe, musdb: str | os.PathLike | None = None) -> tuple[Dataset, Dataset]:
    """``(train, valid)`` datasets of ``(mixture [C, T], stems [4, C, T])`` at ``data.sample_rate``.

    The synthetic band when :func:`musdb_root` gives no folder, else MUSDB18's train and
    valid splits (``FileNotFoundError`` for a missing folder) through
    :func:`~metalearn_sep.data.cache.musdb_dataset`: from memory-mapped arrays when the
    folder is a ``prepare-musdb`` cache (it holds ``manifest.json``; ``ValueError`` naming
    the command that adds ``data.sample_rate`` when it lacks that rate), else decoded crop
    by crop (fine on a CPU; it prints once the command that builds a cache). Training crops are
    ``data.segment`` seconds, through :class:`AugmentedDataset` when ``data.augment``
    (mono then); validation songs are the first ``data.valid_songs`` of the valid split,
    mono, ``data.valid_seconds`` long (for MUSDB18 the middle of each song), as the
    original validates on mono downmixes.
    """
    data, seed = recipe.data, recipe.training["seed"]
    rate, root = data["sample_rate"], musdb_root(musdb)
    if root is None:
        songs = BandDataset("train", rate, segment=data["segment"], song_duration=data["song_seconds"], stereo=data["stereo"])
        valid = BandDataset("valid", rate, segment=None, song_duration=data["valid_seconds"], size=data["valid_songs"])
    else:
        from .data.cache import musdb_dataset

        songs = musdb_dataset(root, "train", rate, segment=data["segment"], stereo=data["stereo"],
                              samples_per_track=data["samples_per_track"], seed=seed)
        held_out = musdb_dataset(root, "valid", rate, segment=data["valid_seconds"], stereo=False)
        valid = Subset(held_out, range(min(data["valid_songs"], len(held_out))))
    return (AugmentedDataset(songs, seed=seed) if data["augment"] else songs), valid


@torch.no_grad()
def measure_statistics(model: MetaTasNet, objective: MetaTasNetObjective, data: Dataset, examples: int, batch_size: int = 32) -> None:
    """Every stage encoder's spectrogram mean/std, from ``examples`` training mixtures at unit level, at that stage's rate.

    The mixtures ``(examples, C, T)`` of ``data[0 : examples]`` are held in memory at the
    data rate (``examples * C * T * 4`` bytes); each stage's inputs are made from them
    ``batch_size`` at a time. Stages without a spectrogram branch are skipped.
    """
    count = min(examples, len(data))
    mixtures = unit_level(torch.stack([data[i][0] for i in range(count)]))  # (examples, C, T)
    for s, stage in enumerate(model.stages):
        if stage.encoder.spectrogram is not None:
            batches = (model.stage_inputs(mixtures[k : k + batch_size], objective.data_rate)[s] for k in range(0, count, batch_size))
            spectrogram_statistics(stage.encoder, batches, max_examples=count * mixtures.shape[1])


@dataclass
class Run:
    """The pieces of one training run, as :func:`prepare` builds them."""

    recipe: Recipe
    model: nn.Module
    objective: MetaTasNetObjective | SeparationObjective
    train: Dataset
    valid: Dataset | None

    def trainer_config(self, **changes: Any) -> TrainerConfig:
        """The recipe's training settings (all but ``steps``), with ``changes`` (e.g. ``schedule_period``) applied.

        The recipe goes into ``extra["recipe"]``, hence into every checkpoint of the run.
        """
        settings = {k: v for k, v in self.recipe.training.items() if k != "steps"}
        return TrainerConfig(**{**settings, **changes}, extra={"recipe": self.recipe.to_dict()})

    def trainer(self, config: TrainerConfig | None = None, **options: Any) -> Trainer:
        """A :class:`Trainer` of this run: ``config`` defaults to :meth:`trainer_config`; ``options`` are the
        Trainer's other arguments (``checkpoint``, ``device``, ``progress``, ...)."""
        config = config if config is not None else self.trainer_config()
        return Trainer(self.model, self.train, self.valid, config, objective=self.objective, **options)


def prepare(recipe: Recipe, musdb: str | os.PathLike | None = None, statistics: bool = True,
            device: torch.device | str | None = None) -> Run:
    """Build the model (seeded), objective and data of ``recipe``; measure a MetaTasNet's spectrogram statistics.

    Args:
        recipe: from :func:`load_recipe` or :func:`parse_recipe`.
        musdb: a MUSDB18 folder (default ``$MUSDB_PATH``; neither: the synthetic band).
        statistics: measure the statistics (``data.statistics_examples`` training mixtures);
            ``False`` when the weights will come from a checkpoint, which holds them.
        device: where the model is put before measuring (the Trainer keeps it there).
    """
    model = build_model(recipe).to(device if device is not None else "cpu")
    objective = build_objective(recipe)
    train, valid = build_data(recipe, musdb)
    if statistics and isinstance(model, MetaTasNet):
        measure_statistics(model, objective, train, recipe.data["statistics_examples"])
    return Run(recipe, model, objective, train, valid)


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def continue_run(trainer: Trainer, checkpoint: str | os.PathLike) -> None:
    """Continue ``trainer`` (from :meth:`Run.trainer`) exactly where the run saved at ``checkpoint`` stopped.

    Loads the weights, optimiser, schedule, step, history and random generators. Raises
    ``ValueError`` naming the differences when the checkpoint holds no recipe or was written
    by another recipe (only :data:`RESUME_MAY_CHANGE` may differ).
    """
    state = load_checkpoint(checkpoint, trainer.model)
    saved = state["trainer"].get("extra", {}).get("recipe")
    if not isinstance(saved, dict):
        raise ValueError(f"{checkpoint} holds no training recipe, so a recipe run cannot continue from it.")
    theirs, mine = _flat(saved), _flat(trainer.config.extra["recipe"])
    diff = sorted(k for k in set(theirs) | set(mine) if k not in RESUME_MAY_CHANGE and theirs.get(k) != mine.get(k))
    if diff:
        parts = ", ".join(f"{k}={theirs.get(k)!r} in the checkpoint but {mine.get(k)!r} now" for k in diff)
        raise ValueError(f"{checkpoint} was written by another recipe: {parts}.")
    trainer.load_state_dict(state)


@contextlib.contextmanager
def process_group(device: torch.device | str | None = None) -> Iterator[torch.device]:
    """The device this process trains on, inside a ``torch.distributed`` process group under ``torchrun``.

    When torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) is present and no group exists yet, the default group is initialised
    from it, with the nccl backend on CUDA (rank ``LOCAL_RANK`` takes ``cuda:LOCAL_RANK``
    unless ``device`` names an index) and gloo otherwise, and destroyed on exit. Otherwise
    it yields ``device`` (default: the best available) and does nothing else.

    Free every ``DistributedDataParallel`` model (every :class:`Trainer`) inside the block:
    one destroyed after its group can hang the process at exit.
    """
    device = torch.device(device) if device is not None else default_device()
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        yield device
        return
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        gc.collect()  # DDP wrappers caught in reference cycles go now, before their group
        dist.destroy_process_group()
