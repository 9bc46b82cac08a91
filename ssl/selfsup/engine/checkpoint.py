"""Checkpoints: atomic writes, exact resume, exported encoders.

``checkpoints/last.pt`` holds everything needed to continue exactly: model (with MoCo queue and
step counter), optimizer, schedule, RNG states, and the position in the epoch. It is written to a
temporary file and renamed, so a crash never leaves a broken checkpoint.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..utils.io import atomic_torch_save

FORMAT = 1


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, **payload}
    atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint '{path}' is unreadable or corrupt ({type(e).__name__}); "
            "delete it or point to another one"
        ) from None
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise CheckpointError(f"'{path}' is not a selfsup checkpoint")
    return ckpt


def load_model_state(model: torch.nn.Module, sd: dict, path: str | Path) -> None:
    """Load weights, turning architecture mismatches into one-line errors."""
    missing, unexpected = [], []
    own = model.state_dict()
    for k, v in sd.items():
        if k not in own:
            unexpected.append(k)
        elif own[k].shape != v.shape:
            raise CheckpointError(
                f"checkpoint '{path}' was made for another architecture: '{k}' has shape "
                f"{tuple(v.shape)} there but {tuple(own[k].shape)} in this model; check model.* in the recipe"
            )
    missing = [k for k in own if k not in sd]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(
            f"checkpoint '{path}' does not fit this model ({what}); check method/model in the recipe"
        )
    model.load_state_dict(sd)


def export_encoder(path: str | Path, encoder: torch.nn.Module, arch: dict, info: dict) -> None:
    """Save a backbone with its architecture: ``load_encoder`` or timm can load it back.

    A compatible model's retrieval head travels as ``info["arch_head"]`` and is stored as
    ``arch["head"]`` (the encoder is then ``nn.Sequential(backbone, head)``; see
    :mod:`selfsup.compat.heads`).
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
    from ..models.backbones import build_from_arch, fingerprint

    ckpt = read_checkpoint(path)
    if "encoder" in ckpt:
        arch, sd = ckpt["arch"], ckpt["encoder"]
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
    model = build_from_arch(arch)
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
