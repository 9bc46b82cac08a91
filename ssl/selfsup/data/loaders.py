"""Training and evaluation loaders.

All training loaders share one interface (:class:`TrainLoader`) and one batch format::

    {"views": [Tensor(B, 3, H, W) float32, ...],   # data.views global views, then local views
     "label": LongTensor(B), "index": LongTensor(B)}

``B`` is the per-process batch (``data.batch_size``). Sharding: each epoch draws one permutation
of the dataset from ``(seed, epoch)``; global batch ``g`` is ``perm[g*B*W:(g+1)*B*W]`` and rank
``r`` takes its ``r``-th slice of ``B``. So one process with batch ``B*W`` sees exactly the
concatenation of what ``W`` processes see, which makes distributed runs comparable to
single-process ones (and is what the 2-process equivalence test relies on).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .augment import MultiView, eval_transform
from .sources import Source, build_source


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5E1F5]).permutation(n)


class ShardedBatchSampler:
    """Yields this rank's batches of ``(index, epoch)`` pairs; see the module docstring."""

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world_size
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        self.global_batch = batch_size * world_size
        if n < self.global_batch:
            from ..errors import ConfigError

            raise ConfigError(
                f"the training set has {n} images, fewer than one global batch "
                f"({batch_size} x {world_size} processes); lower data.batch_size"
            )

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def __len__(self) -> int:
        return self.n // self.global_batch

    def __iter__(self):
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        for g in range(self.skip, len(self)):
            start = g * self.global_batch + self.rank * self.batch_size
            yield [(int(i), self.epoch) for i in perm[start : start + self.batch_size]]


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


class TrainLoader:
    """Interface shared by the torchvision and FFCV training loaders."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:  # pragma: no cover
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:  # pragma: no cover
        raise NotImplementedError


class TorchvisionTrainLoader(TrainLoader):
    """Multi-view loader on a torch ``DataLoader`` with per-sample seeded augmentations."""

    name = "torchvision"

    def __init__(self, recipe, rank: int = 0, world_size: int = 1, source: Source | None = None) -> None:
        self.source = source if source is not None else build_source(recipe.data, "train")
        self.sampler = ShardedBatchSampler(
            len(self.source), recipe.data.batch_size, rank, world_size, recipe.seed
        )
        self.dataset = MultiViewDataset(self.source, recipe.data, recipe.seed)
        workers = recipe.data.num_workers
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=_collate,
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


def _unwrap_worker_error(e: UserError) -> UserError:
    """A worker's UserError arrives with the worker traceback in its text; keep the message."""
    text = str(e)
    if "Traceback" not in text:
        return e
    name = type(e).__name__
    tail = text.rsplit(f"{name}: ", 1)[-1]
    return type(e)(tail)


def ffcv_available() -> bool:
    try:
        from .ffcv_loader import ffcv_available as _avail
    except ImportError:
        return False
    return _avail()


def build_train_loader(recipe, rank: int = 0, world_size: int = 1) -> TrainLoader:
    """The recipe's training loader: ``data.loader`` = auto (FFCV when installed) | ffcv | torchvision."""
    choice = recipe.data.loader
    if choice == "ffcv" or (choice == "auto" and ffcv_available()):
        if not ffcv_available():
            from ..errors import ConfigError

            raise ConfigError(
                "data.loader=ffcv but ffcv is not installed; run tools/setup.sh (needs Debian's "
                "pkg-config libturbojpeg0-dev libopencv-dev) or set data.loader=torchvision"
            )
        from .ffcv_loader import FFCVTrainLoader

        return FFCVTrainLoader(recipe, rank, world_size)
    return TorchvisionTrainLoader(recipe, rank, world_size)


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


def steps_per_epoch(n_batches: int, grad_accum: int) -> int:
    return max(1, math.floor(n_batches / grad_accum))
