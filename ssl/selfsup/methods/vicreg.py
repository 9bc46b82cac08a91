"""VICReg (Bardes, Ponce, LeCun, ICLR 2022, arXiv 2105.04906).

Each view passes through the backbone and an expander MLP on its own (BN statistics per view, as
the reference code does); the loss (:func:`selfsup.losses.vicreg.vicreg`) pulls the two embeddings
together (invariance) while keeping every dimension's standard deviation above 1 (variance) and
the dimensions decorrelated (covariance). Variance and covariance are computed on the global
batch: embeddings are gathered from every process with gradient, and BN is global (SyncBN) when
distributed, as in the paper. No negatives, no stop-gradient, no momentum encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import MethodConfig
from ..errors import ConfigError
from ..losses.vicreg import vicreg_terms
from ..models.heads import expander
from .base import Method, register


@dataclass
class VICRegConfig(MethodConfig):
    name: str = "vicreg"
    mlp: list[int] = field(default_factory=lambda: [8192, 8192, 8192])  # expander widths (paper, ImageNet)
    sim_coeff: float = 25.0  # lambda, invariance weight (paper: 25; SIE's 3DIEBench baseline: 10)
    std_coeff: float = 25.0  # mu, variance weight (paper: 25; SIE's baseline: 10)
    cov_coeff: float = 1.0  # nu, covariance weight
    gather: bool = True  # variance and covariance over the batches of every process

    def check(self, recipe) -> None:
        check_mlp(self.mlp)
        for key in ("sim_coeff", "std_coeff", "cov_coeff"):
            if getattr(self, key) < 0:
                raise ConfigError(f"method.{key}: must be at least 0, got {getattr(self, key)}")
        if recipe.data.views < 2 and not getattr(recipe.data, "pairs", False):
            raise ConfigError(f"data.views: VICReg needs 2 views, got {recipe.data.views}")


def check_mlp(mlp: list[int]) -> None:
    """An expander's widths: a non-empty list of positive integers."""
    if not mlp or any(int(d) < 1 for d in mlp):
        raise ConfigError(
            f"method.mlp: expected a list of positive widths, e.g. [2048, 2048, 2048], got {mlp}"
        )


@register
class VICReg(Method):
    name = "vicreg"
    Config = VICRegConfig
    paper_norm = "syncbn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        self.projector = expander(self.feat_dim, [int(d) for d in c.mlp])

    def training_step(self, batch: dict) -> dict:
        v1, v2 = batch["views"][:2]
        h1, h2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(h1), self.projector(h2)
        t = vicreg_terms(z1, z2, gather=self.cfg.gather)
        c = self.cfg
        loss = c.sim_coeff * t["inv"] + c.std_coeff * t["var"] + c.cov_coeff * t["cov"]
        return {
            "loss": loss,
            "inv": t["inv"].detach(),
            "var": t["var"].detach(),
            "cov": t["cov"].detach(),
            "feats": h1,
        }
