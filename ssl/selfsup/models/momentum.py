"""Momentum (EMA) encoders, as in MoCo: theta_k <- m theta_k + (1 - m) theta_q."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy that only the momentum update changes."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float) -> None:
    for po, pt in zip(online.parameters(), target.parameters()):
        pt.mul_(m).add_(po.detach(), alpha=1.0 - m)


def cosine_momentum(base: float, step: int, total: int) -> float:
    """BYOL's schedule 1 - (1 - m0)(cos(pi k / K) + 1) / 2; MoCo v1/v2 keep m constant."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / max(1, total)) + 1) / 2
