"""Feature extraction with caching: extract once per (model, data, split), reuse for every probe."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig, from_dict
from ..data.embed import extract_features
from ..errors import UserError


def parse_data_spec(spec: str | None, base: DataConfig | None = None) -> DataConfig:
    """``"digits"``, ``"render3d:PATH"``, ``"imagefolder:PATH"``, ``"cifar10:PATH"``, ``"beton:FILE"``.

    Unspecified fields (image size, normalisation) come from ``base`` (the model's recipe).
    """
    cfg = DataConfig() if base is None else from_dict(DataConfig, _plain(base))
    if spec:
        name, _, path = spec.partition(":")
        cfg.source = name
        cfg.path = path or None
        cfg.classes = None
        cfg.train_fraction = 1.0
    return cfg


def _plain(cfg) -> dict:
    from ..config import to_dict

    return to_dict(cfg)


def cached_features(
    encoder: torch.nn.Module,
    info: dict,
    data_cfg: DataConfig,
    split: str,
    cache_dir: Path | None,
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``split`` for a model, cached in ``cache_dir`` by model fingerprint and data."""
    from ..data.catalog import build_source

    key = json.dumps(
        {"fp": info.get("fingerprint"), "data": _plain(data_cfg), "split": split}, sort_keys=True
    )
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir / f"{split}-{h}.npz" if cache_dir else None
    if path is not None and path.exists():
        try:
            with np.load(path) as z:
                return z["feats"], z["labels"]
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    source = build_source(data_cfg, split)
    feats, labels = extract_features(
        encoder, source, data_cfg, batch_size, progress, desc=f"features/{split}"
    )
    if path is not None:
        from ..utils.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, feats=feats, labels=labels)
    return feats, labels


def features_from_args(
    ckpt_path: str,
    data_spec: str | None,
    split: str,
    batch_size: int = 256,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a checkpoint and return ``(features [N, D] float32, labels [N])`` of a split."""
    from ..models.export import load_encoder

    encoder, info = load_encoder(ckpt_path)
    base = None
    if info.get("recipe"):
        base = from_dict(DataConfig, info["recipe"]["data"])
    if base is None and not data_spec:
        raise UserError(f"'{ckpt_path}' has no recipe; pass --data (e.g. --data digits)")
    cfg = parse_data_spec(data_spec, base)
    cache = Path(cache_dir) if cache_dir else Path(ckpt_path).resolve().parent / "features"
    return cached_features(encoder, info, cfg, split, cache, batch_size, progress)
