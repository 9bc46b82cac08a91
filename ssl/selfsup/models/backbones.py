"""Backbone factory over timm's public API.

``create_backbone(model_cfg)`` returns a timm model built with ``num_classes=0`` (pooled features,
``model.num_features`` wide). Two options adapt ImageNet architectures to tiny images and CPUs:

- ``cifar_stem``: ResNet first conv becomes 3x3 stride 1 and the max-pool is removed (the usual
  CIFAR variant, as in SimCLR's CIFAR experiments and the Hallucinator's configs);
- ``width``: ResNet channel widths ``(w, 2w, 4w, 8w)`` and stem ``w`` (64 is standard).

Exporting and loading encoders (architecture description, weights, fingerprint) is
:mod:`selfsup.models.export`.
"""

from __future__ import annotations

import difflib

import timm
import torch.nn as nn

from ..errors import ConfigError


def timm_create_kwargs(arch: dict) -> dict:
    """timm keyword arguments (channel widths) an architecture dict implies."""
    kwargs = dict(arch.get("kwargs") or {})
    if arch.get("width"):
        w = int(arch["width"])
        if not arch["backbone"].startswith(("resnet", "resnext", "wide_resnet")):
            raise ConfigError(f"model.width applies to ResNet-family backbones, not '{arch['backbone']}'")
        kwargs.setdefault("channels", (w, 2 * w, 4 * w, 8 * w))
        kwargs.setdefault("stem_width", w)
    return kwargs


def _apply_cifar_stem(model: nn.Module, name: str) -> None:
    if not (hasattr(model, "conv1") and hasattr(model, "maxpool") and isinstance(model.conv1, nn.Conv2d)):
        raise ConfigError(
            f"model.cifar_stem is for ResNet-style backbones with conv1 + maxpool, not '{name}'"
        )
    out = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, out, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def check_backbone(name: str) -> None:
    """Refuse a name timm does not know, suggesting the closest ones."""
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"model.backbone: timm has no model '{name}'{hint}")


def build_backbone(arch: dict) -> nn.Module:
    """The timm backbone an architecture dict describes (see :func:`selfsup.models.export.arch_dict`)."""
    name = arch["backbone"]
    check_backbone(name)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, **timm_create_kwargs(arch))
    except TypeError as e:
        raise ConfigError(f"model.kwargs: timm rejected the arguments for '{name}': {e}") from None
    if arch.get("cifar_stem"):
        _apply_cifar_stem(model, name)
    return model


def create_backbone(model_cfg) -> nn.Module:
    """A timm backbone without classifier; ``model.num_features`` is its output width."""
    return build_backbone(
        {
            "backbone": model_cfg.backbone,
            "cifar_stem": bool(model_cfg.cifar_stem),
            "width": model_cfg.width,
            "kwargs": dict(model_cfg.kwargs or {}),
        }
    )


def feature_width(model_cfg) -> int:
    """``num_features`` of the recipe's backbone, built on the meta device (no memory, no init cost)."""
    import torch

    with torch.device("meta"):
        return int(create_backbone(model_cfg).num_features)
