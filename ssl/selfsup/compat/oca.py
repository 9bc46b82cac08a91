"""OCA: backward-compatible aligned representations via an orthogonal transformation layer.

Ricci et al., ECCV 2024 workshops, arXiv 2408.08793 (card section 2). The retrieval feature is
``h = normalize(embed(backbone(x))) [B, d_old + k]``: its first ``d_old`` dims ``h_bct`` are the
old-compatible sub-space, the rest additional capacity. The classifier sees ``h`` only through an
orthogonal layer with a learnable bias, ``h_perp = T h + t`` (``T`` orthogonal
``(d_old + k) x (d_old + k)``), so it can use the extra dims without distorting the geometry::

    L = w_ce * LS_CE(fc_out(h_perp), y) + w_pseudo * LS_CE(normalize(h_bct) @ P^T, y)
        + w_anchor * mean(1 - cos(P[y], normalize(h_bct)))

``P [C, d_old]`` are the old model's class prototypes (class means of its normalised features over
the new training set), playing the role of the old classifier. Card defaults (hard-coded in the
OCA code): 5 / 10 / 5, label smoothing 0.1, ``k = 32`` on 128 (scaled here to ``d_old // 4``).
``T`` and ``fc_out`` are training-only; the exported encoder is ``backbone + EmbedHead`` giving
``h``. The method's own classifier is switched off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.compat_heads import EmbedHead, ortho_linear
from .common import (
    CompatConfig,
    CompatTerm,
    check_preprocessing,
    class_means,
    install_export,
    load_frozen,
    ls_ce,
    num_classes_of,
    register,
    training_features,
)


@dataclass
class OCAConfig(CompatConfig):
    name: str = "oca"
    extra_dims: int | None = None  # k; None: d_old // 4 (card: 32 on 128)
    w_ce: float = 5.0  # classification through the orthogonal layer
    w_pseudo: float = 10.0  # pseudo-classifier CE on normalize(h_bct)
    w_anchor: float = 5.0  # prototype anchoring 1 - cos(P[y], h_bct)
    label_smoothing: float = 0.1  # label smoothing of the classification terms


def oca_losses(
    h: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, protos: torch.Tensor, smoothing: float
) -> dict[str, torch.Tensor]:
    """OCA's three loss terms (unweighted).

    ``h [B, d_old + k]`` (normalised), ``logits [B, C]`` = ``fc_out(T h + t)``, ``y [B]``,
    ``protos [C, d_old]``. Returns scalars ``ce``, ``pseudo_ce`` and ``anchor``.
    """
    h_bct = F.normalize(h[:, : protos.shape[1]], dim=1)
    return {
        "ce": ls_ce(logits, y, smoothing),
        "pseudo_ce": ls_ce(h_bct @ protos.t(), y, smoothing),
        "anchor": (1.0 - F.cosine_similarity(protos[y], h_bct, dim=1)).mean(),
    }


class OCATerm(CompatTerm):
    def __init__(self, head: EmbedHead, num_classes: int, protos: torch.Tensor, cfg: OCAConfig) -> None:
        super().__init__()
        d = head.out_dim
        self.head = head
        self.T = ortho_linear(d, bias=True)  # orthogonal weight + free bias (card pitfall 5)
        self.fc_out = nn.Linear(d, num_classes, bias=False)
        self.register_buffer("protos", protos.float().clone())  # [C, d_old], frozen
        self.cfg = cfg

    def forward(self, method, batch: dict, out: dict) -> dict:
        c = self.cfg
        h = self.head(out["feats"].float())
        terms = oca_losses(h, self.fc_out(self.T(h)), batch["label"], self.protos, c.label_smoothing)
        loss = c.w_ce * terms["ce"] + c.w_pseudo * terms["pseudo_ce"] + c.w_anchor * terms["anchor"]
        return {"loss": loss, **{f"oca_{k}": v.detach() for k, v in terms.items()}}


def attach(method, recipe, cfg: OCAConfig) -> None:
    num_classes = num_classes_of(method)
    old, info = load_frozen(cfg.old)
    check_preprocessing(info, recipe.data)
    d_old = int(info["dim"])
    extra = int(cfg.extra_dims if cfg.extra_dims is not None else max(1, d_old // 4))
    if extra < 0:
        raise ConfigError(f"compat.extra_dims: must be at least 0, got {extra}")
    feats, labels = training_features(old, recipe)
    protos = class_means(feats, labels, num_classes)
    head = EmbedHead(int(method.feat_dim), d_old + extra)
    if hasattr(method, "disable_classifier"):
        method.disable_classifier()
    method.extra_terms.append(OCATerm(head, num_classes, protos, cfg))
    install_export(method, head.export, head.spec(), [info["fingerprint"]])


register(OCAConfig, attach)
