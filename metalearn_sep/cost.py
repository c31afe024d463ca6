"""What one training step costs, measured on the CPU without computing anything, and what a GPU makes of it.

:func:`measure_step` builds the model and a batch on PyTorch's ``meta`` device (tensors with
shapes and no data), runs the objective forward and backward, and records

* ``flops``: the matmul and convolution FLOPs of forward + backward
  (``torch.utils.flop_counter.FlopCounterMode``; elementwise work is not counted);
* ``kernels``: the ATen operations dispatched, about one GPU kernel launch each;
* ``activation_bytes``: the bytes of the tensors autograd saves for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``), in float32: what grows with the batch.

A step of the paper's 45.5 M-parameter model (batch 12 x 8 s at 32 kHz) is counted in a few
seconds, and nothing is allocated.

:func:`estimate` turns a :class:`StepCost` into seconds and bytes on a GPU class
(:data:`GPUS`) with a roofline-style sum, every term an assumption stated here and checked by
``benchmarks/gpu_check.py`` on real hardware::

    seconds = flops / (peak x efficiency) + 3 x activation_bytes / bandwidth + kernels x launch
    bytes   = parameters x 4 x (2 + optimiser states) + activation_bytes + 2 x batch bytes + context

The middle term is the memory traffic of the elementwise layers (PReLU, GroupNorm, masks): each
saved activation is written once forward and read about twice backward. Peak memory is the
weights, their gradients and the optimiser's moments (Adam 2 per weight, Ranger 3: RAdam's two
and Lookahead's slow copy), plus the activations, plus the CUDA context. bf16 autocast stores
many activations in half the bytes; the float32 figure is the upper bound quoted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from . import SOURCES
from .checkpoint import model_config, unwrap_model

GIB = 2**30


@dataclass(frozen=True)
class StepCost:
    """One training step at one batch shape (see the module docstring for how each figure is measured).

    Attributes:
        flops: matmul + convolution FLOPs of forward and backward.
        kernels: ATen operations dispatched (about one kernel launch each on a GPU).
        activation_bytes: float32 bytes saved for the backward pass.
        parameters: trainable parameters.
        batch: examples in the step; ``input_bytes`` the float32 bytes of the batch (mixture + 4 stems).
    """

    flops: float
    kernels: int
    activation_bytes: int
    parameters: int
    batch: int
    input_bytes: int


@dataclass(frozen=True)
class GPU:
    """The throughput assumptions of one GPU class.

    Attributes:
        name: how tables call it.
        memory_gib: memory a process can use.
        tflops: the dense peak for the arithmetic a run uses there (fp32 on a T4, bf16 on Ampere and later).
        efficiency: share of that peak the masking networks' convolutions reach (1x1 convs are
            GEMMs; depthwise convs and short sequences are not).
        bandwidth_gbs: memory bandwidth, GB/s.
        launch_us: seconds per kernel launch, in microseconds.
        bf16: whether the course trains in bf16 there.
    """

    name: str
    memory_gib: float
    tflops: float
    efficiency: float
    bandwidth_gbs: float
    launch_us: float
    bf16: bool


GPUS: dict[str, GPU] = {
    "T4": GPU("T4 (16 GB, fp32)", 15.0, 8.1, 0.45, 320.0, 10.0, False),
    "A100": GPU("A100 (40 GB, bf16)", 39.5, 312.0, 0.15, 1555.0, 6.0, True),
    "H100": GPU("H100 (80 GB, bf16)", 79.0, 989.0, 0.10, 3350.0, 5.0, True),
}
"""Datasheet peaks (NVIDIA) with assumed efficiencies: 45 % of a T4's fp32 peak (the 1x1 convolutions
that dominate the FLOPs are GEMMs, but the T4 sustains less than its boost clock), 15 % and 10 % of
Ampere's and Hopper's bf16 peaks (the tensor cores idle on depthwise convolutions and
normalisations). The paper cannot calibrate them: 18.7 TFLOP per step (this module's count,
auxiliary losses included) times 312,500 steps in "about 2 days" on 2 V100s would be 17 TFLOP/s
per V100, above its 15.7 fp32 peak, so the anecdote (or the schedule it describes) is loose.
``benchmarks/gpu_check.py`` measures the real figures; until it has run on a class, its column
is an estimate."""

OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "radam": 2, "ranger": 3}
"""Float32 values an optimiser keeps per weight."""

CONTEXT_BYTES = int(0.5 * GIB)
"""The CUDA context, cuDNN workspaces and the allocator's slack, assumed."""


class _KernelCounter(TorchDispatchMode):
    """Counts the ATen operations that reach the backend (each is about one kernel launch)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]


def measure_step(build: Callable[[], nn.Module], objective: Objective, batch: int, channels: int, samples: int) -> StepCost:
    """The cost of one training step of ``build()`` on ``batch`` crops of ``channels`` x ``samples``, on the meta device.

    Args:
        build: makes the model (called under ``torch.device("meta")``: no memory is used).
        objective: ``objective(model, mixture (batch, C, T), stems (batch, 4, C, T)) -> (loss, logs)``,
            as :class:`~metalearn_sep.train.Trainer` calls it.
    """
    with torch.device("meta"):
        model = build()
        mixture = torch.zeros(batch, channels, samples)
        stems = torch.zeros(batch, len(SOURCES), channels, samples)
    parameters = {id(p) for p in model.parameters()}
    saved: dict[int, torch.Tensor] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in parameters:
            saved[id(tensor)] = tensor  # held, so no id is reused during the step
        return tensor

    flops, kernels = FlopCounterMode(display=False), _KernelCounter()
    with flops, kernels:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss, _ = objective(model, mixture, stems)
        loss.backward()
    activation = sum(t.numel() * 4 for t in saved.values() if t.is_floating_point())
    return StepCost(
        flops=float(flops.get_total_flops()),
        kernels=kernels.count,
        activation_bytes=int(activation),
        parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        batch=batch,
        input_bytes=(mixture.numel() + stems.numel()) * 4,
    )


@dataclass(frozen=True)
class Estimate:
    """A step on one GPU class: ``seconds`` per step and ``peak_bytes`` of memory."""

    seconds: float
    peak_bytes: int

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB


def estimate(cost: StepCost, gpu: GPU, optimizer: str = "adam") -> Estimate:
    """Seconds per step and peak memory of ``cost`` on ``gpu`` (the formula in the module docstring)."""
    compute = cost.flops / (gpu.tflops * 1e12 * gpu.efficiency)
    traffic = 3 * cost.activation_bytes / (gpu.bandwidth_gbs * 1e9)
    launches = cost.kernels * gpu.launch_us * 1e-6
    states = OPTIMIZER_STATES.get(optimizer, 2)
    peak = cost.parameters * 4 * (2 + states) + cost.activation_bytes + 2 * cost.input_bytes + CONTEXT_BYTES
    return Estimate(compute + traffic + launches, int(peak))


def largest_batch(cost: StepCost, memory_bytes: float, optimizer: str = "adam") -> int:
    """The largest batch whose estimated peak (:func:`estimate`) fits ``memory_bytes``, from a cost measured at any batch.

    Activations and inputs grow linearly with the batch; weights, gradients, optimiser
    states and the context do not. 0 when not even one example fits.
    """
    fixed = cost.parameters * 4 * (2 + OPTIMIZER_STATES.get(optimizer, 2)) + CONTEXT_BYTES
    per_example = (cost.activation_bytes + 2 * cost.input_bytes) / cost.batch
    return max(int((memory_bytes - fixed) // per_example), 0)


def out_of_memory_message(model: nn.Module, objective: Objective, mixture: torch.Tensor, optimizer: str,
                          device: torch.device, world: int = 1) -> str:
    """One sentence for a training step that ran out of GPU memory: the batch tried and the largest the estimate fits.

    The model is rebuilt from its configuration on the meta device and measured at the
    failing step's crop shape (``mixture``: this process's ``(batch, C, T)``).
    """
    plain = unwrap_model(model)
    batch, channels, samples = mixture.shape
    total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    what = f"{torch.cuda.get_device_name(device) if total else device} ran out of memory at a batch of {batch} crops of {samples} samples"
    what += f" per process ({batch * world} in all)" if world > 1 else ""
    config = model_config(plain)
    if total is None or not config:
        return f"{what}: lower training.batch_size or data.segment (benchmarks/plan_gpu.py estimates each setting's memory)."
    cost = measure_step(lambda: type(plain)(**config), objective, 1, channels, samples)
    fits = largest_batch(cost, 0.95 * total, optimizer)
    if fits < 1:
        return f"{what}; the estimate fits not even one such crop in {total / GIB:.0f} GiB: shorten data.segment or narrow the model."
    return (f"{what}; the estimate fits at most {fits} per process in {total / GIB:.0f} GiB: set training.batch_size to "
            f"{fits * world} or less (benchmarks/plan_gpu.py estimates each setting's memory).")


def gpu_class(device_name: str, bf16: bool) -> GPU:
    """The :data:`GPUS` entry a CUDA device belongs to: by name, else A100 for a GPU with bf16 and T4 without."""
    for key, gpu in GPUS.items():
        if key.lower() in device_name.lower():
            return gpu
    return GPUS["A100" if bf16 else "T4"]
