"""Chapter 03's views of a generator: the weights it writes per instrument, their geometry and figures."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from metalearn_sep.generator_views import (
    conv_kernels, cosine_matrix, interpolation_figure, kernel_images, plane_figure, principal_plane, similarity_figure,
    weight_vectors,
)
from metalearn_sep.models.generator import generated_weights
from metalearn_sep.models.meta_tasnet import MetaTasNet

SIZES = dict(stages=1, N=16, B=8, H=8, X=2, R=1, spec_channels=8)


@pytest.fixture(scope="module")
def stages():
    torch.manual_seed(0)
    generated = MetaTasNet(**SIZES).stages[0]
    independent = MetaTasNet(**SIZES, generated=False).stages[0]
    return generated, independent


def test_weight_vectors_hold_every_generated_weight_once_per_instrument(stages):
    generated, _ = stages
    rows = generated.embedding()
    vectors = weight_vectors(generated.masker, rows)
    weights = generated_weights(generated.masker, rows)
    assert vectors.shape == (4, sum(w[0].numel() for w in weights.values()))
    first = next(iter(weights.values()))
    assert torch.equal(vectors[2, : first[2].numel()], first[2].flatten().detach())


def test_kernels_compare_generated_and_stored_masking_networks_alike(stages):
    generated, independent = stages
    made, stored = conv_kernels(generated.masker, generated.embedding()), conv_kernels(independent.masker)
    assert made.shape == stored.shape and made.shape[0] == 4
    assert made.shape[1] < weight_vectors(generated.masker, generated.embedding()).shape[1]  # no GroupNorm affines
    with pytest.raises(ValueError, match="no generated or independent convolution"):
        conv_kernels(torch.nn.Linear(2, 2))


def test_cosines_and_the_principal_plane_recover_known_geometry():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    assert torch.allclose(cosine_matrix(vectors), torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]))
    points = torch.tensor([[0.0, 0.0, 5.0], [4.0, 0.0, 5.0], [0.0, 1.0, 5.0], [4.0, 1.0, 5.0]])  # a rectangle in z = 5
    mean, plane = principal_plane(points)
    assert torch.allclose(mean, torch.tensor([2.0, 0.5, 5.0]))
    assert torch.allclose(plane.abs(), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-6)  # long side first
    with pytest.raises(ValueError, match="at least 2 rows"):
        principal_plane(torch.ones(1, 3))


def test_the_figures_draw_one_panel_per_view(stages):
    generated, independent = stages
    rows = generated.embedding().detach()
    kernels = conv_kernels(generated.masker, rows)
    assert len(similarity_figure(rows, kernels, conv_kernels(independent.masker)).axes) == 4  # heat maps drawn into given axes add no colour bar
    assert len(plane_figure([(rows, rows[:2], "embeddings"), (kernels, kernels[:2], "kernels")]).axes) == 2
    images = kernel_images(torch.randn(4, 6, 5))
    assert isinstance(images, Figure) and len(images.axes) == 8 + 2  # two rows of four, a colour bar per row
    assert images.axes[0].get_ylabel() == "output channel"
    curve = interpolation_figure([0.0, 0.5, 1.0], torch.zeros(3, 2), ["against bass", "against drums"], "w")
    assert [line.get_label() for line in curve.axes[0].get_lines()][:2] == ["against bass", "against drums"]
    with pytest.raises(ValueError, match="instruments, C_out, C_in"):
        kernel_images(torch.randn(4, 6))
