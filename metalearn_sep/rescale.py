"""The last step of separation: rescaling each stem so the stems explain the mixture (least squares).

Training is scale invariant and separation normalises its input, so a model's raw stems come
at an arbitrary level. The paper's evaluation multiplies each stem s_i by the gain c_i that
minimises ``||x - sum_i c_i s_i||^2`` against the mixture x, per channel; SDR is not scale
invariant, so this step is part of every reported figure.
"""

from __future__ import annotations

import torch


class NormalEquations:
    """The least-squares problem of :func:`least_squares_gains`, accumulated block by block.

    ``add(estimates (K, C, t), mixture (C, t))`` adds the blocks' products to the Gram matrices
    ``(C, K, K)`` and right-hand sides ``(C, K, 1)``, in float64; :meth:`gains` solves them
    (minimum-norm, so a silent or redundant estimate is harmless: a silent one gets 0).
    """

    def __init__(self, sources: int, channels: int) -> None:
        self.gram = torch.zeros(channels, sources, sources, dtype=torch.float64)
        self.target = torch.zeros(channels, sources, 1, dtype=torch.float64)

    def add(self, estimates: torch.Tensor, mixture: torch.Tensor) -> None:
        s = estimates.transpose(0, 1).double().cpu()  # (C, K, t)
        x = mixture.double().cpu().unsqueeze(-1)  # (C, t, 1)
        self.gram += s @ s.transpose(1, 2)
        self.target += s @ x

    def gains(self) -> torch.Tensor:
        """The gains c ``(K, C)``, float64."""
        return (torch.linalg.pinv(self.gram, hermitian=True) @ self.target)[..., 0].T


def least_squares_gains(estimates: torch.Tensor, mixture: torch.Tensor, block: int = 1 << 20) -> torch.Tensor:
    """Gains c ``(K, C)`` minimising ``||x_c - sum_i c_ic s_ic||^2`` for every channel c.

    The normal equations are accumulated in float64 over blocks of ``block`` samples
    (:class:`NormalEquations`), so no full-length float64 copy is made.

    Args:
        estimates: ``(K, C, T)`` stems.
        mixture: ``(C, T)``.
    """
    if estimates.dim() != 3 or mixture.dim() != 2 or estimates.shape[1:] != mixture.shape:
        raise ValueError(
            f"least_squares_gains expects estimates (K, C, T) and a mixture (C, T) of the same C and T, "
            f"got {tuple(estimates.shape)} and {tuple(mixture.shape)}."
        )
    equations = NormalEquations(estimates.shape[0], estimates.shape[1])
    for t in range(0, estimates.shape[-1], block):
        equations.add(estimates[..., t : t + block], mixture[:, t : t + block])
    return equations.gains().to(estimates.dtype)
