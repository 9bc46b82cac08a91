"""Regression-style losses (SimSiam)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor, stop_grad: bool = True) -> torch.Tensor:
    """SimSiam's D(p, z) = -cos(p, stopgrad(z)) (Chen & He 2021, Eq. 1), averaged over the batch.

    Args:
        p: ``[N, D]`` predictor outputs.
        z: ``[N, D]`` projector outputs of the other view; detached when ``stop_grad``.

    Returns:
        scalar in ``[-1, 1]``.
    """
    if stop_grad:
        z = z.detach()
    return -(F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(1).mean()
