"""Retrieval heads of compatible models: what sits between the backbone and the exported feature.

Training heads hold orthogonal layers through ``torch.nn.utils.parametrizations.orthogonal``
(matrix exponential with trivialisation, the default for square matrices; no penalty term), as the
BT² and OCA code do. For export, :meth:`export` bakes each orthogonal matrix into a plain
``Linear`` weight, so an exported ``encoder.pt`` reloads through
:func:`selfsup.models.export.build_from_arch` (``arch["head"]`` = the head's :meth:`spec`)
without registering parametrisations first (the BT-2 code must register them before loading).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import orthogonal

from ..errors import CheckpointError


def ortho_linear(n: int, bias: bool = False, parametrized: bool = True) -> nn.Linear:
    """An ``n x n`` linear layer whose weight is orthogonal (``W Wᵀ = I``) when ``parametrized``."""
    layer = nn.Linear(n, n, bias=bias)
    return orthogonal(layer) if parametrized else layer


def _copy_weight(dst: nn.Linear, src: nn.Linear) -> None:
    """Copy the (possibly parametrised) weight and bias of ``src`` into plain ``dst``."""
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)


class BT2Head(nn.Module):
    """BT² basis transformation (Zhou et al., ICCV 2023, arXiv 2211.03989; docs/methods/compat.md).

    From backbone features ``z [B, D]``::

        f   = normalize(z[:, :d_new])                   # new-branch feature  [B, d_new]
        u   = normalize(fc3(relu(z)))                   # extra dims          [B, k]
        v   = [u, P(C f)]                               # P orthogonal d_new x d_new   [B, k + d_new]
        b   = O(v[:, :d_old])                           # O orthogonal d_old x d_old   [B, d_old]
        phi = [b, v[:, d_old:]]                         # retrieval feature   [B, k + d_new]

    so ``<phi, phi'> = <u, u'> + C^2 <f, f'>`` and ``|phi|^2 = 1 + C^2``. BT-2's fc3 has 128
    outputs of which only the first k are used; here it has exactly k (the others get no gradient).
    """

    def __init__(
        self, in_dim: int, new_dim: int, old_dim: int, extra: int, scale: float, parametrized: bool = True
    ) -> None:
        super().__init__()
        if not 0 < new_dim <= in_dim:
            raise ValueError(f"new_dim {new_dim} must be in (0, {in_dim}]")
        if old_dim > extra + new_dim:
            raise ValueError(f"old_dim {old_dim} exceeds extra + new_dim = {extra + new_dim}")
        self.in_dim, self.new_dim, self.old_dim, self.extra = in_dim, new_dim, old_dim, extra
        self.scale = float(scale)
        self.out_dim = extra + new_dim
        self.fc3 = nn.Linear(in_dim, extra, bias=True)
        self.P = ortho_linear(new_dim, parametrized=parametrized)
        self.O = ortho_linear(old_dim, parametrized=parametrized)

    def parts(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``f [B, d_new]``, ``u [B, k]``, ``v``, ``b [B, d_old]`` and ``phi [B, k + d_new]``."""
        f = F.normalize(z[:, : self.new_dim], dim=1)
        u = F.normalize(self.fc3(F.relu(z)), dim=1)
        v = torch.cat([u, self.P(self.scale * f)], dim=1)
        b = self.O(v[:, : self.old_dim])
        phi = torch.cat([b, v[:, self.old_dim :]], dim=1)
        return {"f": f, "u": u, "v": v, "b": b, "phi": phi}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.parts(z)["phi"]

    def spec(self) -> dict:
        return {
            "type": "bt2",
            "in_dim": self.in_dim,
            "new_dim": self.new_dim,
            "old_dim": self.old_dim,
            "extra": self.extra,
            "scale": self.scale,
            "out_dim": self.out_dim,
        }

    def export(self) -> BT2Head:
        plain = BT2Head(self.in_dim, self.new_dim, self.old_dim, self.extra, self.scale, parametrized=False)
        plain.to(self.fc3.weight.device)
        plain.fc3.load_state_dict(self.fc3.state_dict())
        _copy_weight(plain.P, self.P)
        _copy_weight(plain.O, self.O)
        return plain.eval()


class EmbedHead(nn.Module):
    """``h = normalize(embed(z))``: OCA's retrieval feature ``[B, d_old + k]`` (docs/methods/compat.md).

    OCA's ResNet makes its last block ``d_old + k`` channels wide; with a timm backbone of another
    width a linear embedding maps ``D -> d_old + k`` (identity when they already match).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.embed = nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(z), dim=1)

    def spec(self) -> dict:
        return {"type": "embed", "in_dim": self.in_dim, "out_dim": self.out_dim}

    def export(self) -> EmbedHead:
        plain = EmbedHead(self.in_dim, self.out_dim)
        for p in self.parameters():  # none when the embedding is the identity
            plain.to(p.device)
            break
        plain.load_state_dict(self.state_dict())
        return plain.eval()


class LinearHead(nn.Module):
    """A linear projection ``[B, D] -> [B, out_dim]`` (Hot-Refresh with ``match: project``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z)

    def spec(self) -> dict:
        return {"type": "linear", "in_dim": self.in_dim, "out_dim": self.out_dim}

    def export(self) -> LinearHead:
        plain = LinearHead(self.in_dim, self.out_dim).to(self.proj.weight.device)
        plain.load_state_dict(self.state_dict())
        return plain.eval()


def build_head(spec: dict) -> nn.Module:
    """A plain (exported) head from its :meth:`spec`; used when loading an ``encoder.pt``."""
    kind = spec.get("type")
    try:
        if kind == "bt2":
            return BT2Head(
                spec["in_dim"],
                spec["new_dim"],
                spec["old_dim"],
                spec["extra"],
                spec["scale"],
                parametrized=False,
            )
        if kind == "embed":
            return EmbedHead(spec["in_dim"], spec["out_dim"])
        if kind == "linear":
            return LinearHead(spec["in_dim"], spec["out_dim"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"the encoder's compat head spec {spec} is invalid ({e})") from None
    raise CheckpointError(f"the encoder has an unknown compat head type {kind!r}; upgrade selfsup")
