"""Shared pieces of compatible training: the frozen old model, the pseudo-classifier, term base.

Method card: ``/work/shared/reference/compat.md``. Every compat method trains a *new* model whose
retrieval feature, sliced to the old model's dimension ``d_old``, is comparable with the frozen
*old* model's feature (new queries against an old gallery, no backfilling).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, ConfigError
from ..utils.registry import Registry


@dataclass(frozen=True)
class CompatSpec:
    """A compat method: its recipe config and ``attach(method, recipe, cfg)``."""

    config: type
    attach: Callable[..., None]


COMPAT: Registry[CompatSpec] = Registry("compat method")


def register(config: type, attach: Callable[..., None]) -> None:
    """Make a compat method available to recipes as ``compat: {name: <config.name>, ...}``."""
    COMPAT.add(config.name, CompatSpec(config, attach))


@dataclass
class CompatConfig:
    """Fields every compat method has."""

    name: str = "independent"
    old: str | None = None  # the old model's encoder.pt (or checkpoints/last.pt); CLI: --old


# ---------------------------------------------------------------------------------------------
# The frozen old model


# How to make each frozen model that a compat method loads, when its file is missing.
MISSING_HINT = {
    "compat.old": "train the old model first (e.g. selfsup pretrain recipes/compat/old.yaml) and pass its "
    "encoder.pt",
    "compat.teacher": "BT² distils from an independently trained NEW model: train it first (e.g. selfsup "
    "compat train --old OLD/encoder.pt recipes/compat/new_independent.yaml) and set compat.teacher to its "
    "encoder.pt (or compat.lambda1: 0)",
}


def load_frozen(path: str | None, what: str = "compat.old") -> tuple[nn.Module, dict]:
    """Load an exported encoder in eval mode with gradients off; ``info`` as :func:`load_encoder`.

    Raises :class:`CheckpointError` with a one-line fix when the path is unset, missing or not an
    encoder.
    """
    from ..models.export import load_encoder

    if not path:
        raise CheckpointError(
            f"{what} is not set; pass --old path/to/old/encoder.pt (selfsup compat train) "
            f"or set {what} in the recipe"
        )
    if not Path(path).is_file():
        raise CheckpointError(
            f"{what}: checkpoint '{path}' not found; {MISSING_HINT.get(what, MISSING_HINT['compat.old'])}"
        )
    try:
        model, info = load_encoder(path)
    except CheckpointError as e:
        raise CheckpointError(f"{what}: {e}") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), info


def check_preprocessing(info: dict, data_cfg, what: str = "compat.old") -> None:
    """The frozen model sees the new model's training batches: its input format must match."""
    data = (info.get("recipe") or {}).get("data") or {}
    for key in ("image_size", "mean", "std"):
        if key in data and data[key] != getattr(data_cfg, key):
            raise ConfigError(
                f"{what} was trained with data.{key}={data[key]} but this recipe uses "
                f"{getattr(data_cfg, key)}; set data.{key} to the old model's value"
            )


def check_dims(d_old: int, d_new: int, where: str) -> None:
    """New/old retrieval compares the first ``d_old`` dims of the new feature with the old feature."""
    if d_new < d_old:
        raise ConfigError(
            f"old model dim {d_old} and new {where} dim {d_new} cannot be compared: the new feature "
            f"needs at least {d_old} dims (its first {d_old} are matched to the old ones); "
            "use a wider new backbone (model.width) or more compat extra dims"
        )


# ---------------------------------------------------------------------------------------------
# Pseudo-classifier (BT-2 / OCA "BCT" baseline; card section 2)


def class_means(feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean of L2-normalised features, not re-normalised.

    ``feats [N, d]``, ``labels [N]`` in ``[0, num_classes)`` -> ``[num_classes, d]``; a class
    without samples gets a zero row.
    """
    z = F.normalize(feats.float(), dim=1)
    sums = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, labels.long(), z)
    counts = torch.bincount(labels.long(), minlength=num_classes).clamp(min=1).to(z.dtype)
    return sums / counts[:, None]


def training_features(
    encoder: nn.Module, recipe, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[N, d]`` and labels ``[N]`` of the recipe's (new) training set under ``encoder``.

    Uses the evaluation transform (resize + normalise, no augmentation) through
    :func:`selfsup.data.embed.extract_features`, so the result is deterministic; the BT-2/OCA
    code averages over one pass of its training transform instead.
    """
    from ..data.catalog import build_source
    from ..data.embed import extract_features

    src = build_source(recipe.data, "train")
    device = next(encoder.parameters()).device
    feats, labels = extract_features(
        encoder,
        src,
        recipe.data,
        batch_size or recipe.eval.batch_size,
        progress=False,
        device=device,
        desc="compat/old features",
    )
    return torch.from_numpy(feats), torch.from_numpy(labels)


def pseudo_classifier(encoder: nn.Module, recipe, num_classes: int) -> torch.Tensor:
    """``P [num_classes, d_old]``: class means of the old model's normalised training features."""
    feats, labels = training_features(encoder, recipe)
    if int(labels.max()) >= num_classes:
        raise ConfigError(
            f"the training data has label {int(labels.max())} but the method has {num_classes} classes; "
            "raise method.num_classes"
        )
    return class_means(feats, labels, num_classes)


def num_classes_of(method) -> int:
    n = getattr(method, "num_classes", None)
    if n is None:
        raise ConfigError(
            "this compat method needs class labels: use method.name: supervised "
            "(for self-supervised methods use compat.name: hotrefresh)"
        )
    return int(n)


def ls_ce(logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Softmax cross-entropy with label smoothing; ``logits [B, C]``, ``y [B]`` -> scalar."""
    return F.cross_entropy(logits, y, label_smoothing=smoothing)


# ---------------------------------------------------------------------------------------------
# Term base


class CompatTerm(nn.Module):
    """A loss term ``term(method, batch, out) -> {"loss": ..., scalars}`` against frozen models.

    Frozen networks (old model, teacher) are registered in ``self.frozen`` so they follow the
    method across devices and into checkpoints (exact resume), but they never train: gradients
    are off and ``train()`` keeps them in eval mode (their BatchNorm statistics stay fixed).
    """

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.ModuleDict()

    def train(self, mode: bool = True) -> CompatTerm:
        super().train(mode)
        for m in self.frozen.values():
            m.eval()
        return self

    @torch.no_grad()
    def frozen_features(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` L2-normalised features of a frozen network on the batch images ``x``."""
        return F.normalize(self.frozen[key](x).float(), dim=1)


def install_export(method, head_export=None, arch_head: dict | None = None, compatible_with=()) -> None:
    """Make ``method.encoder()`` / ``method.export_info()`` produce the compatible retrieval model.

    With a head, the exported encoder is ``nn.Sequential(backbone, head)`` (rebuilt by
    :func:`selfsup.models.export.build_from_arch` from ``arch["head"] = arch_head``);
    ``compatible_with`` lists the old model's fingerprint for index upgrades. Instance attributes
    override the class methods because the trainer (which we do not change) calls these two.
    """
    prev_info = getattr(method, "export_info", None)
    fps = [str(f) for f in compatible_with]

    def export_info() -> dict:
        info = dict(prev_info()) if prev_info is not None else {}
        if fps:
            info["compatible_with"] = fps
        if arch_head is not None:
            info["arch_head"] = dict(arch_head)
        return info

    method.export_info = export_info
    if head_export is not None:
        backbone = method.backbone

        def encoder() -> nn.Module:
            enc = nn.Sequential(backbone, head_export())
            enc.num_features = int(arch_head["out_dim"])
            return enc

        method.encoder = encoder


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()
