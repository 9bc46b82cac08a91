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
from ..losses.contrastive import nt_xent
from ..models.heads import mlp
from .base import Method


@dataclass
class SimCLRConfig(MethodConfig):
    name: str = "simclr"
    temperature: float = 0.5  # 0.5 on CIFAR, 0.1 on ImageNet at large batch (paper, App. B.9)
    proj_hidden: int = 2048
    proj_dim: int = 128
    proj_layers: int = 2
    gather: bool = True  # negatives from all processes


class SimCLR(Method):
    name = "simclr"
    Config = SimCLRConfig
    paper_norm = "syncbn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        self.projector = mlp(self.feat_dim, c.proj_hidden, c.proj_dim, layers=c.proj_layers, bn=True)
        self.positive_hooks: list = []

    def project(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        # One pass over all views: BN statistics over the 2N images, as in the paper.
        n = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2], 0)))
        return list(z.split(n))

    def training_step(self, batch: dict) -> dict:
        z1, z2 = self.project(batch["views"])
        loss = nt_xent(z1, z2, self.cfg.temperature, gather=self.cfg.gather)
        return {"loss": loss}
