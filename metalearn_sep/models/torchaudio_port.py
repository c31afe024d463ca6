"""torchaudio's Conv-TasNet in this package's layout: its configuration and its weights under our names.

torchaudio's ``ConvTasNet`` has ``encoder``, ``mask_generator`` (``input_norm``,
``input_conv``, ``conv_layers[i].conv_layers`` = 1x1 conv, PReLU, gLN, depthwise conv,
PReLU, gLN, then ``res_out`` and ``skip_out``, ``output_prelu``, ``output_conv``) and
``decoder``. It ties Sc to B, always uses gLN and is non-causal. Our
:class:`~metalearn_sep.models.conv_tasnet.ConvBlock` stores ``res_out`` and ``skip_out`` as one
1x1 conv ``output`` (residual channels first). :meth:`ConvTasNet.from_torchaudio
<metalearn_sep.models.conv_tasnet.ConvTasNet.from_torchaudio>` builds a model from these two.
"""

from __future__ import annotations

from typing import Any

import torch
import torchaudio

BLOCK_PARTS = ("conv_in", "prelu_in", "norm_in", "depthwise", "prelu_depthwise", "norm_depthwise")
"""Our names for the six layers of torchaudio's ``conv_layers[i].conv_layers``, in order."""


def torchaudio_config(model: torchaudio.models.ConvTasNet) -> dict[str, Any]:
    """``model``'s ConvTasNet arguments (num_sources, N, L, B, H, Sc, P, X, R, norm, mask), read off its modules.

    X is the distance between the dilations' restarts at 1 and R the number of restarts.

    Raises:
        ValueError: for anything but a ``torchaudio.models.ConvTasNet``, or one whose
            dilations or paddings are not ``1, 2, ..., 2^(X-1)`` R times with "same" padding.
    """
    if not isinstance(model, torchaudio.models.ConvTasNet):
        raise ValueError(f"from_torchaudio expects a torchaudio.models.ConvTasNet, got {type(model).__name__}.")
    generator = model.mask_generator
    first = generator.conv_layers[0].conv_layers
    depthwise = [layer.conv_layers[3] for layer in generator.conv_layers]
    dilations = [conv.dilation[0] for conv in depthwise]
    X = dilations.index(1, 1) if dilations.count(1) > 1 else len(dilations)
    R = len(dilations) // X
    P = first[3].kernel_size[0]
    paddings = [conv.padding[0] for conv in depthwise]
    if dilations != [2**i for i in range(X)] * R or paddings != [d * (P - 1) // 2 for d in dilations]:
        raise ValueError(f"Unexpected torchaudio mask generator: dilations {dilations}, kernel size {P}.")
    activations = {torch.nn.Sigmoid: "sigmoid", torch.nn.ReLU: "relu"}
    return {
        "num_sources": model.num_sources,
        "N": model.enc_num_feats,
        "L": model.enc_kernel_size,
        "B": generator.input_conv.out_channels,
        "H": first[0].out_channels,
        "Sc": generator.output_conv.in_channels,
        "P": P,
        "X": X,
        "R": R,
        "norm": "gLN",
        "mask": activations[type(generator.mask_activate)],
    }


def torchaudio_state(model: torchaudio.models.ConvTasNet) -> dict[str, torch.Tensor]:
    """``model``'s weights (detached) under our state-dict names, for a ConvTasNet built from :func:`torchaudio_config`."""
    generator = model.mask_generator
    state = {
        "encoder.conv.weight": model.encoder.weight,
        "decoder.conv_transpose.weight": model.decoder.weight,
        "mask_network.output_prelu.weight": generator.output_prelu.weight,
    }
    for name in ("weight", "bias"):
        state[f"mask_network.input_norm.{name}"] = getattr(generator.input_norm, name)
        state[f"mask_network.bottleneck.{name}"] = getattr(generator.input_conv, name)
        state[f"mask_network.mask_conv.{name}"] = getattr(generator.output_conv, name)
    for i, layer in enumerate(generator.conv_layers):
        prefix = f"mask_network.blocks.{i}"
        for part, module in zip(BLOCK_PARTS, layer.conv_layers):
            for name, tensor in module.named_parameters():
                state[f"{prefix}.{part}.{name}"] = tensor
        outputs = ([] if layer.res_out is None else [layer.res_out]) + [layer.skip_out]
        state[f"{prefix}.output.weight"] = torch.cat([conv.weight for conv in outputs])
        state[f"{prefix}.output.bias"] = torch.cat([conv.bias for conv in outputs])
    return {name: tensor.detach() for name, tensor in state.items()}
