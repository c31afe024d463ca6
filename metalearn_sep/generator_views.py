"""Looking inside a trained generator: the weights it writes per instrument, and pictures of them.

Chapter 03 asks what the instrument embeddings ``e_i`` (rows of ``E``, ``(K, E1)``) and the
weights ``θ_i = W2 (W1 e_i + b1) + b2`` generated from them have learned. The arithmetic
(flattening every generated weight into one vector per instrument, principal directions) and
the figures live here so that the chapter's cells show only the question and the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from . import SOURCES
from .models.generator import GeneratedConv1d, IndependentConv1d, generated_weights
from .plots import InlineFigure, similarity_matrix


def weight_vectors(masker: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """``(K, P)``: every weight ``masker`` generates for the embeddings ``rows`` ``(K, E1)``, one row per instrument."""
    with torch.no_grad():
        return torch.cat([w.flatten(1) for w in generated_weights(masker, rows).values()], dim=1).cpu()


def conv_kernels(masker: nn.Module, rows: torch.Tensor | None = None) -> torch.Tensor:
    """``(K, P')``: the convolution kernels only (no GroupNorm affines), generated from ``rows`` or stored, per instrument.

    ``rows`` is needed for a generated masking network and ignored by independent (stored) copies,
    so the same call compares the two.
    """
    with torch.no_grad():
        convs = [m for m in masker.modules() if isinstance(m, (GeneratedConv1d, IndependentConv1d))]
        if not convs:
            raise ValueError(f"{type(masker).__name__} has no generated or independent convolution to compare.")
        return torch.cat([m.materialize(rows)[0].flatten(1) for m in convs], dim=1).cpu()


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """``(K, K)`` cosine similarities between the rows of ``vectors`` ``(K, D)``."""
    unit = F.normalize(vectors, dim=1)
    return unit @ unit.T


def similarity_figure(embeddings: torch.Tensor, generated: torch.Tensor, independent: torch.Tensor,
                      names: Sequence[str] = SOURCES) -> Figure:
    """Four heat maps: the embeddings' cosines and distances, the generated and the independent kernels' cosines.

    Args:
        embeddings: ``(K, E1)`` learned instrument embeddings.
        generated: ``(K, P')`` kernels generated from them (:func:`conv_kernels`).
        independent: ``(K, P')`` kernels of a model trained with four stored copies instead.
    """
    fig = InlineFigure(figsize=(11, 2.9), layout="constrained")
    axes = fig.subplots(1, 4)
    similarity_matrix(cosine_matrix(embeddings), names, ax=axes[0], title="embeddings: cosine")
    similarity_matrix(torch.cdist(embeddings, embeddings), names, ax=axes[1], title="embeddings: distance", fmt=".1f")
    similarity_matrix(cosine_matrix(generated), names, ax=axes[2], title="generated kernels: cosine")
    similarity_matrix(cosine_matrix(independent), names, ax=axes[3], title="independent kernels: cosine")
    for ax in axes:
        ax.title.set_fontsize("small")
    return fig


def principal_plane(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean ``(d,)`` and the two principal directions ``(2, d)`` of a few points (rows of ``(n, d)``, n >= 2)."""
    if points.dim() != 2 or points.shape[0] < 2:
        raise ValueError(f"points must be (n, d) with at least 2 rows, got {tuple(points.shape)}.")
    mean = points.mean(0)
    _, _, vh = torch.linalg.svd(points - mean, full_matrices=False)
    return mean, vh[:2]


def plane_figure(panels: Sequence[tuple[torch.Tensor, torch.Tensor, str]], names: Sequence[str] = SOURCES) -> Figure:
    """One panel per ``(points (K, d), path (m, d), title)``: the K points and a path, in the points' principal plane.

    The path (e.g. embeddings interpolated between two instruments, or the weights generated from
    them) is drawn as a dashed line through the same projection as the named points.
    """
    fig = InlineFigure(figsize=(4 * len(panels), 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (points, path, title) in zip(axes, panels):
        points, path = points.detach().cpu(), path.detach().cpu()
        mean, plane = principal_plane(points)
        xy, line = ((points - mean) @ plane.T).numpy(), ((path - mean) @ plane.T).numpy()
        ax.plot(line[:, 0], line[:, 1], "o--", color="grey", markersize=3)
        for (px, py), name in zip(xy.tolist(), names):
            ax.plot(px, py, "o", markersize=8)
            ax.annotate(name, (px, py), textcoords="offset points", xytext=(5, 5))
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("principal axis 1")
        ax.set_ylabel("principal axis 2")
    return fig


def kernel_images(kernel: torch.Tensor, names: Sequence[str] = SOURCES) -> Figure:
    """Each instrument's kernel ``(K, C_out, C_in)`` as an image (top row) and minus the instruments' mean (bottom)."""
    kernel = kernel.detach().cpu()
    if kernel.dim() != 3:
        raise ValueError(f"kernel must be (instruments, C_out, C_in), got {tuple(kernel.shape)}.")
    fig = InlineFigure(figsize=(2.5 * kernel.shape[0], 4.4), layout="constrained")
    axes = fig.subplots(2, kernel.shape[0], squeeze=False)
    for row, (images, label) in enumerate(((kernel, "kernel"), (kernel - kernel.mean(0), "minus the mean"))):
        limit = images.abs().max().item()
        for i, ax in enumerate(axes[row]):
            image = ax.imshow(images[i].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            ax.set_title(f"{names[i]}: {label}", fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=axes[row].tolist(), shrink=0.8)
    axes[0, 0].set_ylabel("output channel")
    axes[1, 0].set_xlabel("input channel")
    return fig


def interpolation_figure(weights: Sequence[float], curves: torch.Tensor, labels: Sequence[str], xlabel: str) -> Figure:
    """SI-SDR improvement ``curves`` ``(len(weights), len(labels))`` against the interpolation weight ``w``."""
    curves = torch.as_tensor(curves).detach().cpu()
    fig = InlineFigure(figsize=(5, 3), layout="constrained")
    ax = fig.add_subplot()
    for j, label in enumerate(labels):
        ax.plot(list(weights), curves[:, j].numpy(), "o-", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SI-SDR improvement (dB)")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig
