"""SIE's predictor: a linear map whose weights a hypernetwork generates from the transformation.

Given the equivariant embedding ``x`` ``[B, D]`` of view 1 and the transformation ``z`` ``[B, K]``
between the views (the relative-rotation quaternion, K = 4, or quaternion + two hue deltas,
K = 6), the prediction of view 2's embedding is ``p = W(z) x`` with no bias and no activation.

The hypernetwork maps ``z`` to the ``D x D`` entries of ``W(z)``: ``linear`` is one bias-free
``Linear(K, D*D)``; ``deep`` puts ``Linear(K, K) -> ReLU -> Linear(K, K) -> ReLU`` before it. Its last
layer is linear in its input ``h`` (``h = z`` for ``linear``), so ``W(z) = sum_k h_k A_k`` with
``A_k`` the k-th column of that layer's weight seen as a ``D x D`` matrix (rows = outputs). The
forward pass computes ``sum_k h_k (A_k x)``: ``B x D x K`` numbers instead of the ``B x D x D``
weights the reference code materialises (0.5 GB at D = 1024 and 128 samples per GPU), same result.

Parameter names and shapes are the reference code's (``hypernet.net.<i>.weight``), so its
checkpoints load as they are.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError


class HyperNet(nn.Module):
    """``z [B, K] -> [B, D*D]`` (``linear`` or ``deep``); only its last layer is ever applied lazily."""

    def __init__(self, latent_dim: int, out_dim: int, kind: str = "linear", bias: bool = False) -> None:
        super().__init__()
        if kind == "linear":
            layers: list[nn.Module] = [nn.Linear(latent_dim, out_dim, bias=bias)]
        elif kind == "deep":
            layers = [
                nn.Linear(latent_dim, latent_dim, bias=bias),
                nn.ReLU(),
                nn.Linear(latent_dim, latent_dim, bias=bias),
                nn.ReLU(),
                nn.Linear(latent_dim, out_dim, bias=bias),
            ]
        else:
            raise ConfigError(f"method.hypernetwork: expected linear or deep, got '{kind}'")
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class HyperPredictor(nn.Module):
    """``p = W(z) x`` with ``W(z)`` from :class:`HyperNet` (see the module docstring).

    Args:
        dim: ``D``, the equivariant embedding's width.
        latent_dim: ``K``, the transformation's width (4 rotation, 6 rotation + colour).
        hypernetwork: ``linear`` (the paper's) or ``deep``.
        bias: bias in the hypernetwork's layers; for the last layer this adds a constant matrix
            ``A_0`` to ``W(z)`` (off in the paper).
    """

    def __init__(
        self, dim: int, latent_dim: int = 4, hypernetwork: str = "linear", bias: bool = False
    ) -> None:
        super().__init__()
        self.dim, self.latent_dim = int(dim), int(latent_dim)
        self.hypernet = HyperNet(self.latent_dim, self.dim * self.dim, hypernetwork, bias)

    def matrix(self, z: torch.Tensor) -> torch.Tensor:
        """The explicit ``W(z)`` ``[B, D, D]`` (rows = outputs). For tests and small D only."""
        return self.hypernet(z).view(-1, self.dim, self.dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, D]``, ``z`` ``[B, K]`` -> ``W(z) x`` ``[B, D]``."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"transformation has {z.shape[-1]} values, the predictor expects {self.latent_dim}"
            )
        net = self.hypernet.net
        h = net[:-1](z) if len(net) > 1 else z  # [B, K]
        last = net[-1]
        d = self.dim
        k = self.latent_dim
        # weight[i * D + j, k] = (A_k)_{ij}; rows (i, k) of the stacked matrix act on x in one matmul.
        stacked = last.weight.view(d, d, k).permute(0, 2, 1).reshape(d * k, d)
        ax = F.linear(x, stacked).view(-1, d, k)  # [B, D, K]: (A_k x)_i
        p = (ax * h.to(ax.dtype).unsqueeze(1)).sum(-1)
        if last.bias is not None:
            p = p + x @ last.bias.view(d, d).T
        return p


def build_predictor(spec: dict) -> HyperPredictor:
    """A predictor from its description ``{"dim", "latent_dim", "hypernetwork", "bias"}``."""
    return HyperPredictor(
        spec["dim"],
        spec.get("latent_dim", 4),
        spec.get("hypernetwork", "linear"),
        bool(spec.get("bias", False)),
    )
