"""BT²: backward-compatible training with basis transformation (Zhou et al., ICCV 2023, arXiv 2211.03989).

The new model's retrieval feature ``phi [B, k + d_new]`` is an orthogonal transformation of
``[u; C f]`` (see :class:`selfsup.models.compat_heads.BT2Head`): the first ``d_old`` dims ``b`` are the
old-compatible part, the remaining ones extra capacity. With ``b_hat = normalize(b)`` and the
pseudo-classifier ``P [C, d_old]`` (class means of the old model's normalised features over the
new training set), the loss is (docs/methods/compat.md)::

    L = CE(fc_out(f), y) + l2 * LS_CE(b_hat P^T, y) + l3 * (1 - mean <phi_old(x), b_hat>)
        + l1 * (1 - mean <phi'_new(x), f>)

with ``phi_old`` the frozen old model and ``phi'_new`` a frozen *independently trained* new model
(``compat.teacher``), both L2-normalised. Card and BT-2 defaults: ``l1, l2, l3 = 1, 10, 5``; 32
extra dims on 128 (scaled here to ``d_old // 4``); ``C = 2``; plain CE in both CE terms (the BT-2
transfer trainer calls ``nn.CrossEntropyLoss()`` for both; its config's label smoothing is unused).

Backbone layout, as in BT-2's ``ResNet_ortho``: the backbone emits ``d_new + d_old`` features;
``f`` is the first ``d_new`` of them and the remaining ``d_old`` reach the model only through the
extra-dims branch ``u = normalize(fc3(relu(z)))`` (which reads all of ``z``). The default
``new_dim`` is therefore ``D - d_old``: give the new backbone a last stage ``d_old`` channels wider
than the teacher's (``model.kwargs.channels``). With ``new_dim = D`` (``f`` and ``u`` from the same
features) the new branch has no capacity of its own: ``b`` holds ``u`` and 3/4 of ``P C f``, so the
old-alignment and pseudo-classifier terms (weights 5 and 10) pull all of ``f`` towards the old
model and new/new falls to BCT's level.

Differences from the BT-2 code, on purpose: the frozen features are computed on the fly on the
same augmented view the new model sees (the code precomputes them once per image path); ``fc3``
has exactly ``k`` outputs (the code uses the first ``k`` of 128). The method's own classifier is
switched off: ``fc_out`` on ``f`` is the classification loss. The exported encoder is
``backbone + BT2Head`` producing ``phi``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.compat_heads import BT2Head
from .common import (
    CompatConfig,
    CompatTerm,
    check_dims,
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
class BT2Config(CompatConfig):
    name: str = "bt2"
    teacher: str | None = None  # encoder.pt of the independently trained new model (needed when lambda1 > 0)
    extra_dims: int | None = None  # k; None: d_old // 4 (the papers: 32 on 128)
    new_dim: int | None = None  # d_new: first backbone dims forming f; None: D - d_old (BT-2: 128 of 256)
    scale: float = 2.0  # C
    lambda1: float = 1.0  # distillation from the independent new model
    lambda2: float = 10.0  # pseudo-classifier CE on b_hat
    lambda3: float = 5.0  # alignment of b_hat with the old feature
    label_smoothing: float = 0.0  # on the pseudo-classifier CE (BT-2: none; the first CE never has any)


def bt2_losses(
    parts: dict[str, torch.Tensor],
    logits: torch.Tensor,
    y: torch.Tensor,
    pseudo: torch.Tensor,
    old_feat: torch.Tensor,
    teacher_feat: torch.Tensor | None,
    smoothing: float,
) -> dict[str, torch.Tensor]:
    """The four BT² loss terms (unweighted).

    ``parts`` from :meth:`BT2Head.parts`; ``logits [B, C]`` = ``fc_out(f)``; ``y [B]``;
    ``pseudo [C, d_old]``; ``old_feat [B, d_old]`` and ``teacher_feat [B, d_new]`` L2-normalised
    (or None). Returns scalars ``ce``, ``pseudo_ce``, ``old_align``, ``distill`` (0 without teacher).
    """
    b_hat = F.normalize(parts["b"], dim=1)
    out = {
        "ce": F.cross_entropy(logits, y),
        "pseudo_ce": ls_ce(b_hat @ pseudo.t(), y, smoothing),
        "old_align": 1.0 - (old_feat * b_hat).sum(1).mean(),
    }
    if teacher_feat is None:
        out["distill"] = logits.new_zeros(())
    else:
        out["distill"] = 1.0 - (teacher_feat * parts["f"]).sum(1).mean()
    return out


class BT2Term(CompatTerm):
    def __init__(
        self,
        head: BT2Head,
        num_classes: int,
        pseudo: torch.Tensor,
        old: nn.Module,
        teacher: nn.Module | None,
        cfg: BT2Config,
    ) -> None:
        super().__init__()
        self.head = head
        self.fc_out = nn.Linear(head.new_dim, num_classes, bias=False)
        self.register_buffer("pseudo", pseudo.float().clone())  # [C, d_old], frozen
        self.frozen["old"] = old
        if teacher is not None:
            self.frozen["teacher"] = teacher
        self.cfg = cfg

    def forward(self, method, batch: dict, out: dict) -> dict:
        c = self.cfg
        x, y = batch["views"][0], batch["label"]
        parts = self.head.parts(out["feats"].float())
        teacher = self.frozen_features("teacher", x) if "teacher" in self.frozen else None
        terms = bt2_losses(
            parts,
            self.fc_out(parts["f"]),
            y,
            self.pseudo,
            self.frozen_features("old", x),
            teacher,
            c.label_smoothing,
        )
        loss = terms["ce"] + c.lambda2 * terms["pseudo_ce"] + c.lambda3 * terms["old_align"]
        if teacher is not None:
            loss = loss + c.lambda1 * terms["distill"]
        return {"loss": loss, **{f"bt2_{k}": v.detach() for k, v in terms.items()}}


def attach(method, recipe, cfg: BT2Config) -> None:
    num_classes = num_classes_of(method)
    old, info = load_frozen(cfg.old)
    check_preprocessing(info, recipe.data)
    d_old = int(info["dim"])
    d_in = int(method.feat_dim)
    extra = int(cfg.extra_dims if cfg.extra_dims is not None else max(1, d_old // 4))
    if cfg.new_dim is None and d_in <= d_old:
        raise ConfigError(
            f"BT² needs a new backbone of d_new + d_old features (BT-2: 128 + 128) but it has {d_in} and "
            f"the old model {d_old}: widen its last stage, e.g. model.kwargs.channels: "
            f"[w, 2w, 4w, {d_in + d_old}], or set compat.new_dim (all {d_in}: f and u share the features)"
        )
    new_dim = int(cfg.new_dim if cfg.new_dim is not None else d_in - d_old)
    if not 0 < new_dim <= d_in:
        raise ConfigError(f"compat.new_dim: {new_dim} must be between 1 and the backbone's {d_in} features")
    if extra < 1:
        raise ConfigError(f"compat.extra_dims: must be at least 1, got {extra}")
    check_dims(d_old, extra + new_dim, "BT² feature (extra_dims + new_dim)")
    teacher = None
    if cfg.lambda1 > 0:
        if not cfg.teacher:
            raise ConfigError(
                "compat.teacher: BT² distils from an independently trained new model; train "
                "recipes/compat/new_independent.yaml first and set compat.teacher to its encoder.pt "
                "(or set compat.lambda1: 0)"
            )
        teacher, tinfo = load_frozen(cfg.teacher, "compat.teacher")
        check_preprocessing(tinfo, recipe.data, "compat.teacher")
        if int(tinfo["dim"]) != new_dim:
            raise ConfigError(
                f"compat.teacher has {tinfo['dim']}-d features but BT²'s new branch f has {new_dim}; "
                "use a teacher with the same backbone or set compat.new_dim"
            )
    feats, labels = training_features(old, recipe)
    pseudo = class_means(feats, labels, num_classes)
    head = BT2Head(d_in, new_dim, d_old, extra, cfg.scale)
    if hasattr(method, "disable_classifier"):
        method.disable_classifier()
    method.extra_terms.append(BT2Term(head, num_classes, pseudo, old, teacher, cfg))
    install_export(method, head.export, head.spec(), [info["fingerprint"]])


register(BT2Config, attach)
