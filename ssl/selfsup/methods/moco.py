"""MoCo v1 and v2 (He et al., CVPR 2020, arXiv 1911.05722; Chen et al., arXiv 2003.04297).

A query encoder is trained with InfoNCE against the key of the other view, produced by a momentum
encoder, and a queue of keys from past batches as negatives. Faithful details:

- the momentum update happens in the forward pass, before the keys are computed;
- keys are gathered across processes (no gradient) before they enter the queue, so every process
  holds the same queue;
- shuffle-BN: the key batch is permuted across processes before the key encoder and un-permuted
  after, so BN statistics of a query and its key come from different sub-batches. The paper
  computed key BN statistics per GPU, over 32 images (256 on 8 GPUs): ``bn_group`` is that
  per-device batch. Each process runs its key encoder on ``per-process batch / bn_group``
  shuffled chunks, so one process at 256 emulates the 8 GPUs (8 groups) while 8 processes at 32
  use one group each and the real cross-process shuffle: every key's BN statistics come from
  ``bn_group`` images whatever the number of processes (the permutation is seeded by the step, so
  the groups are the same ones). ``bn_group: null`` = no emulation (one group per process);
- v1: linear 128-d head, tau 0.07; v2: 2-layer MLP head, tau 0.2 (and the "aug+" views). Left
  unset in a recipe, ``mlp``, ``hidden_dim`` and ``temperature`` are filled in when the recipe is
  loaded (``resolve``), so the run's config.yaml records the values used.

The queue is written modulo its size, so ``queue_size`` need not divide the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import MethodConfig, split_batch
from ..errors import ConfigError
from ..models.heads import mlp
from ..models.momentum import momentum_copy, momentum_update
from ..positives.hooks import epoch_end, moco_loss
from ..positives.score_stats import ScoreTracker
from ..utils.dist import gather_nograd, rank, world_size
from .base import Method, register


@dataclass
class MoCoConfig(MethodConfig):
    RENAMED = {
        "bn_splits": "method.bn_group, the per-device batch over which the paper computed BN "
        "statistics (MoCo on ImageNet: 32 = 256 / 8 GPUs); each process then uses per-process "
        "batch / bn_group groups; null for no emulation",
    }

    name: str = "moco"
    version: str = "v2"  # v1 | v2
    dim: int = 128  # output dimension of the projection head (128 in the papers)
    mlp: bool | None = None  # unset: the version's (v1 linear, v2 MLP); filled in at load
    hidden_dim: int | None = None  # MLP hidden width; unset: backbone feature width (paper)
    queue_size: int = 65536  # K, negatives kept in the queue (written modulo K: any batch works)
    momentum: float = 0.999  # m, the key encoder's EMA momentum
    temperature: float | None = None  # unset: v1 0.07, v2 0.2; filled in at load
    shuffle_bn: bool = True  # shuffle the keys across processes (or BN groups) so BN cannot leak the positive
    bn_group: int | None = None  # key-encoder BN batch of the paper's GPUs (32); null: per process

    def resolve(self, recipe) -> None:
        """Fill the version-dependent defaults with the values the run uses."""
        if self.version not in ("v1", "v2"):
            return  # check() says so
        if self.mlp is None:
            self.mlp = self.version == "v2"
        if self.temperature is None:
            self.temperature = 0.2 if self.version == "v2" else 0.07
        if self.mlp and self.hidden_dim is None:
            from ..models.backbones import feature_width

            self.hidden_dim = feature_width(recipe.model)

    def check(self, recipe) -> None:
        if self.version not in ("v1", "v2"):
            raise ConfigError(f"method.version: '{self.version}' is not one of v1, v2")
        for key in ("dim", "queue_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key}: must be at least 1, got {getattr(self, key)}")
        if self.hidden_dim is not None and self.hidden_dim < 1:
            raise ConfigError(f"method.hidden_dim: must be at least 1, got {self.hidden_dim}")
        if not 0 <= self.momentum <= 1:
            raise ConfigError(f"method.momentum: must be in [0, 1], got {self.momentum}")
        if self.temperature is not None and not self.temperature > 0:
            raise ConfigError(f"method.temperature: must be positive, got {self.temperature}")
        if recipe.data.views < 2:
            raise ConfigError(f"data.views: MoCo needs 2 views (query and key), got {recipe.data.views}")
        g, b = self.bn_group, recipe.data.batch_size
        if g is not None and (g < 1 or b % g):
            raise ConfigError(
                f"method.bn_group={g} must be a positive divisor of data.batch_size={b} (the global "
                "batch): each process splits its share into groups of bn_group images"
            )


@register
class MoCo(Method):
    name = "moco"
    Config = MoCoConfig
    paper_norm = "bn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        c.resolve(recipe)  # a no-op for a loaded recipe; recipes built in code may skip load_recipe
        c.check(recipe)
        self.bn_groups = self._bn_groups(recipe)
        self.use_mlp = bool(c.mlp)
        self.temperature = float(c.temperature)
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

    def _bn_groups(self, recipe) -> int:
        """Key-encoder BN groups per process: per-process (micro-)batch / bn_group."""
        _, micro = split_batch(recipe.data.batch_size, world_size(), recipe.train.grad_accum)
        g = self.cfg.bn_group
        self.bn_group_size = micro  # images behind each key's BN statistics
        if g is None or not self.cfg.shuffle_bn:
            return 1
        if micro % g:
            raise ConfigError(
                f"method.bn_group={g} does not divide the per-process batch {micro} "
                f"(data.batch_size {recipe.data.batch_size} over {world_size()} processes"
                + (f" x {recipe.train.grad_accum} accumulation steps" if recipe.train.grad_accum > 1 else "")
                + "); choose a bn_group that divides it, or null for no emulation"
            )
        self.bn_group_size = g
        return micro // g

    def describe(self) -> dict:
        """What the run records about shuffle-BN (metrics.json, run header)."""
        return {
            "moco/bn_groups_per_process": self.bn_groups,
            "moco/bn_group_size": self.bn_group_size,
            "moco/temperature": self.temperature,
        }

    def frozen_modules(self):
        return [self.backbone_k, self.head_k]

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Un-normalised query projection ``[N, dim]``."""
        return self.head(self.backbone(x))

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised keys ``[N, dim]`` from the momentum encoder, with shuffle-BN."""
        enc = lambda t: F.normalize(self.head_k(self.backbone_k(t)), dim=1)
        w, s = world_size(), self.bn_groups
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
