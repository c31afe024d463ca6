"""Oracle masks: they partition the mixture, and recover stems that do not overlap."""

from __future__ import annotations

import math

import pytest
import torch

from metalearn_sep.metrics import si_sdr
from metalearn_sep.oracle import oracle_masks, oracle_separate


def tones(freqs, seconds=1.0, rate=8000, channels=1):
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return torch.stack([torch.sin(2 * math.pi * f * t).expand(channels, -1) for f in freqs])


@pytest.mark.parametrize("kind", ["ibm", "irm"])
def test_masks_partition_every_bin_and_estimates_sum_to_the_mixture(kind):
    g = torch.Generator().manual_seed(0)
    stems = torch.randn(4, 2, 4000, generator=g, dtype=torch.float64)
    masks = oracle_masks(stems, kind)
    assert masks.shape[:2] == (4, 2)
    torch.testing.assert_close(masks.sum(0), torch.ones_like(masks[0]))
    if kind == "ibm":
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
    est = oracle_separate(stems, kind)
    torch.testing.assert_close(est.sum(0), stems.sum(0), atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["ibm", "irm"])
def test_stems_far_apart_in_frequency_are_recovered(kind):
    stems = tones([200.0, 1000.0, 2000.0, 3200.0])
    est = oracle_separate(stems, kind)
    assert (si_sdr(est[..., 1000:-1000], stems[..., 1000:-1000]) > 30).all()


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown oracle mask 'ideal'"):
        oracle_masks(tones([100.0, 200.0]), "ideal")
    with pytest.raises(ValueError, match="3 dimensions"):
        oracle_separate(torch.zeros(4, 100))
