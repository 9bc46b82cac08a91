"""OBoW: online bag-of-visual-words generation (Gidaris et al., CVPR 2021, arXiv 2012.11552).

A momentum teacher encodes a lightly augmented view (``data.augment.plain_views``: centre crop and
flip only). At each selected stage (``levels``; default the last two, block3 and block4 of a
ResNet) its feature map, minus a ``border`` of one pixel, is soft-assigned to that level's
vocabulary, a queue of past teacher features, and max-pooled into a bag-of-words distribution
(:mod:`selfsup.losses.bow`). The student predicts that distribution from its pooled feature of
every heavily augmented crop (the ``data.views`` global crops and the ``local_views`` patches)
with a classifier whose weights a small network generates from the current vocabulary. Loss:
KL(target || prediction) averaged over crops of a kind and over levels, summed over the two kinds.

Order within one step, as in the official code: take a copy of the vocabulary for the student's
head; update the teacher (EMA with a cosine schedule from ``momentum`` to 1); compute the
distances with the old vocabulary; update ``mu``; assign and pool; then enqueue one randomly
located, 3x3-averaged teacher feature per image, gathered from all processes.

Distributed: the queue is fed with gathered features in rank order, ``mu`` with the all-reduced
mean, and the random locations are drawn for the global batch from a seeded generator, so N
processes compute what one process computes on the global batch. BatchNorm of student and teacher
is global (SyncBN) as in the official code; the weight generators' BatchNorm stays per process
(every process sees the same vocabulary, so it is the same anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import MethodConfig
from ..errors import ConfigError
from ..losses.bow import bow_loss, bow_pool, perplexity, soft_assign, squared_distances
from ..models.momentum import cosine_momentum, momentum_copy, momentum_update
from ..utils.dist import all_reduce_sum, gather_nograd, rank, world_size
from .base import Method, register
from .obow_parts import (
    Vocabulary,
    WeightGenerator,
    check_maps,
    pooled_locations,
    sample_local_features,
    stage_maps,
    stage_names,
)


@dataclass
class OBoWConfig(MethodConfig):
    name: str = "obow"
    # Stages giving BoW targets, as indices into the backbone's feature_info: [-2, -1] = block3 +
    # block4 of a ResNet (paper "full"); [-1] = block4 only ("vanilla").
    levels: list[int] = field(default_factory=lambda: [-2, -1])
    num_words: int = 8192  # K per level; a multiple of the global batch data.batch_size
    inv_delta: float | None = 15.0  # base inverse temperature (R50 15, R18 10); None: hard assignment
    bow_pool: str = "max"  # max | avg: pooling of the codes over locations
    vocab_update: str = "local_average"  # local_average | no_averaging | global_average
    border: int = 1  # pixels dropped on each side of the teacher's maps
    mu_decay: float = 0.99  # EMA decay of the mean distance to the nearest word
    kappa: float = 8.0  # scale of the generated weights (R50 8, R18 5)
    learn_kappa: bool = False  # the paper keeps kappa fixed
    momentum: float = 0.99  # teacher EMA coefficient at step 0, cosine to 1 at the last step
    momentum_cosine: bool = True  # false: constant momentum
    online_classes: int = 0  # > 0: monitoring BN + linear classifier on detached teacher features
    vocab_plot: bool = True  # write vocabulary.png (patches most assigned to some words) each epoch

    def check(self, recipe) -> None:
        """Refuse, when the recipe is loaded, what OBoW cannot train with (one line each)."""
        data = recipe.data
        aug = data.augment
        if aug.local_views < 1:
            raise ConfigError(
                "method obow predicts the BoW from local patches too: set data.augment.local_views "
                "to 5 (the paper) or at least 1"
            )
        if aug.plain_views < 1:
            raise ConfigError(
                "method obow needs the teacher's plain view (centre crop + flip): set "
                "data.augment.plain_views=1"
            )
        # The queue takes one block of the global batch per step from a pointer, so its size must
        # be a whole number of blocks (the global batch does not depend on the process count).
        b = data.batch_size
        if self.num_words < 1 or self.num_words % b:
            raise ConfigError(
                f"method.num_words={self.num_words} must be a multiple of the global batch "
                f"data.batch_size={b}; e.g. {max(1, round(self.num_words / b)) * b}"
            )
        for key, value, valid in (
            ("bow_pool", self.bow_pool, ("max", "avg")),
            ("vocab_update", self.vocab_update, ("local_average", "no_averaging", "global_average")),
        ):
            if value not in valid:
                raise ConfigError(f"method.{key}: '{value}' is not one of {', '.join(valid)}")
        if self.border < 0:
            raise ConfigError(f"method.border: must be 0 or more, got {self.border}")
        if self.inv_delta is not None and not self.inv_delta > 0:
            raise ConfigError(
                f"method.inv_delta: must be positive (or null: hard assignment), got {self.inv_delta}"
            )
        if not self.levels:
            raise ConfigError("method.levels: needs at least one stage, e.g. [-2, -1]")
        for key in ("mu_decay", "momentum"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"method.{key}: must be in [0, 1], got {getattr(self, key)}")
        if not self.kappa > 0:
            raise ConfigError(f"method.kappa: must be positive, got {self.kappa}")


@register
class OBoW(Method):
    name = "obow"
    Config = OBoWConfig
    paper_norm = "syncbn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c, data = self.cfg, recipe.data
        aug = data.augment
        arch = recipe.model.backbone
        self.stages = stage_names(self.backbone, list(c.levels), arch)
        self.teacher_size = aug.plain_size or data.image_size
        shapes = check_maps(self.backbone, self.stages, self.teacher_size, c.border, c.vocab_update, arch)
        self.level_shapes = shapes
        self.vocab = nn.ModuleList(Vocabulary(c.num_words, ch, c.mu_decay) for ch, _, _ in shapes)
        self.generators = nn.ModuleList(
            WeightGenerator(ch, self.feat_dim, 2 * self.feat_dim, c.kappa, c.learn_kappa)
            for ch, _, _ in shapes
        )
        self.teacher = momentum_copy(self.backbone)
        self.classifier = None
        if c.online_classes > 0:
            self.classifier = nn.Sequential(
                nn.BatchNorm1d(self.feat_dim), nn.Linear(self.feat_dim, c.online_classes)
            )
        self.n_global, self.n_local = data.views, aug.local_views
        self.accum = recipe.train.grad_accum

    def frozen_modules(self) -> list[nn.Module]:
        return [self.teacher]

    def local_norm_modules(self) -> list[nn.Module]:
        # The teacher's BN is global like the student's (official code); the generators see the
        # same vocabulary on every process and the monitor is off the learning path.
        return [m for m in (self.generators, self.classifier) if m is not None]

    # -- teacher ---------------------------------------------------------------------------------
    def teacher_momentum(self, it: int | None = None) -> float:
        """alpha at optimizer step ``it``: 1 - (1 - m0) (1 + cos(pi it / T)) / 2, or m0 if constant."""
        it = int(self.step) // self.accum if it is None else it
        if not self.cfg.momentum_cosine or not self.total_steps:
            return self.cfg.momentum
        return cosine_momentum(self.cfg.momentum, it, self.total_steps)

    @torch.no_grad()
    def _location_draws(self, level: int, n_local: int, count: int) -> torch.Tensor:
        """This process's rows of one uniform draw per image of the global batch."""
        seed = (int(self.recipe.seed) * 1_000_003 + int(self.step)) * 31 + level
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randint(0, count, (n_local * world_size(),), generator=gen)
        return draws[rank() * n_local : (rank() + 1) * n_local]

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, dict]:
        """BoW targets ``[B, K]`` per level from the teacher's view ``x``; also updates the queues.

        Returns the targets, the teacher's pooled feature ``[B, D]`` and perplexity logs.
        """
        maps, pooled = stage_maps(self.teacher, x, self.stages)
        b = self.cfg.border
        targets, logs = [], {}
        with torch.autocast(x.device.type, enabled=False):  # distances need full precision
            for lvl, (fmap, vocab) in enumerate(zip(maps, self.vocab)):
                fmap = fmap.float()
                if b:
                    fmap = fmap[:, :, b:-b, b:-b]
                d = squared_distances(fmap, vocab.words)  # the vocabulary before this step's enqueue
                mean_min = d.amin(1).mean()
                vocab.update_mu(all_reduce_sum(mean_min) / world_size())
                bow = bow_pool(soft_assign(d, self.cfg.inv_delta, vocab.mu), self.cfg.bow_pool)
                targets.append(bow)
                count = pooled_locations(fmap.shape[2], fmap.shape[3], self.cfg.vocab_update)
                where = self._location_draws(lvl, fmap.shape[0], count).to(fmap.device)
                vocab.enqueue(gather_nograd(sample_local_features(fmap, self.cfg.vocab_update, where)))
                perp_b, perp_i = perplexity(bow)
                logs[f"perp_batch_l{lvl}"], logs[f"perp_image_l{lvl}"] = perp_b, perp_i
        return targets, pooled, logs

    # -- step ------------------------------------------------------------------------------------
    def training_step(self, batch: dict) -> dict:
        views = batch["views"]
        g, n_loc = self.n_global, self.n_local
        x_teacher = views[g + n_loc]
        words = [v.words.detach().clone() for v in self.vocab]  # before this step's enqueue
        weights = [gen.weights(w) for gen, w in zip(self.generators, words)]
        n = x_teacher.shape[0]
        h_global = self.backbone(torch.cat(views[:g], 0))  # one pass per kind: BN over its crops
        h_local = self.backbone(torch.cat(views[g : g + n_loc], 0))
        with torch.no_grad():
            if int(self.step) % self.accum == 0:  # once per optimizer step
                momentum_update(self.backbone, self.teacher, self.teacher_momentum())
            targets, t_pooled, logs = self.targets(x_teacher)
        loss = 0.0
        out: dict = {}
        for kind, h, copies in (("global", h_global, g), ("local", h_local, n_loc)):
            per_level = [
                bow_loss(gen.kappa * h @ w.T, t.repeat(copies, 1))
                for gen, w, t in zip(self.generators, weights, targets)
            ]
            kind_loss = torch.stack(per_level).mean()
            out[f"loss_{kind}"] = kind_loss.detach()
            loss = loss + kind_loss
        if self.classifier is not None:
            logits = self.classifier(t_pooled.detach())
            ce = F.cross_entropy(logits, batch["label"])
            loss = loss + ce
            out["online_ce"] = ce.detach()
            out["online_top1"] = (logits.argmax(1) == batch["label"]).float().mean()
        out["teacher_momentum"] = self.teacher_momentum()
        return {"loss": loss, "feats": h_global[:n], **out, **logs}

    # -- picture ---------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, run_dir) -> None:
        if not self.cfg.vocab_plot or run_dir is None or rank() != 0:
            return
        try:
            from .obow_picture import draw_vocabulary

            draw_vocabulary(self, Path(run_dir) / "vocabulary.png", epoch)
        except Exception as e:  # noqa: BLE001 - a plot must never cost the run its checkpoint
            import warnings

            warnings.warn(f"vocabulary.png not drawn: {e}", stacklevel=2)
