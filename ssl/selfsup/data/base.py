"""The interface every training loader implements, and the batch format it yields::

    {"views": [Tensor(B, 3, H, W) float32, ...],   # data.views global views, then local views
     "label": LongTensor(B), "index": LongTensor(B), ...}   # plus per-sample extras (latents)

``B`` is the per-process batch of one step (``data.batch_size`` is the global batch: the trainer
divides it by the number of processes and the accumulation steps); sharding is
:mod:`selfsup.data.sharding`.
"""

from __future__ import annotations

from collections.abc import Iterator


class TrainLoader:
    """Interface shared by the torchvision and FFCV training loaders."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:  # pragma: no cover
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict]:  # pragma: no cover
        raise NotImplementedError
