"""The torchvision pair loader (``data.pairs: true``): two views of one object per item, no augmentation.

Same sharding as the multi-view loader (:class:`~selfsup.data.sharding.ShardedBatchSampler`, over
objects) and the same view draws as the FFCV pair loader (:func:`~selfsup.data.pairs.pair_views`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import eval_transform
from .pairs import PairObjects, pair_targets, pair_views
from .torchvision_loader import ShardedDataLoader


class PairDataset(Dataset):
    """Item ``(position, epoch)``: the object at ``position`` in its two views of ``epoch``."""

    def __init__(self, objects: PairObjects, data_cfg, seed: int) -> None:
        self.objects, self.seed, self.size = objects, seed, data_cfg.image_size
        self.t = eval_transform(data_cfg.image_size, data_cfg.mean, data_cfg.std)

    def __len__(self) -> int:
        return len(self.objects)

    def _image(self, obj: int, view: int) -> torch.Tensor:
        img = self.objects.index.load_image(obj, view, self.size)
        return self.t(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))

    def __getitem__(self, item: tuple[int, int]) -> dict:
        pos, epoch = item
        obj = int(self.objects.objects[pos])
        v1, v2 = (int(v[0]) for v in pair_views(self.seed, epoch, [pos], self.objects.num_views))
        index = self.objects.index
        return {
            "x1": self._image(obj, v1),
            "x2": self._image(obj, v2),
            "lat1": index.load_latent(obj, v1),
            "lat2": index.load_latent(obj, v2),
            "label": int(self.objects.labels[pos]),
            "index": int(pos),
            "views": (v1, v2),
        }


def _collate(items: list[dict]) -> dict:
    batch = {
        "views": [torch.stack([it["x1"] for it in items]), torch.stack([it["x2"] for it in items])],
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "view_ids": torch.tensor([it["views"] for it in items], dtype=torch.long),
    }
    batch.update(pair_targets(np.stack([it["lat1"] for it in items]), np.stack([it["lat2"] for it in items])))
    return batch


class TorchvisionPairLoader(ShardedDataLoader):
    """Pairs on a torch ``DataLoader`` (see :mod:`selfsup.data.pairs` for the batch format)."""

    def __init__(self, recipe, rank: int = 0, world_size: int = 1, batch_size: int | None = None) -> None:
        self.objects = PairObjects(recipe.data)
        dataset = PairDataset(self.objects, recipe.data, recipe.seed)
        self._start(dataset, len(self.objects), _collate, recipe, rank, world_size, batch_size)
