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
        cfg.render = None  # the spec names the data; the recipe's render settings do not apply
    return cfg


def _plain(cfg) -> dict:
    from ..config import to_dict

    return to_dict(cfg)


def content_fingerprint(source, samples: int = 16) -> str:
    """A hash of the data a source serves: its size, every label and ``samples`` evenly spaced images.

    Part of the feature-cache key, so that data changed under the same spec (re-rendered, a folder
    edited, a new version of a generated source) is embedded again instead of served stale.
    """
    h = hashlib.sha256(str(len(source)).encode())
    h.update(np.ascontiguousarray(np.asarray(source.labels, dtype="<i8")).tobytes())
    for i in np.unique(np.linspace(0, len(source) - 1, num=min(samples, len(source))).astype(int)):
        h.update(np.ascontiguousarray(np.asarray(source[int(i)][0])).tobytes())
    return h.hexdigest()[:16]


def cache_file(
    cache_dir: Path | None, prefix: str, info: dict, data_cfg: DataConfig, split: str, source, **extra
) -> Path | None:
    """``cache_dir/<prefix>-<hash>.npz``: the hash covers the model (fingerprint), the data spec,
    the split, the data's content (:func:`content_fingerprint`) and ``extra``; None without a dir."""
    if cache_dir is None:
        return None
    key = {"fp": info.get("fingerprint"), "data": _plain(data_cfg), "split": split, **extra}
    key["content"] = content_fingerprint(source)
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{prefix}-{h}.npz"


def read_cached(path: Path | None, *names: str) -> tuple | None:
    """The arrays ``names`` of a cache file, or None (a damaged file is deleted: it is rebuilt)."""
    if path is None or not path.exists():
        return None
    try:
        with np.load(path) as z:
            return tuple(z[n] for n in names)
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)
        return None


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

    source = build_source(data_cfg, split)
    path = cache_file(cache_dir, split, info, data_cfg, split, source)
    cached = read_cached(path, "feats", "labels")
    if cached is not None:
        return cached
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
