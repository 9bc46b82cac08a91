"""Checkpoint files: atomic writes, validated reads, state loading with one-line errors.

Every file selfsup saves with torch (training checkpoints, exported encoders) carries a ``format``
key; it is written to a temporary file and renamed, so a crash never leaves a broken file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .io import atomic_torch_save

FORMAT = 1


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
