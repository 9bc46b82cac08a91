"""SimCLR (Chen, Kornblith, Norouzi, Hinton, ICML 2020, arXiv 2002.05709).

Two views pass through the backbone and a projection MLP; NT-Xent pulls the two projections of a
sample together against all other ``2N - 2`` views of the (global) batch. Negatives are gathered
from every process with gradient, and BatchNorm is global (SyncBN) when distributed, as the paper
does ("global BN").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import MethodConfig
from ..errors import ConfigError
from ..models.heads import mlp
from ..positives.hooks import epoch_end, simclr_loss
from ..positives.score_stats import ScoreTracker
from .base import Method, register


@dataclass
class SimCLRConfig(MethodConfig):
    name: str = "simclr"
    temperature: float = 0.5  # 0.5 on CIFAR, 0.1 on ImageNet at large batch (paper, App. B.9)
    proj_hidden: int = 2048  # projection MLP hidden width
    proj_dim: int = 128  # projection output dimension (the loss's space)
    proj_layers: int = 2  # projection MLP layers (2 in SimCLR v1, 3 in v2)
    gather: bool = True  # negatives from all processes

    def check(self, recipe) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"method.temperature: must be positive, got {self.temperature}")
        for key in ("proj_hidden", "proj_dim", "proj_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key}: must be at least 1, got {getattr(self, key)}")
        if recipe.data.views < 2:
            raise ConfigError(f"data.views: SimCLR needs 2 views, got {recipe.data.views}")


@register
class SimCLR(Method):
    name = "simclr"
    Config = SimCLRConfig
    paper_norm = "syncbn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        self.projector = mlp(self.feat_dim, c.proj_hidden, c.proj_dim, layers=c.proj_layers, bn=True)
        self.scores = ScoreTracker()  # positive/negative score statistics (selfsup.positives)

    def training_step(self, batch: dict) -> dict:
        v1, v2 = batch["views"][:2]
        n = v1.shape[0]
        # One pass over both views: BN statistics over the 2N images, as in the paper.
        h = self.backbone(torch.cat([v1, v2], 0))
        z1, z2 = self.projector(h).split(n)
        # NT-Xent (losses.contrastive.nt_xent); attached positive generators act inside.
        loss, scores = simclr_loss(self, z1, z2, self.cfg.temperature, gather=self.cfg.gather)
        return {"loss": loss, "feats": h[:n], **scores}

    def on_epoch_end(self, epoch: int, run_dir) -> None:
        epoch_end(self, epoch, run_dir)
