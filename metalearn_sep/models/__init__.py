"""The course's models: Conv-TasNet (chapter 01) and Meta-TasNet (chapters 02-05)."""

from .conv_tasnet import ConvTasNet
from .meta_tasnet import MetaTasNet

__all__ = ["ConvTasNet", "MetaTasNet"]
