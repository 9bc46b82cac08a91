"""SimSiam (Chen & He, CVPR 2021, arXiv 2011.10566).

Symmetrised negative cosine between one view's prediction and the other view's projection,
with stop-gradient on the projection. The projector ends with BN without affine; the predictor is
a bottleneck MLP whose learning rate is kept fixed (``fix_pred_lr``, the paper's Sec. 4.4 default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import MethodConfig
from ..errors import ConfigError
from ..losses.regression import negative_cosine
from ..models.heads import mlp
from ..positives.hooks import simsiam_hallucinate
from .base import Method, register


@dataclass
class SimSiamConfig(MethodConfig):
    name: str = "simsiam"
    proj_dim: int = 2048  # projector output dimension
    proj_hidden: int = 2048  # projector hidden width
    proj_layers: int = 3  # 2 in the paper's CIFAR experiments
    pred_hidden: int = 512  # predictor bottleneck width (2048 -> 512 -> 2048 in the paper)
    fix_pred_lr: bool = True  # keep the predictor's lr fixed at its base value (paper Sec. 4.2)

    def check(self, recipe) -> None:
        for key in ("proj_dim", "proj_hidden", "proj_layers", "pred_hidden"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key}: must be at least 1, got {getattr(self, key)}")
        if recipe.data.views < 2:
            raise ConfigError(f"data.views: SimSiam needs 2 views, got {recipe.data.views}")


@register
class SimSiam(Method):
    name = "simsiam"
    Config = SimSiamConfig
    paper_norm = "syncbn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        self.projector = mlp(
            self.feat_dim,
            c.proj_hidden,
            c.proj_dim,
            layers=c.proj_layers,
            bn=True,
            last_bn=True,
            last_bn_affine=False,
        )
        self.predictor = mlp(c.proj_dim, c.pred_hidden, c.proj_dim, layers=2, bn=True)

    def fixed_lr_params(self):
        return list(self.predictor.parameters()) if self.cfg.fix_pred_lr else []

    def training_step(self, batch: dict) -> dict:
        v1, v2 = batch["views"][:2]
        n = v1.shape[0]
        h = self.backbone(torch.cat([v1, v2], 0))
        z1, z2 = self.projector(h).split(n)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        # Collapse monitor (paper Fig. 2): std of the l2-normalised output, ~1/sqrt(d) when healthy.
        z_std = F.normalize(z1.detach(), dim=1).std(0).mean()
        # An attached Hallucinator doubles p (and duplicates z); identity otherwise.
        p1, p2, z1, z2 = simsiam_hallucinate(self, p1, p2, z1, z2)
        loss = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
        return {"loss": loss, "z_std": z_std, "feats": h[:n]}
