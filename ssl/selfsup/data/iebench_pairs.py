"""SIE's training pairs over a 3DIEBench-layout folder: one object in two distinct views."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .iebench import IEBenchIndex, check_size, color_delta, relative_quaternion


class IEBenchPairs:
    """SIE training pairs: item ``i`` is object ``i`` seen in two distinct views.

    The views are drawn without replacement from ``rng`` (a ``np.random.Generator``, or a seed).
    Each item is a dict:

    - ``img1``, ``img2``: HWC uint8 RGB (resized to ``image_size`` if given);
    - ``latent1``, ``latent2``: the (7,) float64 latents;
    - ``quat``: (4,) scalar-last quaternion of R1^-1 R2 (:func:`relative_quaternion`, not
      sign-canonicalised);
    - ``color_delta``: (2,) raw [floor_hue2 - floor_hue1, spot_hue2 - spot_hue1];
    - ``label``, ``index`` (object index in the split), ``views`` ((2,) int64 view ids).

    With a multi-worker DataLoader, give each worker its own generator (``worker_init_fn``) or
    call :meth:`draw` with one; a copied generator would repeat the same draws in every worker.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.index = IEBenchIndex(root, split)
        if self.index.num_views < 2:
            raise DataError(f"'{root}' has {self.index.num_views} view per object; pairs need at least 2")
        self.image_size = check_size(image_size)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.num_classes = self.index.num_classes

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels.copy()

    def __getitem__(self, i: int) -> dict:
        return self.draw(i, self.rng)

    def draw(self, i: int, rng: np.random.Generator) -> dict:
        """Object ``i`` in two distinct views drawn with ``rng``."""
        v1, v2 = rng.choice(self.index.num_views, size=2, replace=False)
        return self.pair(i, int(v1), int(v2))

    def pair(self, i: int, v1: int, v2: int) -> dict:
        """Object ``i`` in views ``v1`` and ``v2``."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        lat1, lat2 = self.index.load_latent(i, v1), self.index.load_latent(i, v2)
        return {
            "img1": self.index.load_image(i, v1, self.image_size),
            "img2": self.index.load_image(i, v2, self.image_size),
            "latent1": lat1,
            "latent2": lat2,
            "quat": relative_quaternion(lat1, lat2),
            "color_delta": color_delta(lat1, lat2),
            "label": int(self.index.labels[i]),
            "index": int(i),
            "views": np.array([v1, v2], dtype=np.int64),
        }
