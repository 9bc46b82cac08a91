"""Supervised classification: backbone + linear classifier trained with softmax cross-entropy.

This is the training setting of the backward-compatibility papers (BCT, Shen et al. CVPR 2020,
arXiv 2003.11942; BT², Zhou et al. ICCV 2023, arXiv 2211.03989; OCA, Ricci et al. 2024, arXiv
2408.08793): an old model trained on part of the classes (``data.classes``), a new one on all of
them. The loss is ``CE(W h + b, y)`` on the first view, with optional label smoothing (0.1 in the
BT²/OCA backbones), where ``h = backbone(x)`` is ``[B, feat_dim]``.

The exported encoder is the backbone; the classifier is exported too (``export_info`` ->
``classifier``) because BCT's influence loss in the paper's form needs the frozen old classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import MethodConfig
from .base import Method, register


@dataclass
class SupervisedConfig(MethodConfig):
    name: str = "supervised"
    num_classes: int | None = None  # None: the data source's label space (all classes, not data.classes)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    bias: bool = True  # classifier bias


def source_num_classes(data_cfg) -> int:
    """Size of the label space of the recipe's data source (ignores ``data.classes``)."""
    from ..data.catalog import build_source

    src = build_source(data_cfg, "train")
    n = int(getattr(src, "num_classes", 0) or 0)
    # Some sources do not declare their class count; the largest label then decides.
    return max(n, int(src.labels.max()) + 1)


@register
class Supervised(Method):
    name = "supervised"
    Config = SupervisedConfig
    paper_norm = "bn"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        c = self.cfg
        self.num_classes = int(c.num_classes or source_num_classes(recipe.data))
        self.classifier = nn.Linear(self.feat_dim, self.num_classes, bias=c.bias)
        # Compat heads that bring their own classifier (BT², OCA) switch this off, so the only
        # classification loss is theirs (see selfsup.compat).
        self.classifier_loss = True

    def disable_classifier(self) -> None:
        """Drop this method's CE term; the classifier is frozen so no optimizer or DDP sees it."""
        self.classifier_loss = False
        for p in self.classifier.parameters():
            p.requires_grad_(False)

    def training_step(self, batch: dict) -> dict:
        x = batch["views"][0]
        y = batch["label"]
        h = self.backbone(x)  # [B, feat_dim]
        if not self.classifier_loss:
            return {"loss": h.new_zeros(()), "feats": h}
        logits = self.classifier(h)  # [B, num_classes]
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        with torch.no_grad():
            acc = (logits.argmax(1) == y).float().mean()
        return {"loss": loss, "acc": acc, "feats": h}

    def export_info(self) -> dict:
        """The classifier ``W [C, feat_dim]``, ``b [C]`` and the trained class ids (BCT's old classifier)."""
        classes = self.recipe.data.classes
        return {
            "classifier": {
                "weight": self.classifier.weight.detach().cpu().clone(),
                "bias": None if self.classifier.bias is None else self.classifier.bias.detach().cpu().clone(),
                "classes": list(range(self.num_classes)) if classes is None else [int(c) for c in classes],
            }
        }
