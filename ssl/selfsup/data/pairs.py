"""View pairs for SIE-style training (``data.pairs: true``), shared by both pair loaders.

An item is one training object of a 3DIEBench-layout source; every epoch it is seen in two
distinct views ``v1 != v2`` drawn uniformly (without replacement, as SIE's dataset does). The
draw is a hash of ``(seed, epoch, position)``, not a stateful generator, so:

- the torchvision and FFCV pair loaders feed the same views, whatever their worker count;
- N processes see exactly what one process sees on the global batch (sharding is
  :mod:`selfsup.data.sharding`'s, over objects);
- a resumed run draws the same views as an uninterrupted one.

Batches: ``{"views": [x1, x2], "label", "index", "quat" [B, 4], "color_delta" [B, 2],
"view_ids" [B, 2]}`` with ``quat`` the scalar-last quaternion of ``R1^-1 R2`` (not
sign-canonicalised) and ``color_delta`` the raw ``[floor_hue2 - floor_hue1, spot_hue2 -
spot_hue1]`` (:mod:`selfsup.data.iebench`). Images are resized and normalised with
``data.mean``/``data.std``; pairs are never augmented (the paper's protocol), whatever
``data.augment`` says.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .iebench import IEBenchIndex, IEBenchSource, color_delta, relative_quaternion

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_PAIR_TAG = 0x5E1E9A1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def pair_views(seed: int, epoch: int, positions, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Views ``(v1, v2)`` (int64 arrays, ``v1 != v2``) of the objects at ``positions`` in ``epoch``.

    Uniform over the ``V (V - 1)`` ordered pairs (up to a 2^-64 modulo bias).
    """
    if num_views < 2:
        raise DataError(f"pairs need at least 2 views per object, the dataset has {num_views}")
    pos = np.asarray(positions, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = np.uint64(
            (seed * 0x9E3779B97F4A7C15 + epoch * 0xD1B54A32D192ED03 + _PAIR_TAG) & 0xFFFFFFFFFFFFFFFF
        )
        h1 = _mix(pos * np.uint64(0x9E3779B97F4A7C15) + key)
        h2 = _mix(h1 + np.uint64(0x9E3779B97F4A7C15))
    v1 = (h1 % np.uint64(num_views)).astype(np.int64)
    v2 = (
        (v1.astype(np.uint64) + np.uint64(1) + h2 % np.uint64(num_views - 1)) % np.uint64(num_views)
    ).astype(np.int64)
    return v1, v2


def pair_targets(latent1: np.ndarray, latent2: np.ndarray) -> dict[str, torch.Tensor]:
    """``quat`` ``[B, 4]`` and ``color_delta`` ``[B, 2]`` (float32) from the views' ``[B, 7]`` latents."""
    return {
        "quat": torch.from_numpy(relative_quaternion(latent1, latent2).astype(np.float32)),
        "color_delta": torch.from_numpy(color_delta(latent1, latent2).astype(np.float32)),
    }


class PairObjects:
    """The training objects of a pair run: the split's objects after ``data.classes`` and
    ``data.train_fraction`` (applied to objects, not to images).

    Attributes: ``index`` (:class:`~selfsup.data.iebench.IEBenchIndex` of the train split),
    ``objects`` (object indices into it, position ``i`` = item ``i``), ``labels``, ``num_views``.
    """

    def __init__(self, data_cfg) -> None:
        from .catalog import build_source

        if data_cfg.source not in ("render3d", "3diebench"):
            raise DataError(
                f"data.pairs needs a 3DIEBench-layout source with per-view latents (render3d or 3diebench), "
                f"not '{data_cfg.source}'"
            )
        src = build_source(data_cfg, "train")  # resolves (and renders) the folder, checks the path
        while not isinstance(src, IEBenchSource):
            src = src.base
        self.index: IEBenchIndex = src.index
        self.num_views = self.index.num_views
        if self.num_views < 2:
            raise DataError(
                f"'{self.index.root}' has {self.num_views} view per object; pairs need at least 2"
            )
        keep = np.arange(len(self.index))
        if data_cfg.classes is not None:
            keep = keep[np.isin(self.index.labels, np.asarray(data_cfg.classes))]
            if len(keep) == 0:
                raise DataError(f"data.classes={data_cfg.classes} selects no objects of '{self.index.root}'")
        if data_cfg.train_fraction < 1.0:
            rng = np.random.default_rng(0)
            keep = np.sort(rng.permutation(keep)[: max(1, int(round(len(keep) * data_cfg.train_fraction)))])
        self.objects = keep
        self.labels = self.index.labels[keep]

    def __len__(self) -> int:
        return len(self.objects)
