"""How an epoch is split across processes, shared by the torchvision and FFCV loaders.

Each epoch draws one permutation of the training set from ``(seed, epoch)``; with ``B`` the
per-process batch of one loader step (the trainer's micro-batch: ``data.batch_size``, the global
batch, over ``W`` processes and the accumulation steps), loader step ``g`` is
``perm[g*B*W:(g+1)*B*W]`` and rank ``r`` takes its ``r``-th slice of ``B``. So one process with
batch ``B*W`` sees exactly the concatenation of what ``W`` processes see, which makes distributed
runs comparable to single-process ones (the 2-process equivalence tests rely on it), and a
resumed run skips whole batches instead of decoding and discarding them.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def per_process_batch(global_batch: int, world_size: int) -> int:
    """``data.batch_size`` (the global batch) over ``world_size`` processes; refuses a remainder."""
    if global_batch % world_size:
        raise ConfigError(
            f"data.batch_size={global_batch} is the global batch and must divide evenly over "
            f"{world_size} processes; use a multiple of {world_size}"
        )
    return global_batch // world_size


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
            raise ConfigError(
                f"the training set has {n} images, fewer than one global batch "
                f"({batch_size * world_size}); lower data.batch_size"
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


def shard_positions(n: int, batch_size: int, rank: int, world_size: int, seed: int, epoch: int) -> np.ndarray:
    """Positions (into the training set) that ``rank`` reads in ``epoch``, batch after batch."""
    steps = n // (batch_size * world_size)
    perm = epoch_permutation(n, seed, epoch)[: steps * batch_size * world_size]
    return perm.reshape(steps, world_size, batch_size)[:, rank, :].reshape(-1)
