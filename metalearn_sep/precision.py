"""The arithmetic a run uses, chosen by what the device can do.

* **bf16 autocast where the GPU has bf16** (Ampere and later: A100, H100, RTX 30xx+), fp32
  elsewhere (a T4 or V100). Never fp16 by default: its 5-bit exponent needs loss scaling, and
  asteroid's Conv-TasNet lost about 1.6 dB SI-SNRi trained in fp16 (their reported results),
  while bf16 keeps fp32's range. ``torch.cuda.is_bf16_supported()`` answers True on a T4 by
  default, counting software emulation, which is slower than fp32; :func:`has_bf16` asks for
  the hardware.
* **fp32 islands** (:func:`full_precision`): sums over a whole signal (SI-SDR's energies,
  the resampling filters, the losses' logs) lose digits in bf16's 8-bit mantissa, so they
  are computed with autocast switched off, on inputs cast to float32.
* **TF32 matmuls and convolutions on Ampere and later** and cuDNN's autotuner for fixed
  shapes (:func:`configure_backends`): a training run feeds crops of one length, so the
  autotuner's first-step search pays for itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AUTOCAST_DEVICES = ("cuda", "cpu")
"""Device types with a bf16 autocast; elsewhere (mps, the meta device) a run is fp32 and islands are no-ops."""


def has_bf16(device: torch.device | str) -> bool:
    """True when ``device`` computes in bf16 natively: a CUDA GPU of compute capability 8.0 or later, or any CPU.

    A CPU without bf16 instructions still runs bf16 correctly (slowly), so it counts, for tests
    and for the opt-in ``--precision bf16``.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return True
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_amp(device: torch.device | str, amp: bool | None) -> bool:
    """Whether a training run on ``device`` uses bf16 autocast: ``amp``, or by capability when ``None``.

    ``None`` gives bf16 on a CUDA GPU with native bf16 and fp32 everywhere else (the CPU
    included: there bf16 is an opt-in, since its speed depends on the processor).

    Raises:
        ValueError: ``amp=True`` on a device without bf16 (a T4, a V100, mps).
    """
    device = torch.device(device)
    if amp is None:
        return device.type == "cuda" and has_bf16(device)
    if amp and not has_bf16(device):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" and torch.cuda.is_available() else str(device)
        raise ValueError(f"bf16 was asked for, but {name} has no native bf16 (compute capability 8.0 or later); "
                         "train in fp32 (amp=False, --precision fp32).")
    return bool(amp)


@contextlib.contextmanager
def full_precision(device: torch.device | str) -> Iterator[None]:
    """A region where autocast is off on ``device``'s type: cast its inputs with ``.float()`` inside."""
    kind = torch.device(device).type
    if kind not in AUTOCAST_DEVICES:
        yield
        return
    with torch.autocast(kind, enabled=False):
        yield


def configure_backends(device: torch.device | str, fixed_shapes: bool = True) -> None:
    """TF32 matmuls and convolutions, and cuDNN's autotuner when every batch has one shape (CUDA only).

    TF32 keeps fp32's range with a 10-bit mantissa in the tensor cores of Ampere and later
    GPUs; it changes nothing elsewhere. Process-wide settings: they apply to every model
    of this process.
    """
    if torch.device(device).type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = fixed_shapes
