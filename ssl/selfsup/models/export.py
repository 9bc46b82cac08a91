"""Exported encoders: one place that describes, saves, loads and identifies a trained network.

An ``encoder.pt`` holds the architecture (``arch``: timm name, CIFAR stem, width, kwargs and, for a
compatible model, its retrieval head), the weights and the run's info (``model_id``,
``fingerprint``, ``compatible_with``, the training recipe). A plain backbone (no CIFAR stem, no
width, no head) loads straight into ``timm.create_model(name, num_classes=0)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError
from ..utils.checkpoint import load_model_state, read_checkpoint, save_checkpoint
from .backbones import build_backbone, timm_create_kwargs
from .compat_heads import build_head


def arch_dict(model_cfg) -> dict:
    return {
        "backbone": model_cfg.backbone,
        "cifar_stem": bool(model_cfg.cifar_stem),
        "width": model_cfg.width,
        "kwargs": dict(model_cfg.kwargs or {}),
    }


def build_from_arch(arch: dict) -> nn.Module:
    """The backbone an ``arch`` describes; with ``arch["head"]`` (a compatible model's retrieval
    head, see :mod:`selfsup.models.compat_heads`) ``nn.Sequential(backbone, head)`` whose ``num_features``
    is the head's output width."""
    if arch.get("head"):
        head = build_head(arch["head"])
        model = nn.Sequential(build_from_arch({k: v for k, v in arch.items() if k != "head"}), head)
        model.num_features = int(head.out_dim)
        return model
    return build_backbone(arch)


def export_encoder(path: str | Path, encoder: torch.nn.Module, arch: dict, info: dict) -> None:
    """Save a backbone with its architecture: ``load_encoder`` or timm can load it back.

    A compatible model's retrieval head travels as ``info["arch_head"]`` and is stored as
    ``arch["head"]`` (the encoder is then ``nn.Sequential(backbone, head)``; see
    :mod:`selfsup.models.compat_heads`).
    """
    info = dict(info)
    head = info.pop("arch_head", None)
    if head is not None:
        arch = {**arch, "head": head}
    save_checkpoint(path, {"arch": arch, "encoder": encoder.state_dict(), **info})


def load_encoder(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """A backbone in eval mode from an exported encoder or a training checkpoint, plus its info.

    ``info`` has ``model_id``, ``fingerprint`` (hash of the weights), ``dim``,
    ``compatible_with`` (fingerprints of older models this one was trained to be compatible
    with) and ``recipe`` (the training recipe as a dict, when known).
    """
    ckpt = read_checkpoint(path)
    if "encoder" in ckpt:
        arch, sd = ckpt.get("arch"), ckpt["encoder"]
        if not isinstance(arch, dict) or not isinstance(arch.get("backbone"), str):
            raise CheckpointError(
                f"'{path}' has encoder weights but no architecture ('arch' with a 'backbone'); "
                "export it with selfsup (selfsup.models.export.export_encoder) or use the run's encoder.pt"
            )
    elif "model" in ckpt and "arch" in ckpt:
        arch = ckpt["arch"]
        if any(k.startswith("extra_terms.") and ".head." in k for k in ckpt["model"]):
            # BT²/OCA/Hot-Refresh(project) retrieval features pass through a head only encoder.pt has.
            raise CheckpointError(
                f"'{path}' is a compatible-training checkpoint whose retrieval feature needs its compat "
                "head; use the run's encoder.pt instead"
            )
        sd = {k[len("backbone.") :]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    else:
        raise CheckpointError(f"'{path}' holds no encoder weights")
    if not isinstance(sd, dict):
        raise CheckpointError(f"'{path}' holds no encoder weights")
    try:
        model = build_from_arch(arch)
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"'{path}' describes an architecture this selfsup cannot build: {e}") from None
    load_model_state(model, sd, path)
    model.eval()
    fp = fingerprint(model)
    info = {
        "model_id": ckpt.get("model_id") or f"{Path(path).parent.parent.name}:{fp[:8]}",
        "fingerprint": fp,
        "dim": int(model.num_features),
        "compatible_with": list(ckpt.get("compatible_with", [])),
        "recipe": ckpt.get("recipe"),
        "arch": arch,
        "path": str(path),
    }
    return model, info


def load_backbone(path: str | Path) -> nn.Module:
    """The network an ``encoder.pt`` holds, as a plain timm model in eval mode: one call, any export.

    CIFAR stem and width included (the stem swap and channel widths are applied to a fresh
    ``timm.create_model`` before the weights are loaded), so ``model(x)`` gives the pooled
    ``[N, model.num_features]`` features the run was evaluated on. A compatible model's export
    (BT², OCA, Hot-Refresh) returns ``nn.Sequential(timm_backbone, retrieval_head)``. Training
    checkpoints (``checkpoints/last.pt``) of plain methods load too.
    """
    model, _ = load_encoder(path)
    return model


def timm_kwargs(arch: dict) -> dict:
    """Keyword arguments for ``timm.create_model(arch["backbone"], num_classes=0, **kwargs)``.

    With them, an export without CIFAR stem or compat head loads with plain timm and
    ``load_state_dict``; the CIFAR stem (a 3x3 stride-1 ``conv1`` and no max-pool) has no timm
    option, so such exports need :func:`load_backbone`.
    """
    return timm_create_kwargs(arch)


@torch.no_grad()
def fingerprint(model: nn.Module) -> str:
    """A short hash of the weights: identifies one model version in indexes and reports."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
