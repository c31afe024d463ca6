"""A tiny Meta-TasNet and seeded noise, shared by the separation tests."""

from __future__ import annotations

import torch

from metalearn_sep.models.meta_tasnet import MetaTasNet

TINY = dict(N=40, B=16, H=16, X=2, R=1, spec_channels=16)
"""A 3-stage Meta-TasNet of a few thousand parameters (the released layout, narrow and shallow)."""


def tiny_model(seed: int = 0) -> MetaTasNet:
    """:data:`TINY`, initialised after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return MetaTasNet(**TINY)


def noise(channels: int, samples: int, seed: int = 0) -> torch.Tensor:
    """Seeded white noise ``(channels, samples)``."""
    return torch.randn(channels, samples, generator=torch.Generator().manual_seed(seed))
