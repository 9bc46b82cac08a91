"""The torchvision pair loader (``data.pairs: true``): two views of one object per item, no augmentation.

Same sharding as the multi-view loader (:class:`~selfsup.data.sharding.ShardedBatchSampler`, over
objects) and the same view draws as the FFCV pair loader (:func:`~selfsup.data.pairs.pair_views`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .augment import eval_transform
from .base import TrainLoader
from .pairs import PairObjects, pair_targets, pair_views
from .sharding import ShardedBatchSampler, per_process_batch


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


class TorchvisionPairLoader(TrainLoader):
    """Pairs on a torch ``DataLoader`` (see :mod:`selfsup.data.pairs` for the batch format)."""

    name = "torchvision"

    def __init__(self, recipe, rank: int = 0, world_size: int = 1, batch_size: int | None = None) -> None:
        self.objects = PairObjects(recipe.data)
        batch_size = batch_size or per_process_batch(recipe.data.batch_size, world_size)
        self.sampler = ShardedBatchSampler(len(self.objects), batch_size, rank, world_size, recipe.seed)
        self.dataset = PairDataset(self.objects, recipe.data, recipe.seed)
        workers = recipe.data.num_workers
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=_collate,
            prefetch_factor=4 if workers > 0 else None,
        )

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip_batches)

    def __iter__(self) -> Iterator[dict]:
        try:
            yield from self.loader
        except UserError as e:
            text = str(e)  # a worker's error arrives with its traceback in the text: keep the message
            raise type(e)(text.rsplit(f"{type(e).__name__}: ", 1)[-1]) from None
