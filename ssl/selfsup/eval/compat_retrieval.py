"""Compatibility evaluation of trained models: old/old, new/old, new/new retrieval.

Protocol (docs/methods/compat.md, implemented in :mod:`selfsup.eval.retrieval` and
:mod:`selfsup.eval.compatibility`): query = gallery = the whole test split with **all** classes
(``data.classes`` is dropped), each query's own item excluded, cosine similarity after truncating
both sides to the smaller dimension (the old model's: compatible models put their old-compatible
sub-space first). Each model embeds the images with its own input size and normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import DataConfig, from_dict, to_dict
from ..errors import ConfigError


def eval_data_config(data_cfg: DataConfig, info: dict | None = None) -> DataConfig:
    """The test-set config: ``data_cfg`` with all classes, preprocessing from a model's recipe."""
    cfg = from_dict(DataConfig, to_dict(data_cfg))
    cfg.classes = None
    cfg.train_fraction = 1.0
    data = ((info or {}).get("recipe") or {}).get("data") or {}
    for key in ("image_size", "mean", "std"):
        if key in data:
            setattr(cfg, key, data[key])
    return cfg


def model_features(
    paths: Sequence[str | Path],
    data_cfg: DataConfig,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[list[np.ndarray], np.ndarray, list[dict]]:
    """Test-split features ``[N, D_t]`` of each model (oldest first), the labels ``[N]`` and the infos."""
    from ..models.export import load_encoder
    from .features import cached_features

    feats, infos, labels = [], [], None
    for p in paths:
        enc, info = load_encoder(p)
        f, y = cached_features(
            enc,
            info,
            eval_data_config(data_cfg, info),
            "test",
            Path(cache_dir) if cache_dir else None,
            batch_size,
            progress,
        )
        if labels is not None and not np.array_equal(labels, y):
            raise ConfigError(f"'{p}' embeds a different test set than '{paths[0]}'; use the same data")
        feats.append(f)
        infos.append(info)
        labels = y
    return feats, labels, infos


def check_comparable(d_old: int, d_new: int, old: str, new: str) -> None:
    if d_new < d_old:
        raise ConfigError(
            f"old model '{old}' ({d_old}-d) and new model '{new}' ({d_new}-d) cannot be compared: "
            f"new/old retrieval needs the new feature to have at least the old {d_old} dims"
        )


def compat_retrieval(
    old: str | Path,
    new: str | Path,
    data_cfg: DataConfig,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, float]:
    """``compat/<metric>/{old_old,new_old,new_new}`` for metric in top1, top5, map, plus
    ``compat/criterion`` (1.0 when new/old top-1 > old/old top-1, the empirical compatibility
    criterion) and the two dimensions.
    """
    from ..models.export import load_encoder
    from .compatibility import METRICS, compat_matrices

    _, oinfo = load_encoder(old)
    _, ninfo = load_encoder(new)
    check_comparable(int(oinfo["dim"]), int(ninfo["dim"]), str(old), str(new))
    feats, labels, _ = model_features([old, new], data_cfg, cache_dir, batch_size, progress)
    mats = compat_matrices(feats, labels, slice_dims=True)
    out: dict[str, float] = {}
    for m in METRICS:
        out[f"compat/{m}/old_old"] = float(mats[m][0, 0])
        out[f"compat/{m}/new_old"] = float(mats[m][1, 0])
        out[f"compat/{m}/new_new"] = float(mats[m][1, 1])
    out["compat/criterion"] = float(out["compat/top1/new_old"] > out["compat/top1/old_old"])
    out["compat/old_dim"] = float(oinfo["dim"])
    out["compat/new_dim"] = float(ninfo["dim"])
    return out
