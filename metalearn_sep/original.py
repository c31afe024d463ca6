"""The original Meta-TasNet code's checkpoints, mapped exactly onto :class:`~metalearn_sep.models.MetaTasNet`.

The paper's authors (pfnet-research/meta-tasnet, MIT licence) released a MUSDB18-trained
``best_model.pt`` holding ``{"state_dict": ..., "args": argparse.Namespace}``: the weights of
their ``MultiTasNet`` and the ``train.py`` arguments that built it. The architecture is the
course's (chapters 02-05 rebuild it); only the names and a few layouts differ. This module
turns such a state dict into ours, so that our model computes what the original computes
(``tests/test_original.py`` compares every stage's output with the original's on recorded
inputs, to 1e-5). Reading the file safely is :func:`metalearn_sep.checkpoint.load_original`.

Configuration (:func:`config_from_args`): the original's ``args`` name our constructor
arguments differently (:data:`ARGUMENTS`: ``layers`` is X, ``stack`` R, ``kernel`` P,
``num_mels`` spec_channels, ``W`` the stride, ``sampling_rate`` the base rate, ``stages_num``
the number of stages, ``independent_params`` the negation of ``generated``). Two arguments
have no counterpart and are refused unless off: ``residual_bias`` (biases on the residual
and skip convs) and ``dropout`` (a Dropout2d on the masking network's input during
training; the original's inference skips it, but training our model would not apply it).

What differs between the two layouts, component by component (for each of our keys,
:func:`original_key` gives the original's name; :func:`convert_state_dict` the value):

Encoder (``stages.s.encoder``):

* Names: ``convs`` are the original's ``filters``, ``fusion`` its ``bottleneck``, and in the
  spectrogram branch ``scale`` / ``shift`` / ``mel`` its ``affine_scale`` / ``affine_bias`` /
  ``mel_transform``.
* The order of the parallel filters' channels: the original stacks the ``filters`` outputs
  ``(batch, N/4, T')`` on a new axis and flattens it, so its channel ``c * filters + l`` is
  channel c of filter l (interleaved); ours concatenates them, so channel ``l * N/4 + c``.
  The input columns of the first fusion conv (``fusion.0.weight``, ``(N, filters N/4 +
  num_mels, 1)``) are permuted accordingly; the spectrogram's columns (the last num_mels)
  keep their place. Without this, stage outputs differ by as much as their own size.
* Spectrogram statistics: the original keeps the per-bin ``mean``, ``std``, ``affine_scale``
  and ``affine_bias`` as ``(1, F, 1)`` tensors (F = n_fft/2 + 1); ours are ``(F,)``: a reshape.
  Its ``mean`` and ``std`` are frozen ``nn.Parameter`` s, ours buffers; both sit in the state dict.
* STFT windows: the original saves each stage's Hann window (``spectrogram.window``,
  ``(n_fft,)``) as a frozen parameter; ours is rebuilt from the configuration and not saved.
  The converter checks the saved one is that Hann window (:func:`check_windows`) and drops it.

Masking network (``stages.s.masker``, the original's ``stages.s.mask``):

* Names: the original numbers its layers (``norm_1``, ``prelu_1``, ``in_conv``, ``norm_2``,
  ``prelu_2``, ``tcn``, ``norm_3``, ``prelu_3``, ``mask_output``, ``norm_4``, ``prelu_4``;
  in a block ``conv1d``, ``prelu_1``, ``norm_1``, ``dconv1d``, ``prelu_2``, ``norm_2``,
  ``res_out``, ``skip_out``), ours names them by role (:data:`MASKER_LAYERS`,
  :data:`BLOCK_LAYERS`). The order of operations is the same.
* Generated layers: each generated conv or GroupNorm holds its two linear maps as
  ``bottleneck`` and ``kernel`` (conv) or ``affine`` (GroupNorm); ours as
  ``generator.bottleneck`` and ``generator.head``. The layouts agree, so renaming suffices:
  a conv's head output, per instrument, reshapes to ``(C_out, C_in / groups, kernel)`` in
  both, and a GroupNorm's head gives the C scales then the C shifts in both.
* Independent layers (``independent_params=True``): the original wraps an ``nn.Conv1d`` (as
  ``conv``) or an ``nn.GroupNorm`` (as ``group_norm``) whose weights are ours, with the same
  shapes: conv ``(4 C_out, C_in / groups, kernel)`` (instrument-major, one grouped conv with
  4 x groups groups), GroupNorm ``(4 C,)``. So ``x.conv.weight`` is our ``x.weight`` and
  ``x.group_norm.weight`` / ``.bias`` our ``x.weight`` / ``.bias``.
* Embedding: the original's ``instrument_embedding`` (``(4, E1)``, generated mode only) is
  our ``embedding``.

Decoder (``stages.s.decoder``): ``bottleneck.0`` is our ``expand.0`` and ``filters`` our
``convs``; the channel slices are taken in the same order (N/2, N/4, N/8), so nothing else
changes.

Beyond these, the two compute the same thing in the same order (GroupNorm eps 1e-8, the
STFT, log10(power + 1e-8), the interpolation, the softmax over instruments, the separated
latents handed to the next stage). The one numerical trace of the layouts is the filter
order: our first fusion conv sums its inputs in another order, so the latents differ by
float32 rounding, which the later stages carry on (the log-power of nearly silent STFT
bins makes the test inputs sensitive: a float64 run differs from either by up to 2e-3).
On the recorded inputs the stage outputs agree within 6e-6, and bit for bit when our
encoder is fed the original's channel order instead (same torch, same thread count).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

import torch

from .checks import is_int
from .models import MetaTasNet

ARGUMENTS: dict[str, str] = {
    "stages_num": "stages", "N": "N", "L": "L", "W": "stride", "B": "B", "H": "H",
    "layers": "X", "stack": "R", "kernel": "P", "E_1": "E1", "E_2": "E2", "filters": "filters",
    "num_mels": "spec_channels", "sampling_rate": "base_rate",
}
"""The original's integer ``args`` -> :class:`MetaTasNet`'s argument (``independent_params`` aside)."""

UNMODELLED: dict[str, object] = {"residual_bias": False, "dropout": 0.0}
"""Original arguments our model has no counterpart for, with the only value it can honour."""

ENCODER_LAYERS: dict[str, str] = {
    "convs": "filters", "fusion": "bottleneck", "spectrogram.scale": "spectrogram.affine_scale",
    "spectrogram.shift": "spectrogram.affine_bias", "spectrogram.mel": "spectrogram.mel_transform",
}
"""Our :class:`~metalearn_sep.models.enhanced.EnhancedEncoder`'s names -> the original's (others equal)."""

DECODER_LAYERS: dict[str, str] = {"expand": "bottleneck", "convs": "filters"}
"""Our :class:`~metalearn_sep.models.enhanced.EnhancedDecoder`'s names -> the original's."""

MASKER_LAYERS: dict[str, str] = {
    "input_prelu": "prelu_1", "input_norm": "norm_1", "input_conv": "in_conv",
    "bottleneck_prelu": "prelu_2", "bottleneck_norm": "norm_2", "blocks": "tcn",
    "skip_prelu": "prelu_3", "skip_norm": "norm_3", "mask_conv": "mask_output",
    "mask_prelu": "prelu_4", "mask_norm": "norm_4",
}
"""Our :class:`~metalearn_sep.models.meta_tasnet.MaskingTCN`'s layer names -> the original ``MaskingModule``'s."""

BLOCK_LAYERS: dict[str, str] = {
    "conv_in": "conv1d", "prelu_in": "prelu_1", "norm_in": "norm_1", "depthwise": "dconv1d",
    "prelu_depthwise": "prelu_2", "norm_depthwise": "norm_2", "residual": "res_out", "skip": "skip_out",
}
"""Our :class:`~metalearn_sep.models.meta_tasnet.TCNBlock`'s layer names -> the original ``TCNLayer``'s."""

PER_BIN = ("spectrogram.mean", "spectrogram.std", "spectrogram.scale", "spectrogram.shift")
"""Our spectrogram vectors ``(F,)`` that the original stores as ``(1, F, 1)``."""


def is_original_layout(state: object) -> bool:
    """Whether a loaded checkpoint is the original code's: a dict with ``state_dict`` and ``args``, no course ``format``."""
    return isinstance(state, dict) and "state_dict" in state and "args" in state and "format" not in state


def config_from_args(args: argparse.Namespace | Mapping[str, Any], source: str = "The original checkpoint") -> dict[str, Any]:
    """:class:`MetaTasNet`'s arguments for the original's ``args``; ``ValueError`` naming a bad or missing key.

    Every key of :data:`ARGUMENTS` must be a positive integer and ``independent_params`` a
    bool; ``residual_bias`` and ``dropout``, absent or off, are accepted, refused otherwise
    (our model has neither). The original's loss weights and training settings are ignored.
    Messages start with ``source``.
    """
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    if not isinstance(values, Mapping):
        raise ValueError(f"{source}'s args must be an argparse.Namespace or a dict, got {type(args).__name__}.")
    config: dict[str, Any] = {}
    for key, ours in ARGUMENTS.items():
        if key not in values:
            raise ValueError(f"{source}'s args lack {key!r}, which sets {ours}.")
        if not is_int(values[key], 1):
            raise ValueError(f"{source}'s args.{key} must be a positive integer, got {values[key]!r}.")
        config[ours] = int(values[key])
    independent = values.get("independent_params")
    if not isinstance(independent, bool):
        raise ValueError(f"{source}'s args.independent_params must be True or False, got {independent!r}.")
    for key, usable in UNMODELLED.items():
        if values.get(key, usable) != usable:
            raise ValueError(
                f"{source}'s args.{key}={values[key]!r} is not supported: "
                f"metalearn_sep's MetaTasNet models only {key}={usable!r}."
            )
    return {**config, "generated": not independent}


def layer_parameter(layer: str, parameter: str) -> str:
    """The original's name, inside a masking-network layer called ``layer`` by us, of our ``parameter``."""
    if "prelu" in layer:
        return parameter
    norm = "norm" in layer
    if parameter.startswith("generator.bottleneck."):
        return parameter.removeprefix("generator.")
    if parameter.startswith("generator.head."):
        return ("affine." if norm else "kernel.") + parameter.removeprefix("generator.head.")
    return ("group_norm." if norm else "conv.") + parameter


def rename(path: str, table: Mapping[str, str]) -> str:
    """``path`` with its leading module name replaced through ``table`` (the longest match; unchanged if none)."""
    for ours in sorted(table, key=len, reverse=True):
        if path == ours or path.startswith(ours + "."):
            return table[ours] + path[len(ours):]
    return path


def original_key(key: str) -> str:
    """The original code's state-dict key for our ``key`` (e.g. ``stages.0.masker.input_norm.generator.head.weight``
    -> ``stages.0.mask.norm_1.affine.weight``)."""
    match = re.fullmatch(r"(stages\.\d+)\.(embedding|encoder|decoder|masker)\.(.+)", key)
    if match is None:
        raise ValueError(f"{key!r} is not a key of a MetaTasNet stage.")
    stage, part, rest = match.groups()
    if part == "embedding":
        return f"{stage}.instrument_embedding.{rest}"
    if part == "encoder":
        return f"{stage}.encoder.{rename(rest, ENCODER_LAYERS)}"
    if part == "decoder":
        return f"{stage}.decoder.{rename(rest, DECODER_LAYERS)}"
    block = re.fullmatch(r"blocks\.(\d+)\.(\w+)\.(.+)", rest)
    if block is not None:
        index, layer, parameter = block.groups()
        return f"{stage}.mask.{MASKER_LAYERS['blocks']}.{index}.{BLOCK_LAYERS[layer]}.{layer_parameter(layer, parameter)}"
    layer, parameter = rest.split(".", 1)
    return f"{stage}.mask.{MASKER_LAYERS[layer]}.{layer_parameter(layer, parameter)}"


def original_shape(key: str, shape: torch.Size) -> tuple[int, ...]:
    """The shape the original stores our ``key`` (of our ``shape``) in: ``(1, F, 1)`` for the per-bin vectors."""
    if key.endswith(PER_BIN):
        return (1, shape[0], 1)
    return tuple(shape)


def window_keys(model: MetaTasNet) -> dict[str, int]:
    """The original's saved STFT windows this model's stages imply: key -> n_fft."""
    return {
        f"stages.{s}.encoder.spectrogram.window": stage.encoder.spectrogram.n_fft
        for s, stage in enumerate(model.stages)
        if stage.encoder.spectrogram is not None
    }


def filter_order(channels: int, filters: int, device: torch.device) -> torch.Tensor:
    """Index ``(filters * channels,)``: our conv-branch channel ``l * channels + c`` is the original's ``c * filters + l``."""
    return torch.arange(channels * filters, device=device).view(channels, filters).T.reshape(-1)


def fusion_columns(weight: torch.Tensor, channels: int, filters: int) -> torch.Tensor:
    """The original's first fusion conv ``(N, filters * channels + num_mels, 1)`` with its columns in our order."""
    learned = filters * channels
    order = filter_order(channels, filters, weight.device)
    return torch.cat([weight[:, order], weight[:, learned:]], dim=1)


def describe(keys: list[str]) -> str:
    """``'a'`` or ``'a' (and 3 more)``, the first of the sorted keys."""
    keys = sorted(keys)
    more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
    return f"{keys[0]!r}{more}"


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: MetaTasNet, source: str = "The original state dict"
) -> dict[str, torch.Tensor]:
    """``model``'s state dict from the original code's ``state_dict`` for the same configuration.

    Every key ``model`` has must be present under its original name (:func:`original_key`)
    with the original's shape, and the original must hold nothing else but the STFT windows
    (whose values :func:`check_windows` checks); otherwise ``ValueError`` names the first
    missing, extra or mis-shaped key, mentioning ``source``. Works on ``meta`` tensors (shapes
    only). Values are reshaped or permuted as the module docstring lists, never copied
    otherwise.
    """
    ours = model.state_dict()
    names = {original_key(key): key for key in ours}
    shapes = {name: (n_fft,) for name, n_fft in window_keys(model).items()}
    shapes.update({name: original_shape(key, ours[key].shape) for name, key in names.items()})
    missing = [name for name in shapes if name not in state_dict]
    if missing:
        raise ValueError(f"{source} lacks {describe(missing)}, which the original Meta-TasNet of this configuration has.")
    extra = [name for name in state_dict if name not in shapes]
    if extra:
        raise ValueError(f"{source} has {describe(extra)}, which the original Meta-TasNet of this configuration does not.")
    for name, shape in shapes.items():
        value = state_dict[name]
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        if got != shape:
            raise ValueError(f"{source}'s {name!r} has shape {got}, but this configuration needs {shape}.")
    converted = {}
    for name, key in names.items():
        value = state_dict[name]
        if key.endswith(PER_BIN):
            value = value.reshape(ours[key].shape)
        elif key.endswith("encoder.fusion.0.weight"):
            encoder = model.stages[int(key.split(".")[1])].encoder
            value = fusion_columns(value, encoder.N // 4, encoder.config["filters"])
        converted[key] = value
    return converted


def check_windows(state_dict: Mapping[str, torch.Tensor], model: MetaTasNet, source: str = "The original state dict") -> None:
    """``ValueError`` unless every saved STFT window is the Hann window ``model`` rebuilds (to 1e-6).

    Ours is not saved but rebuilt from the configuration, so a checkpoint with another
    window could not be honoured.
    """
    for name, n_fft in window_keys(model).items():
        window = state_dict[name]
        if not torch.allclose(window.detach().cpu().float(), torch.hann_window(n_fft), rtol=0.0, atol=1e-6):
            raise ValueError(f"{source}'s {name!r} is not a Hann window of {n_fft} samples, the only STFT window MetaTasNet uses.")


def from_original(
    state_dict: Mapping[str, torch.Tensor], args: argparse.Namespace | Mapping[str, Any], source: str = "The original checkpoint"
) -> MetaTasNet:
    """A :class:`MetaTasNet` built from the original's ``args`` (:func:`config_from_args`) holding ``state_dict``.

    Raises ``ValueError`` (mentioning ``source``) for arguments our model cannot build or
    honour and for a state dict with a missing, extra or mis-shaped key.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{source}'s state_dict must be a dict of tensors, got {type(state_dict).__name__}.")
    config = config_from_args(args, source)
    try:
        model = MetaTasNet(**config)
    except ValueError as err:
        raise ValueError(f"{source}: its args do not build a MetaTasNet ({err})") from None
    converted = convert_state_dict(state_dict, model, source)
    check_windows(state_dict, model, source)
    model.load_state_dict(converted)
    return model
