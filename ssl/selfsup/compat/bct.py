"""BCT: backward-compatible training with an influence loss (Shen et al., CVPR 2020, arXiv 2003.11942).

The new embedding ``phi_new [B, D]`` must also be classified by a *frozen* classifier built from
the old model (docs/methods/compat.md), through its first ``d_old`` dims (openBCT truncates the same way):

    L = L_method + lambda * CE(n(phi_new[:, :d_old]) @ W_old^T + b_old, y)

with ``n`` the L2 normalisation when the frozen classifier works on normalised features. Two forms
of ``W_old [C, d_old]``:

- ``classifier: pseudo`` (default; the BT-2 / OCA "BCT" baseline): ``W_old = P``, the per-class
  means of the old model's L2-normalised features over the *new* training set (all C classes),
  no bias, no logit scale, label smoothing 0.1, ``lambda = 10``, and ``n`` = normalise: the
  BT-2/OCA models emit normalised features (``norm_feature: True``), so their influence logits
  are cosines scaled by ``|P_c| <= 1``;
- ``classifier: old`` (the paper): the old model's own frozen classifier for the classes it was
  trained on, and for classes absent from the old training set synthesised weights = the mean
  old-model feature of that class on the new training data (bias 0); ``lambda = 1``, plain CE;
  ``n`` as the old classifier was trained (``method.normalize`` of the old run).

Why the normalisation matters: on raw features the logits ``phi @ P^T`` grow with ``|phi|``, so
once the argmax is right the loss is driven to zero by a larger norm and stops pulling the new
feature's *direction* towards its old class mean -- the only thing a cosine retrieval against the
old gallery sees. On unit features the logits stay within ``[-1, 1]``, the loss never saturates and
keeps aligning directions. ``normalize: false`` restores the raw form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..utils.checkpoint import read_checkpoint
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
class BCTConfig(CompatConfig):
    name: str = "bct"
    classifier: str = "pseudo"  # pseudo (BT-2/OCA baseline) | old (paper: frozen old classifier)
    weight: float | None = None  # lambda; None: 10 for pseudo, 1 for old
    label_smoothing: float | None = None  # None: 0.1 for pseudo, 0 for old
    normalize: bool | None = None  # L2-normalise phi[:, :d_old] first; None: True for pseudo, old: as trained


def influence_loss(
    feats: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    smoothing: float,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCT influence loss and accuracy of the frozen old classifier on new features.

    ``feats [B, D >= d_old]`` (sliced to the first ``d_old``, then L2-normalised when
    ``normalize``), ``y [B]``, ``weight [C, d_old]``, ``bias [C]`` or None. Returns ``(loss, acc)``
    scalars; gradients flow into ``feats`` only.
    """
    x = feats[:, : weight.shape[1]]
    if normalize:
        x = F.normalize(x, dim=1)
    logits = x @ weight.t()
    if bias is not None:
        logits = logits + bias
    return ls_ce(logits, y, smoothing), (logits.detach().argmax(1) == y).float().mean()


class BCTTerm(CompatTerm):
    """``term(method, batch, out)``: lambda x influence loss on ``out["feats"]``."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lam: float,
        smoothing: float,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float().clone())  # [C, d_old], frozen
        self.register_buffer("bias", None if bias is None else bias.float().clone())
        self.lam, self.smoothing, self.normalize = float(lam), float(smoothing), bool(normalize)

    def forward(self, method, batch: dict, out: dict) -> dict:
        loss, acc = influence_loss(
            out["feats"].float(), batch["label"], self.weight, self.bias, self.smoothing, self.normalize
        )
        return {"loss": self.lam * loss, "bct_loss": loss.detach(), "bct_acc": acc}


def old_classifier(old_path: str, d_old: int) -> tuple[torch.Tensor, torch.Tensor | None, list[int], bool]:
    """The old model's exported classifier ``(W [C_old, d_old], b [C_old] | None, trained class ids,
    whether it classifies normalised features)``."""
    ckpt = read_checkpoint(old_path)
    cls = ckpt.get("classifier")
    if cls is None and "model" in ckpt and "classifier.weight" in ckpt["model"]:
        sd = ckpt["model"]
        classes = (ckpt.get("recipe") or {}).get("data", {}).get("classes")
        norm = (ckpt.get("recipe") or {}).get("method", {}).get("normalize", False)
        cls = {
            "weight": sd["classifier.weight"],
            "bias": sd.get("classifier.bias"),
            "classes": classes,
            "normalize": norm,
        }
    if cls is None:
        raise ConfigError(
            f"compat.classifier=old needs an old model trained with method supervised (its classifier is "
            f"exported); '{old_path}' has none; use compat.classifier: pseudo"
        )
    w = torch.as_tensor(cls["weight"]).float()
    if w.shape[1] != d_old:
        raise ConfigError(f"the old classifier in '{old_path}' has input dim {w.shape[1]}, not {d_old}")
    b = None if cls.get("bias") is None else torch.as_tensor(cls["bias"]).float()
    classes = cls.get("classes")
    trained = list(range(w.shape[0])) if classes is None else [int(c) for c in classes]
    # Encoders exported before the classifier recorded it were trained on raw features.
    return w, b, trained, bool(cls.get("normalize", False))


def attach(method, recipe, cfg: BCTConfig) -> None:
    if cfg.classifier not in ("pseudo", "old"):
        raise ConfigError(f"compat.classifier: '{cfg.classifier}' is not one of pseudo, old")
    num_classes = num_classes_of(method)
    old, info = load_frozen(cfg.old)
    check_preprocessing(info, recipe.data)
    d_old = info["dim"]
    check_dims(d_old, method.feat_dim, "backbone")
    feats, labels = training_features(old, recipe)  # [N, d_old] old features of the new training set
    if cfg.classifier == "pseudo":
        weight, bias = class_means(feats, labels, num_classes), None
        lam = 10.0 if cfg.weight is None else cfg.weight
        smoothing = 0.1 if cfg.label_smoothing is None else cfg.label_smoothing
        normalize = True if cfg.normalize is None else cfg.normalize
    else:
        w_old, b_old, trained, old_norm = old_classifier(cfg.old, d_old)
        normalize = old_norm if cfg.normalize is None else cfg.normalize
        weight = torch.zeros(num_classes, d_old)
        bias = torch.zeros(num_classes)
        # Synthesised rows for classes the old model never saw: their mean old feature, in the
        # form the classifier sees (normalised or raw).
        seen = F.normalize(feats.float(), dim=1) if normalize else feats.float()
        sums = torch.zeros(num_classes, d_old).index_add_(0, labels, seen)
        counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
        weight[:] = sums / counts[:, None]
        for c in trained:
            if 0 <= c < min(num_classes, w_old.shape[0]):
                weight[c] = w_old[c]
                if b_old is not None:
                    bias[c] = b_old[c]
        lam = 1.0 if cfg.weight is None else cfg.weight
        smoothing = 0.0 if cfg.label_smoothing is None else cfg.label_smoothing
    method.extra_terms.append(BCTTerm(weight, bias, lam, smoothing, normalize))
    install_export(method, compatible_with=[info["fingerprint"]])


register(BCTConfig, attach)
