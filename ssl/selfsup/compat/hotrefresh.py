"""Self-supervised compatibility: Hot-Refresh's new-to-old contrastive term.

Zhang et al., "Hot-Refresh Model Upgrades with Regression-Free Compatible Training in Image
Retrieval", ICLR 2022 (RACT). Works with any method (SimCLR, MoCo,
SimSiam, supervised): it needs no labels. With ``n_i`` the new feature of image ``i`` (backbone
features of the method's first view, matched to ``d_old`` dims) and ``o_j`` the frozen old
model's feature of image ``j`` in the batch, both L2-normalised::

    L_compat = lambda * mean_i -log( exp(<n_i, o_i>/T) / sum_j exp(<n_i, o_j>/T) )

i.e. InfoNCE with positive ``<new_i, old_i>`` and negatives ``new_i . old_j`` (j != i), T = 0.01
(as in the OpenCompatible code). RACT's extra new-new negatives "over other classes" need labels and are left out; with one
process the negatives are the local batch (RACT gathers them across GPUs).

Dimensions: ``match: slice`` (default; docs/methods/compat.md, the old-compatible sub-space is the first
``d_old`` dims) needs a backbone at least ``d_old`` wide; ``match: project`` learns a linear map
``D -> d_old`` that becomes part of the exported encoder (``backbone + LinearHead``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.compat_heads import LinearHead
from .common import (
    CompatConfig,
    CompatTerm,
    check_dims,
    check_preprocessing,
    install_export,
    load_frozen,
    register,
)


@dataclass
class HotRefreshConfig(CompatConfig):
    name: str = "hotrefresh"
    weight: float = 1.0  # lambda
    temperature: float = 0.01  # T (OpenCompatible code)
    match: str = "slice"  # slice | project


def new_to_old_nce(new: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of ``new [B, d]`` against ``old [B, d]`` (both L2-normalised): positives on the diagonal."""
    logits = new @ old.t() / temperature  # [B, B]
    return F.cross_entropy(logits, torch.arange(new.shape[0], device=new.device))


class HotRefreshTerm(CompatTerm):
    def __init__(self, old, d_old: int, cfg: HotRefreshConfig, head: LinearHead | None) -> None:
        super().__init__()
        self.frozen["old"] = old
        self.d_old = d_old
        self.head = head
        self.cfg = cfg

    def forward(self, method, batch: dict, out: dict) -> dict:
        z = out["feats"].float()
        z = self.head(z) if self.head is not None else z[:, : self.d_old]
        new = F.normalize(z, dim=1)
        old = self.frozen_features("old", batch["views"][0])
        loss = new_to_old_nce(new, old, self.cfg.temperature)
        with torch.no_grad():
            acc = ((new @ old.t()).argmax(1) == torch.arange(new.shape[0], device=new.device)).float().mean()
        return {"loss": self.cfg.weight * loss, "hotrefresh_loss": loss.detach(), "hotrefresh_acc": acc}


def attach(method, recipe, cfg: HotRefreshConfig) -> None:
    if cfg.match not in ("slice", "project"):
        raise ConfigError(f"compat.match: '{cfg.match}' is not one of slice, project")
    if cfg.temperature <= 0:
        raise ConfigError(f"compat.temperature: must be positive, got {cfg.temperature}")
    old, info = load_frozen(cfg.old)
    check_preprocessing(info, recipe.data)
    d_old = int(info["dim"])
    head = None
    if cfg.match == "slice":
        check_dims(d_old, int(method.feat_dim), "backbone")
    else:
        head = LinearHead(int(method.feat_dim), d_old)
    method.extra_terms.append(HotRefreshTerm(old, d_old, cfg, head))
    if head is not None:
        install_export(method, head.export, head.spec(), [info["fingerprint"]])
    else:
        install_export(method, compatible_with=[info["fingerprint"]])


register(HotRefreshConfig, attach)
