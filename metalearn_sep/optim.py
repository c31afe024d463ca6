"""Optimisers and learning-rate schedules of the course's :class:`~metalearn_sep.train.Trainer`.

* ``adam`` / ``adamw``: Conv-TasNet's recipe (Adam, lr 1e-3, clipping at 5).
* ``radam``: RAdam (Liu et al., "On the variance of the adaptive learning rate and
  beyond", ICLR 2020) with decoupled weight decay.
* ``ranger``: Meta-TasNet's optimiser (Samuel, Ganeshan & Naradowsky, ICASSP 2020, and
  their released code), RAdam + :class:`Lookahead` (k = 6, α = 0.5), betas (0.95, 0.999),
  eps 1e-5, decoupled weight decay.
* schedules: ``constant``, ``cosine`` (one cosine decay over ``period`` steps), ``sgdr``
  (cosine annealing with warm restarts every ``period`` steps, each restart's peak
  multiplied by ``decay``; Loshchilov & Hutter, "SGDR: stochastic gradient descent with
  warm restarts", ICLR 2017) and ``wsd`` (warmup-stable-decay, Hu et al., "MiniCPM", 2024:
  the full rate, then a linear decay to zero over the last fraction ``decay`` of
  ``period`` steps), each with an optional linear warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class Lookahead(Optimizer):
    """Lookahead (Zhang, Lucas, Hinton & Ba, "Lookahead optimizer: k steps forward, 1 step back", NeurIPS 2019) around any optimiser.

    The inner optimiser takes ``k`` fast steps; then the slow weights φ move a fraction
    α towards the fast weights θ (φ ← φ + α(θ − φ)) and θ restarts from φ.

    Args:
        base: the inner optimiser (it keeps the parameter groups, so LR schedules work).
        k: fast steps between synchronisations.
        alpha: α, the slow weights' step size.
    """

    def __init__(self, base: Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        if k < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead needs k >= 1 and 0 < alpha <= 1, got k={k}, alpha={alpha}.")
        super().__init__([p for g in base.param_groups for p in g["params"]], {})
        self.base, self.k, self.alpha = base, k, alpha
        self.param_groups = base.param_groups
        self.slow = [p.detach().clone() for p in self._params()]
        self.fast_steps = 0

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        loss = self.base.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            for p, slow in zip(self._params(), self.slow):
                slow.add_(p - slow, alpha=self.alpha)
                p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict(), "slow": [s.clone() for s in self.slow], "fast_steps": self.fast_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups  # the inner optimiser made new group dicts
        for slow, saved in zip(self.slow, state_dict["slow"]):
            slow.copy_(saved)
        self.fast_steps = int(state_dict["fast_steps"])


OPTIMIZERS = ("adam", "adamw", "radam", "ranger")
SCHEDULES = ("constant", "cosine", "sgdr", "wsd")


def build_optimizer(params: Iterable[torch.Tensor], name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0) -> Optimizer:
    """One of :data:`OPTIMIZERS` over ``params``.

    Adam and AdamW use PyTorch's fused kernel when every parameter is on the CPU or a CUDA
    device: the same update in one pass over all tensors, against one pass per operation of
    the default, several times faster for chapter 01's cpu model on one core (the timing is
    in ``benchmarks/RESULTS.md``).
    """
    params = [p for p in params if p.requires_grad]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True)
    if name == "ranger":
        inner = torch.optim.RAdam(params, lr=lr, betas=(0.95, 0.999), eps=1e-5, weight_decay=weight_decay, decoupled_weight_decay=True)
        return Lookahead(inner, k=6, alpha=0.5)
    raise ValueError(f"Unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}.")


def schedule_factor(step: int, name: str = "constant", warmup_steps: int = 0, period: int = 0, decay: float = 0.85) -> float:
    """The multiplier of the base learning rate at ``step`` (0-based)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if name == "constant":
        return warm
    if name == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, period) / period))
    if name == "sgdr":
        restart, within = divmod(step, period)
        return warm * decay**restart * 0.5 * (1 + math.cos(math.pi * within / period))
    if name == "wsd":
        return warm * min(1.0, max(0.0, (period - step) / (decay * period)))
    raise ValueError(f"Unknown schedule {name!r}: expected one of {', '.join(SCHEDULES)}.")


def build_schedule(optimizer: Optimizer, name: str = "constant", warmup_steps: int = 0, period: int = 0, decay: float = 0.85) -> LambdaLR:
    """A per-step LR schedule (call ``.step()`` after every optimiser step)."""
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}: expected one of {', '.join(SCHEDULES)}.")
    if name != "constant" and period <= 0:
        raise ValueError(f"The {name} schedule needs a positive period (steps), got {period}.")
    if name == "wsd" and not 0 < decay <= 1:
        raise ValueError(f"The wsd schedule decays over a fraction of its period in (0, 1], got {decay}.")
    return LambdaLR(optimizer, lambda step: schedule_factor(step, name, warmup_steps, period, decay))
