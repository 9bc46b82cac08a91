"""The FFCV side of decode-once, crop-many: a decoder, the multi-view operation, a buffer pool.

Pipeline of the ``image`` field: :class:`DecodeOnce` (FFCV compiles it, like its own decoders:
each JPEG is decoded once, raw images are copied, into a per-sample slot of an FFCV buffer) then
:class:`MultiViewAugment` (a Python stage that FFCV calls once per batch with the batch's file
rows; it hands the whole batch to :func:`.multiview.augment_views_batch`, compiled once and cached
on disk). The views come out as one flat float32 array, view-major, that the loader cuts into
``(B, 3, S, S)`` tensors without copying.

That array is not one of FFCV's reused buffers but comes from :class:`BufferPool`: a buffer is
reused only once nothing outside the pool refers to it any more (the tensors handed out hold a
reference to the numpy array they view), so batches stay valid as long as they are held, and
the copy a reused FFCV buffer would need (~0.3 ms per 224 px view, mostly page faults of fresh
memory) never happens.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import numba
import numpy as np

from .multiview import SIZE, ViewAug, augment_views_batch, param_table
from .native import resize_address
from .rng import view_seeds

try:  # ffcv is optional: the kernels work (and are tested) without it.
    from ffcv.pipeline.allocation_query import AllocationQuery
    from ffcv.pipeline.operation import Operation
    from ffcv.pipeline.state import State
except ImportError:  # pragma: no cover - exercised when ffcv is absent
    Operation = object  # type: ignore[misc,assignment]


class BufferPool:
    """Flat arrays reused once nobody else holds them (see the module docstring).

    ``keep`` bounds how many idle arrays are kept; an array still held by a consumer is never
    handed out again, so a consumer that keeps every batch just makes the pool allocate.
    """

    def __init__(self, dtype=np.float32, keep: int = 8) -> None:
        self.dtype, self.keep = np.dtype(dtype), keep
        self._arrays: list[np.ndarray] = []
        probe = [np.empty(1)]
        self._idle = self._refs(probe, 0)  # references of an array only the pool holds

    @staticmethod
    def _refs(arrays: list, k: int) -> int:
        return sys.getrefcount(arrays[k])

    def get(self, n: int) -> np.ndarray:
        """A 1-D array of ``n`` elements that nothing outside the pool refers to."""
        arrays = self._arrays
        for k in range(len(arrays)):
            if arrays[k].size == n and self._refs(arrays, k) <= self._idle:
                return arrays[k]
        out = np.empty(n, self.dtype)
        if len(arrays) < self.keep:
            arrays.append(out)
        else:  # replace an idle array (e.g. of another size), if any
            for k in range(len(arrays)):
                if self._refs(arrays, k) <= self._idle:
                    arrays[k] = out
                    break
        return out


class DecodeOnce(Operation):
    """Decoder of an RGB image field: each image decoded once, HWC uint8, into its sample's slot.

    The slot holds ``max height * max width * 3`` bytes; sample ``b``'s image is its first
    ``height * width * 3`` (the sizes are in the field's metadata). Compiled by FFCV.
    """

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        n = int(self.metadata["width"].max()) * int(self.metadata["height"].max()) * 3
        shape, dtype = (n,), np.dtype("<u1")
        return replace(previous_state, jit_mode=True, shape=shape, dtype=dtype), AllocationQuery(shape, dtype)

    def generate_code(self) -> Callable:
        from ffcv.fields.rgb_image import IMAGE_MODES
        from ffcv.libffcv import imdecode, memcpy
        from ffcv.pipeline.compiler import Compiler

        mem_read = self.memory_read
        imdecode_c = Compiler.compile(imdecode)
        memcpy_c = Compiler.compile(memcpy)
        my_range = Compiler.get_iterator()
        jpg = IMAGE_MODES["jpg"]

        def decode_once(batch_indices, destination, metadata, storage_state):
            for k in my_range(len(batch_indices)):
                field = metadata[batch_indices[k]]
                data = mem_read(field["data_ptr"], storage_state)
                h, w = field["height"], field["width"]
                if field["mode"] == jpg:
                    imdecode_c(data, destination[k], h, w, h, w, 0, 0, 1, 1, False, False)
                else:
                    memcpy_c(data, destination[k])
            return destination[: len(batch_indices)]

        decode_once.is_parallel = True
        return decode_once


class MultiViewAugment(Operation):
    """All views of each sample from its decoded image, seeded per (seed, epoch, position, view).

    Args:
        views: each view's :class:`~.multiview.ViewAug`, in output order.
        mean, std: normalisation (torchvision's ``Normalize``).
        positions: ``positions[row]`` = the training-set position of file row ``row`` (its seed
            key; -1 for rows outside the training set).
        seed: the run's seed. The epoch is read from :attr:`epoch` at every batch; the loader
            sets it before starting an epoch.
    """

    def __init__(self, views: Sequence[ViewAug], mean, std, positions: np.ndarray, seed: int) -> None:
        super().__init__()
        self.views = list(views)
        self.params = param_table(self.views)
        self.mean = np.asarray(mean, np.float64)
        self.std = np.asarray(std, np.float64)
        self.positions = np.asarray(positions, np.int64)
        self.seed = int(seed)
        self.epoch = 0
        self.pool = BufferPool(np.float32)
        self.sizes = [int(s) for s in self.params[:, SIZE]]
        self._resize = None  # libffcv's resize address, looked up in the loader's process

    def view_offsets(self, batch: int) -> np.ndarray:
        """Start of each view in the flat output of a batch of ``batch`` samples."""
        lens = np.array([batch * 3 * s * s for s in self.sizes], np.int64)
        return np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)

    def __call__(self, decoded: np.ndarray, batch_indices: np.ndarray) -> np.ndarray:
        """The flat float32 views of one batch (what FFCV calls; also usable on its own)."""
        rows = np.asarray(batch_indices, np.int64)
        nb = len(rows)
        pos = self.positions[rows]
        if (pos < 0).any():
            raise RuntimeError("FFCV asked for a row outside the training set; this is a bug")
        seeds = view_seeds(self.seed, self.epoch, pos, len(self.views))
        offsets = self.view_offsets(nb)
        out = self.pool.get(int(sum(nb * 3 * s * s for s in self.sizes)))
        if self._resize is None:
            self._resize = resize_address()
        augment_views_batch(
            decoded[:nb], self.heights[rows], self.widths[rows], seeds, self.params, offsets,
            self.mean, self.std, self._resize, numba.get_num_threads(), out,
        )  # fmt: skip
        return out

    def generate_code(self) -> Callable:
        def multi_view(decoded, _dst, batch_indices):
            return self(decoded, batch_indices)

        multi_view.with_indices = True  # FFCV passes the batch's file rows as a third argument
        return multi_view

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        meta = self.metadata
        self.heights = np.ascontiguousarray(meta["height"], np.int64)
        self.widths = np.ascontiguousarray(meta["width"], np.int64)
        per_sample = sum(3 * s * s for s in self.sizes)
        # The output is the pool's array, not an FFCV buffer: nothing to allocate.
        return replace(previous_state, jit_mode=False, shape=(per_sample,), dtype=np.dtype("<f4")), None
