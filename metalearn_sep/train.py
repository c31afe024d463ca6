"""One training loop for every chapter: :class:`Trainer`.

The loop is deliberately plain: draw a batch, compute the objective, clip, step, log.
Around it sit the things a course needs and a notebook should not re-write:

* a pluggable objective (:class:`SeparationObjective`, negative SI-SNR, by default);
* Adam / AdamW, gradient clipping, an LR schedule with warm-up (see :mod:`metalearn_sep.optim`);
* validation every ``valid_every`` steps: SI-SDR improvement per source;
* tqdm progress bars that render in notebooks and terminals, and a ``history`` to plot;
* checkpoints written atomically (a run killed while saving leaves the previous file
  intact) that resume *exactly*: the batch order is a function of (seed, step), and the
  random generators are saved, so a run interrupted and resumed on the CPU ends with
  the same weights as an uninterrupted one;
* device selection (cuda, mps, cpu); bf16 autocast where the GPU has bf16, fp32 elsewhere, TF32 and
  cuDNN's autotuner on CUDA (:mod:`metalearn_sep.precision`); pinned memory and non-blocking
  copies; optional ``torch.compile``;
* ``torch.distributed``: when a process group is initialised (``torchrun``), the model
  is wrapped in ``DistributedDataParallel``, each rank takes its share of every global
  batch, metrics are averaged over ranks and only rank 0 writes and prints.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from . import SOURCES
from .checkpoint import load_checkpoint, model_state, save_checkpoint
from .config import default_device
from .cost import out_of_memory_message
from .losses import si_snr_loss
from .metrics import si_sdr_improvement
from .optim import build_optimizer, build_schedule
from .precision import configure_backends, resolve_amp
from .progress import progress_bar


class SeparationObjective:
    """The default objective: the model maps a mixture to its sources; loss = negative SI-SNR.

    Args:
        targets: indices into :data:`SOURCES` the model predicts, in its output order
            (default all four); ``[1]`` trains a dedicated bass model, for example.
        zero_mean: SI-SNR (``True``, Conv-TasNet) or SI-SDR (``False``).

    An objective has two methods the :class:`Trainer` calls:
    ``objective(model, mixture, stems) -> (loss, logs)`` for training and
    ``objective.estimate(model, mixture) -> (batch, len(targets), channel, time)`` for
    evaluation. Later chapters supply their own (multi-stage, auxiliary losses).
    """

    def __init__(self, targets: Sequence[int] | None = None, zero_mean: bool = True) -> None:
        self.targets = list(range(len(SOURCES))) if targets is None else [int(t) for t in targets]
        if not self.targets or any(not 0 <= t < len(SOURCES) for t in self.targets):
            raise ValueError(f"targets must be indices into SOURCES (0-{len(SOURCES) - 1}), got {targets!r}.")
        self.zero_mean = zero_mean

    def estimate(self, model: nn.Module, mixture: torch.Tensor) -> torch.Tensor:
        """``(batch, channel, time)`` -> ``(batch, len(targets), channel, time)``."""
        return model(mixture)

    def __call__(self, model: nn.Module, mixture: torch.Tensor, stems: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        estimates = self.estimate(model, mixture)
        loss = si_snr_loss(estimates.float(), stems[:, self.targets], zero_mean=self.zero_mean)
        return loss, {}


@dataclass
class TrainerConfig:
    """The settings of a run: saved in every checkpoint and compared when a run resumes.

    Attributes:
        batch_size: examples per step (the global batch: under ``torch.distributed`` each
            of the W processes takes ``batch_size / W`` of them).
        optimizer: ``"adam"``, ``"adamw"``, ``"radam"`` or ``"ranger"`` (RAdam + Lookahead,
            the paper's), see :func:`~metalearn_sep.optim.build_optimizer`.
        lr, weight_decay: the optimiser's learning rate and weight decay.
        schedule: ``"constant"``, ``"cosine"``, ``"sgdr"`` or ``"wsd"`` with ``warmup_steps``,
            ``schedule_period`` and ``schedule_decay``, see :func:`~metalearn_sep.optim.build_schedule`.
        clip_grad: the global L2 norm gradients are clipped to; ``None`` for no clipping.
        valid_every: validate every this many steps (0: never).
        checkpoint_every: save every this many steps (0: only at the end of :meth:`Trainer.fit`).
        seed: seeds the model's random numbers and the batch order.
        num_workers: DataLoader worker processes (may change when a run resumes: it does
            not change what is computed).
        extra: free-form, JSON-safe; a recipe run keeps its recipe in ``extra["recipe"]``.
    """

    batch_size: int = 8
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    schedule_period: int = 0
    schedule_decay: float = 0.85
    clip_grad: float | None = 5.0
    valid_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0
    num_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


MAY_CHANGE_ON_RESUME = ("num_workers", "extra")
"""The :class:`TrainerConfig` fields a resumed run may change (they do not change what is computed)."""


class StepBatchSampler(Sampler[list[int]]):
    """Batches whose content is a function of (seed, step) only, so training resumes exactly.

    Epoch ``e`` is a permutation of the dataset drawn from a generator seeded with
    ``(seed, e)``; global batch ``k`` is the k-th slice of the epoch sequence; under
    ``torch.distributed`` each rank takes every ``world``-th item of it.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int, stop_step: int, rank: int = 0, world: int = 1) -> None:
        if size < batch_size:
            raise ValueError(f"The training set has {size} items, fewer than one batch of {batch_size}.")
        check_split(batch_size, world)
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.stop, self.rank, self.world = start_step, stop_step, rank, world
        self.per_epoch = size // batch_size

    def _epoch(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=gen)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, order = -1, None
        for step in range(self.start, self.stop):
            if step // self.per_epoch != epoch:
                epoch = step // self.per_epoch
                order = self._epoch(epoch)
            first = (step % self.per_epoch) * self.batch_size
            batch = order[first : first + self.batch_size]
            yield batch[self.rank :: self.world].tolist()

    def __len__(self) -> int:
        return self.stop - self.start


def check_split(batch_size: int, world: int) -> None:
    """Refuse a global batch that ``world`` processes cannot share equally (one sentence saying what would)."""
    if batch_size % world == 0:
        return
    divisors = [d for d in range(1, min(batch_size, world) + 1) if batch_size % d == 0]
    raise ValueError(
        f"{world} processes cannot share a batch of {batch_size} examples equally: start torchrun with "
        f"--nproc-per-node {max(divisors)} (or another divisor of {batch_size}), or make batch_size a multiple of {world}."
    )


def _floats(logs: dict[str, Any]) -> dict[str, float]:
    """An objective's logs as Python floats, tensors copied to the host in one transfer (one wait for the GPU)."""
    tensors = {k: v for k, v in logs.items() if isinstance(v, torch.Tensor)}
    floats = {k: float(v) for k, v in logs.items() if k not in tensors}
    if tensors:
        values = torch.stack([v.detach().float().reshape(()) for v in tensors.values()]).tolist()
        floats.update(zip(tensors, values))
    return floats


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset,
    objective: SeparationObjective | None = None,
    batch_size: int = 4,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """SI-SDR improvement (dB) per source on every item of ``data``, and their mean.

    Silent references are skipped (see :func:`metalearn_sep.metrics.si_sdr_improvement`).
    Under ``torch.distributed`` each rank evaluates its share and the sums are reduced.

    Returns:
        ``{"drums": ..., "bass": ..., ..., "mean": ...}`` for the objective's targets.
    """
    objective = objective or SeparationObjective()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    indices = list(range(rank, len(data), world))
    loader = DataLoader(torch.utils.data.Subset(data, indices), batch_size=batch_size, generator=torch.Generator())
    was_training = model.training
    model.eval()
    n = len(objective.targets)
    sums, counts = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    for mixture, stems in loader:
        mixture, stems = mixture.to(device), stems[:, objective.targets].to(device)
        estimates = objective.estimate(model, mixture).float()
        gain = si_sdr_improvement(estimates, stems, mixture).double().cpu()
        sums += torch.nan_to_num(gain).sum(0)
        counts += (~gain.isnan()).sum(0)
    model.train(was_training)
    if world > 1:
        both = torch.stack([sums, counts])
        dist.all_reduce(both)
        sums, counts = both
    per_source = (sums / counts).tolist()
    result = {SOURCES[t]: v for t, v in zip(objective.targets, per_source)}
    result["mean"] = float(np.nanmean(per_source))
    return result


class Trainer:
    """Trains a separation model; one instance per run.

    Args:
        model: any ``nn.Module`` the objective knows how to call.
        train_data: a dataset of ``(mixture (channel, time), stems (4, channel, time))``.
        valid_data: the same format; evaluated every ``config.valid_every`` steps.
        config: the run's settings (:class:`TrainerConfig`; default its defaults).
        objective: default :class:`SeparationObjective` (negative SI-SNR).
        checkpoint: file for checkpoints (written atomically); ``None`` for none.
        device: default the best available (cuda, mps, cpu).
        amp: bf16 autocast; default (``None``) on for a CUDA GPU with native bf16, off elsewhere
            (:func:`~metalearn_sep.precision.resolve_amp`; ``True`` on the CPU is allowed, for tests).
        compile: wrap the model in ``torch.compile`` (feed crops of one length, or it recompiles).
        progress: show a tqdm bar.

    Usage::

        config = TrainerConfig(lr=1e-3, valid_every=200)
        trainer = Trainer(model, train, valid, config, checkpoint="runs/a.pt")
        history = trainer.fit(steps=2000)
        trainer = Trainer.resume("runs/a.pt", model, train, valid)   # continues exactly
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        valid_data: Dataset | None = None,
        config: TrainerConfig | None = None,
        *,
        objective: SeparationObjective | Callable | None = None,
        checkpoint: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        amp: bool | None = None,
        compile: bool = False,
        progress: bool = True,
    ) -> None:
        self.config = copy.deepcopy(config) if config is not None else TrainerConfig()
        self.device = torch.device(device) if device is not None else default_device()
        self.amp = resolve_amp(self.device, amp)
        configure_backends(self.device)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        check_split(self.config.batch_size, self.world)
        self.model = model.to(self.device)
        self.train_data, self.valid_data = train_data, valid_data
        self.objective = objective or SeparationObjective()
        c = self.config
        self.optimizer = build_optimizer(self.model.parameters(), c.optimizer, lr=c.lr, weight_decay=c.weight_decay)
        self.scheduler = build_schedule(self.optimizer, c.schedule, warmup_steps=c.warmup_steps, period=c.schedule_period, decay=c.schedule_decay)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.progress = progress and self.rank == 0
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, float]] = []
        torch.manual_seed(c.seed)
        self._forward_model = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # static_graph: the same parameters take part in every step, and some never do (Meta-TasNet's last
            # TCN block has a residual conv whose output is unused, as in the original), which plain DDP refuses.
            self._forward_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids, static_graph=True)
        if compile:
            self._forward_model = torch.compile(self._forward_model)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        return {
            **model_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "trainer": asdict(self.config),
            "step": self.step,
            "elapsed": self.elapsed,
            "history": self.history,
            "rng": _rng_state(),
        }

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write a checkpoint atomically (rank 0 only); returns its path."""
        path = Path(path) if path is not None else self.checkpoint
        if path is None:
            raise ValueError("No checkpoint path: pass one to save() or checkpoint= to the Trainer.")
        if self.rank == 0:
            save_checkpoint(self.state_dict(), path)
        return path

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state (model weights are loaded by :func:`load_checkpoint`)."""
        saved = dict(state["trainer"])
        mine = asdict(self.config)
        diff = sorted(k for k in mine if k not in MAY_CHANGE_ON_RESUME and saved.get(k, mine[k]) != mine[k])
        if diff:
            parts = ", ".join(f"{k}={saved.get(k)!r} (checkpoint) vs {mine[k]!r} (now)" for k in diff)
            raise ValueError(f"The checkpoint was written by a run with other training settings: {parts}.")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.history = list(state["history"])
        _set_rng_state(state["rng"])

    @classmethod
    def resume(cls, path: str | os.PathLike, model: nn.Module, train_data: Dataset, valid_data: Dataset | None = None,
               config: TrainerConfig | None = None, **options: Any) -> Trainer:
        """A Trainer that continues the run saved at ``path`` exactly (same settings, same model configuration).

        ``config`` defaults to the checkpoint's settings (a different one is refused, naming
        what differs); ``options`` are the constructor's keyword arguments (``checkpoint``
        defaults to ``path``).
        """
        state = load_checkpoint(path, model)
        saved = {k: v for k, v in state["trainer"].items() if k in TrainerConfig.__dataclass_fields__}
        options.setdefault("checkpoint", path)
        trainer = cls(model, train_data, valid_data, config if config is not None else TrainerConfig(**saved), **options)
        trainer.load_state_dict(state)
        return trainer

    # ---------------------------------------------------------------- the loop
    def _batches(self, stop: int) -> DataLoader:
        sampler = StepBatchSampler(len(self.train_data), self.config.batch_size, self.config.seed, self.step, stop, self.rank, self.world)
        # The loader's own generator keeps it from drawing on the global RNG (which the
        # model's dropout uses), so a resumed run sees the same random numbers.
        gen = torch.Generator().manual_seed(self.config.seed + self.step)
        return DataLoader(
            self.train_data, batch_sampler=sampler, num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda", generator=gen,
        )

    def train_step(self, mixture: torch.Tensor, stems: torch.Tensor) -> dict[str, float]:
        """One optimisation step on one batch; returns the logged values."""
        self.model.train()
        mixture, stems = mixture.to(self.device, non_blocking=True), stems.to(self.device, non_blocking=True)
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                loss, logs = self.objective(self._forward_model, mixture, stems)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"The loss became {value} at step {self.step}; lower the learning rate or check the data.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        except torch.OutOfMemoryError:
            loss = logs = None  # free the step's activations before measuring what would fit
            raise MemoryError(out_of_memory_message(self._forward_model, self.objective, mixture, self.config.optimizer,
                                                    self.device, self.world)) from None
        record = {"step": self.step + 1, "loss": value, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.config.clip_grad:
            record["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        record.update(_floats(logs))
        return record

    def validate(self) -> dict[str, float]:
        """SI-SDR improvement per source on the validation set (see :func:`evaluate`)."""
        if self.valid_data is None:
            raise ValueError("This Trainer has no validation data.")
        return evaluate(self._forward_model, self.valid_data, self.objective, batch_size=self.config.batch_size, device=self.device)

    def fit(self, steps: int) -> list[dict[str, float]]:
        """Train until ``steps`` steps in total have been taken (a resumed run continues to the same total).

        Returns the history: one dict per step (step, loss, lr, grad_norm, seconds of
        training so far, data loading included, validation excluded, ...) and, every
        ``valid_every`` steps, ``valid_<source>`` and ``valid_mean`` SI-SDR improvements.
        """
        if steps < self.step:
            raise ValueError(f"This run is already at step {self.step}; fit(steps) takes the total number of steps.")
        bar = progress_bar(total=steps, initial=self.step, unit="step", enabled=self.progress)
        tick = time.perf_counter()
        try:
            for mixture, stems in self._batches(steps):
                record = self.train_step(mixture, stems)
                self.elapsed += time.perf_counter() - tick
                record["seconds"] = self.elapsed
                if self.world > 1:
                    loss = torch.tensor([record["loss"]], device=self.device)
                    dist.all_reduce(loss)
                    record["loss"] = loss.item() / self.world
                every = self.config.valid_every
                if self.valid_data is not None and every and (self.step % every == 0 or self.step == steps):
                    record.update({f"valid_{k}": v for k, v in self.validate().items()})
                self.history.append(record)
                bar.update(1)
                bar.set_postfix({k: f"{record[k]:.2f}" for k in ("loss", "valid_mean") if k in record}, refresh=False)
                if self.checkpoint is not None and self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                    self.save()
                tick = time.perf_counter()
        finally:
            bar.close()
        if self.checkpoint is not None:
            self.save()
        return self.history
