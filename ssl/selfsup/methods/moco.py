"""MoCo v1 and v2 (He et al., CVPR 2020, arXiv 1911.05722; Chen et al., arXiv 2003.04297).

A query encoder is trained with InfoNCE against the key of the other view, produced by a momentum
encoder, and a queue of keys from past batches as negatives. Faithful details:

- the momentum update happens in the forward pass, before the keys are computed;
- keys are gathered across processes (no gradient) before they enter the queue, so every process
  holds the same queue;
- shuffle-BN: the key batch is permuted across processes before the key encoder and un-permuted
  after, so BN statistics of a query and its key come from different sub-batches. On one process
  ``bn_splits > 1`` emulates this by running the key encoder on ``bn_splits`` shuffled chunks
  (the permutation is seeded by the step, so one process with ``bn_splits = W`` equals W
  processes with ``bn_splits = 1``);
- v1: linear 128-d head, tau 0.07; v2: 2-layer MLP head, tau 0.2 (and the "aug+" views).

The queue is written modulo its size, so ``queue_size`` need not divide the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import MethodConfig
from ..errors import ConfigError
from ..models.heads import mlp
from ..models.momentum import momentum_copy, momentum_update
from ..positives.hooks import epoch_end, moco_loss
from ..positives.score_stats import ScoreTracker
from ..utils.dist import gather_nograd, rank, world_size
from .base import Method, register


@dataclass
class MoCoConfig(MethodConfig):
    name: str = "moco"
    version: str = "v2"  # v1 | v2
    dim: int = 128
    mlp: bool | None = None  # None: the version's default (v1 linear, v2 MLP)
    hidden_dim: int | None = None  # MLP hidden width; None = backbone feature width (paper)
    queue_size: int = 65536
    momentum: float = 0.999
    temperature: float | None = None  # None: v1 0.07, v2 0.2
    shuffle_bn: bool = True
    bn_splits: int = 1


@register
class MoCo(Method):
    name = "moco"
    Config = MoCoConfig
    paper_norm = "bn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        if c.version not in ("v1", "v2"):
            raise ConfigError(f"method.version: '{c.version}' is not one of v1, v2")
        if c.bn_splits < 1 or recipe.data.batch_size % c.bn_splits:
            raise ConfigError(
                f"method.bn_splits={c.bn_splits} must divide data.batch_size={recipe.data.batch_size}"
            )
        self.use_mlp = c.mlp if c.mlp is not None else c.version == "v2"
        self.temperature = (
            c.temperature if c.temperature is not None else (0.2 if c.version == "v2" else 0.07)
        )
        hidden = c.hidden_dim or self.feat_dim
        self.head = (
            mlp(self.feat_dim, hidden, c.dim, layers=2, bn=False)
            if self.use_mlp
            else nn.Linear(self.feat_dim, c.dim)
        )
        self.backbone_k = momentum_copy(self.backbone)
        self.head_k = momentum_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(c.queue_size, c.dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.scores = ScoreTracker()  # positive/negative score statistics (selfsup.positives)

    def frozen_modules(self):
        return [self.backbone_k, self.head_k]

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised query projection ``[N, dim]``."""
        return self.head(self.backbone(x))

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised keys ``[N, dim]`` from the momentum encoder, with shuffle-BN."""
        enc = lambda t: F.normalize(self.head_k(self.backbone_k(t)), dim=1)
        w, s = world_size(), self.cfg.bn_splits
        if not self.cfg.shuffle_bn or (w == 1 and s == 1):
            return enc(x)
        n = x.shape[0]
        x_all = gather_nograd(x)
        gen = torch.Generator().manual_seed(int(self.recipe.seed) * 1_000_003 + int(self.step))
        perm = torch.randperm(x_all.shape[0], generator=gen).to(x.device)
        mine = x_all[perm][rank() * n : (rank() + 1) * n]
        k_mine = torch.cat([enc(chunk) for chunk in mine.chunk(s)], 0)
        k_all = gather_nograd(k_mine)[torch.argsort(perm)]
        return k_all[rank() * n : (rank() + 1) * n]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        keys = gather_nograd(keys)
        size = self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue.index_copy_(0, idx, keys.to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)

    def training_step(self, batch: dict) -> dict:
        x_q, x_k = batch["views"][:2]
        h = self.backbone(x_q)
        q = self.head(h)  # un-normalised: a Hallucinator extrapolates it before normalisation
        with torch.no_grad():
            momentum_update(self.backbone, self.backbone_k, self.cfg.momentum)
            momentum_update(self.head, self.head_k, self.cfg.momentum)
            k = self.keys(x_k)
        queue = self.queue.clone().detach()
        # InfoNCE (losses.contrastive.info_nce) on normalize(q); attached positive generators
        # (Hallucinator, FT) act inside. The queue gets keys that FT never mixed.
        loss, keys, scores = moco_loss(self, q, k, queue, self.temperature)
        for batch_keys in keys:  # [k], or [k, k]: the Hallucinator's official duplicated keys
            self.enqueue(batch_keys)
        return {"loss": loss, "feats": h, **scores}

    def on_epoch_end(self, epoch: int, run_dir) -> None:
        epoch_end(self, epoch, run_dir)
