"""Projector and predictor MLPs."""

from __future__ import annotations

import torch.nn as nn


def mlp(
    in_dim: int,
    hidden: int,
    out: int,
    layers: int = 2,
    bn: bool = True,
    last_bn: bool = False,
    last_bn_affine: bool = True,
    bias: bool = True,
) -> nn.Sequential:
    """``layers`` linear layers; hidden ones followed by (BN +) ReLU.

    ``last_bn`` adds a BatchNorm after the output layer (SimSiam's projector ends with BN without
    affine parameters: ``last_bn_affine=False``).
    """
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods.append(nn.Linear(d, hidden, bias=bias and not bn))
        if bn:
            mods.append(nn.BatchNorm1d(hidden))
        mods.append(nn.ReLU(inplace=True))
        d = hidden
    mods.append(nn.Linear(d, out, bias=bias and not last_bn))
    if last_bn:
        mods.append(nn.BatchNorm1d(out, affine=last_bn_affine))
    return nn.Sequential(*mods)


def expander(in_dim: int, dims: list[int] | tuple[int, ...]) -> nn.Sequential:
    """VICReg's projector ("expander"): ``in -> dims[0] -> ... -> dims[-1]``.

    Every layer but the last is Linear -> BN -> ReLU; the last is a Linear without bias. The hidden
    Linear layers keep their bias (which the BN cancels) so that the parameters, and their names,
    are the reference code's: its checkpoints load as they are.
    """
    mods: list[nn.Module] = []
    d = in_dim
    for h in dims[:-1]:
        mods += [nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
        d = h
    mods.append(nn.Linear(d, dims[-1], bias=False))
    return nn.Sequential(*mods)
