"""The torchvision training loader (per-sample seeded augmentations) and the evaluation loader.

Each view's randomness is seeded from ``(seed, epoch, sample index, view)``
(:mod:`selfsup.data.augment`), so runs are reproducible and independent of the worker count.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .augment import MultiView, eval_transform
from .base import TrainLoader
from .catalog import build_source
from .sharding import ShardedBatchSampler, per_process_batch
from .sources import Source


class MultiViewDataset(Dataset):
    def __init__(self, source: Source, data_cfg, seed: int) -> None:
        self.source = source
        self.views = MultiView(data_cfg, seed)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]):
        index, epoch = item
        img, label = self.source[index]
        chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return self.views(chw, index, epoch), label, index


def _collate(items):
    views = [torch.stack([it[0][v] for it in items]) for v in range(len(items[0][0]))]
    return {
        "views": views,
        "label": torch.tensor([it[1] for it in items], dtype=torch.long),
        "index": torch.tensor([it[2] for it in items], dtype=torch.long),
    }


class ShardedDataLoader(TrainLoader):
    """A ``TrainLoader`` over a torch ``DataLoader``: sharded, seeded batches of ``dataset`` items.

    ``dataset[(position, epoch)]`` gives one item; :class:`ShardedBatchSampler` picks this rank's
    positions of each global batch. Subclasses build the dataset (multi-view images, view pairs).
    """

    name = "torchvision"

    def _start(
        self, dataset, n: int, collate, recipe, rank: int, world_size: int, batch_size: int | None
    ) -> None:
        batch_size = batch_size or per_process_batch(recipe.data.batch_size, world_size)
        self.sampler = ShardedBatchSampler(n, batch_size, rank, world_size, recipe.seed)
        self.dataset = dataset
        workers = recipe.data.num_workers
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=False,
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
            raise _unwrap_worker_error(e) from None


class TorchvisionTrainLoader(ShardedDataLoader):
    """Multi-view loader on a torch ``DataLoader`` with per-sample seeded augmentations."""

    def __init__(
        self,
        recipe,
        rank: int = 0,
        world_size: int = 1,
        source: Source | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.source = source if source is not None else build_source(recipe.data, "train")
        dataset = MultiViewDataset(self.source, recipe.data, recipe.seed)
        self._start(dataset, len(self.source), _collate, recipe, rank, world_size, batch_size)


def _unwrap_worker_error(e: UserError) -> UserError:
    """A worker's UserError arrives with the worker traceback in its text; keep the message."""
    text = str(e)
    if "Traceback" not in text:
        return e
    name = type(e).__name__
    tail = text.rsplit(f"{name}: ", 1)[-1]
    return type(e)(tail)


class EvalDataset(Dataset):
    def __init__(self, source: Source, size: int, mean, std) -> None:
        self.source, self.t = source, eval_transform(size, mean, std)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        img, label = self.source[i]
        chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return self.t(chw), label


def build_eval_loader(source: Source, data_cfg, batch_size: int = 256, num_workers: int = 0) -> DataLoader:
    ds = EvalDataset(source, data_cfg.image_size, data_cfg.mean, data_cfg.std)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
