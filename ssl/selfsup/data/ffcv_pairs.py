"""The FFCV pair loader (``data.pairs: true``): two views of one object per item, no augmentation.

It reads the cached ``.beton`` of the whole training split (every view of every object, with the
``latent``, ``object_id`` and ``view_id`` fields the writer stores for 3DIEBench-layout sources).
A traversal order lists, for each object of the batch, the rows of its two views of the epoch
(:func:`~selfsup.data.pairs.pair_views`) one after the other; FFCV decodes a batch of ``2B`` rows
(resize to ``data.image_size``, normalise), which is split back into the two views. The
relative quaternion and hue deltas are computed from the decoded latents. Sharding is
:mod:`selfsup.data.sharding`'s over objects, as for the torchvision pair loader, which feeds the
same pairs (images differ only by the resize interpolation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .base import TrainLoader
from .ffcv_loader import _next_or_raise, _stop, ffcv_available
from .pairs import PairObjects, pair_targets, pair_views
from .sharding import per_process_batch, shard_positions


def _pair_order_class():
    from ffcv.traversal_order.base import TraversalOrder

    class PairOrder(TraversalOrder):
        """Rows ``[r(o, v1), r(o, v2)]`` for the objects ``o`` of this rank's batches, in order."""

        def __init__(self, loader_state) -> None:
            self.s = loader_state
            self.skip_batches = 0
            self.loader, self.distributed, self.sampler = None, False, None

        def __call__(self, loader):
            self.loader, self.indices = loader, loader.indices
            return self

        def sample_order(self, epoch: int) -> np.ndarray:
            return self.s.rows_for(epoch, self.skip_batches).reshape(-1).astype(np.uint64)

    return PairOrder


class FFCVPairLoader(TrainLoader):
    """Pairs from the training split's ``.beton`` (see the module docstring)."""

    name = "ffcv"

    def __init__(
        self,
        recipe,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int | None = None,
        batches_ahead: int = 2,
    ) -> None:
        if not ffcv_available():
            raise ConfigError(
                "data.loader=ffcv but ffcv is not installed; run tools/setup.sh or set data.loader=torchvision"
            )
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.ndarray import NDArrayDecoder
        from ffcv.fields.rgb_image import CenterCropRGBImageDecoder
        from ffcv.loader import Loader
        from ffcv.transforms import ToTensor

        from . import ffcv_ops as ops
        from .beton import BetonSource
        from .beton.verify import RowChecker
        from .beton_cache import ensure_beton

        data = recipe.data
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside 0..{world_size - 1}")
        self.objects = PairObjects(data)
        batch_size = batch_size or per_process_batch(data.batch_size, world_size)
        self.seed, self.batch_size, self.rank, self.world_size = recipe.seed, batch_size, rank, world_size
        n = len(self.objects)
        if n < batch_size * world_size:
            raise ConfigError(
                f"the training set has {n} objects, fewer than one global batch "
                f"({batch_size * world_size}); lower data.batch_size"
            )
        # Every view of every training object, whatever the filters: pairs pick objects, not rows.
        full = dataclasses.replace(data, classes=None, train_fraction=1.0)
        self.path = str(ensure_beton(full, "train"))
        beton = BetonSource(self.path)
        fields = beton.info["fields"]
        if not all(f in fields for f in ("latent", "object_id", "view_id")):
            raise DataError(f"'{self.path}' lacks latent/object_id/view_id fields; delete it to rewrite it")
        # Damaged records are refused like in the FFCV loader (selfsup.data.beton.verify).
        self._checker = RowChecker(self.path, beton.info)
        v = self.objects.num_views
        self.row_of = np.full((len(self.objects.index), v), -1, dtype=np.int64)
        self.row_of[beton.object_ids, beton.view_ids] = np.arange(len(beton))
        if (self.row_of[self.objects.objects] < 0).any():
            raise DataError(f"'{self.path}' misses views of some training objects; delete it to rewrite it")
        self.epoch, self.skip = 0, 0
        self.order = _pair_order_class()(self)
        pipelines = {
            "image": [
                CenterCropRGBImageDecoder((data.image_size, data.image_size), ratio=1.0),
                ops.NormalizeCHW(data.mean, data.std),
                ToTensor(),
            ],
            "latent": [NDArrayDecoder(), ToTensor()],
            "object_id": [IntDecoder(), ToTensor()],
            "view_id": [IntDecoder(), ToTensor()],
            "label": None,  # labels and positions come from the object table
            "index": None,
        }
        threads = torch.get_num_threads()
        try:
            self.loader = Loader(
                self.path,
                batch_size=2 * batch_size,
                num_workers=max(1, int(data.num_workers)),
                os_cache=True,
                order=self.order,
                drop_last=True,
                pipelines=pipelines,
                batches_ahead=batches_ahead,
            )
        except (OSError, ValueError, AssertionError) as e:
            raise DataError(f"FFCV cannot open '{self.path}': {e}") from None
        finally:
            torch.set_num_threads(threads)
        self.output_names = list(self.loader.pipeline_specs)

    def __len__(self) -> int:
        return len(self.objects) // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        if not 0 <= skip_batches <= len(self):
            raise ConfigError(f"skip_batches={skip_batches} is outside 0..{len(self)}")
        self.epoch, self.skip = int(epoch), int(skip_batches)

    def positions(self, epoch: int, skip_batches: int = 0) -> np.ndarray:
        """This rank's object positions in ``epoch``, shape (batches, B)."""
        pos = shard_positions(
            len(self.objects), self.batch_size, self.rank, self.world_size, self.seed, epoch
        )
        return pos.reshape(-1, self.batch_size)[skip_batches:]

    def rows_for(self, epoch: int, skip_batches: int = 0) -> np.ndarray:
        """``[batches, B, 2]`` rows of the two views of each object."""
        pos = self.positions(epoch, skip_batches)
        v1, v2 = pair_views(self.seed, epoch, pos.reshape(-1), self.objects.num_views)
        obj = self.objects.objects[pos.reshape(-1)]
        return np.stack([self.row_of[obj, v1], self.row_of[obj, v2]], 1).reshape(*pos.shape, 2)

    def _to_batch(self, out: dict, pos: np.ndarray, rows: np.ndarray) -> dict:
        self._checker.check_rows(rows.reshape(-1))
        obj_ids = out["object_id"].reshape(-1).numpy()
        view_ids = out["view_id"].reshape(-1).numpy()
        want = self.objects.objects[pos]
        if not (np.array_equal(obj_ids[0::2], want) and np.array_equal(obj_ids[1::2], want)):
            raise RuntimeError("FFCV returned pair rows out of order (object id mismatch); this is a bug")
        img = out["image"]
        lat = out["latent"].reshape(len(obj_ids), -1).double().numpy()
        batch = {
            "views": [img[0::2].clone(), img[1::2].clone()],
            "label": torch.from_numpy(self.objects.labels[pos].astype(np.int64)),
            "index": torch.from_numpy(pos.astype(np.int64)),
            "view_ids": torch.from_numpy(np.stack([view_ids[0::2], view_ids[1::2]], 1).astype(np.int64)),
        }
        batch.update(pair_targets(lat[0::2], lat[1::2]))
        return batch

    def __iter__(self) -> Iterator[dict]:
        epoch, skip = self.epoch, self.skip
        positions = self.positions(epoch, skip)
        rows = self.rows_for(epoch, skip)
        self.order.skip_batches = skip
        self.loader.next_epoch = epoch
        threads = torch.get_num_threads()
        it = iter(self.loader)
        done = False
        try:
            for k in range(len(positions)):
                out = _next_or_raise(it)
                if out is None:
                    raise RuntimeError(f"FFCV ended the epoch after {k} of {len(positions)} batches")
                if k == 0:
                    torch.set_num_threads(threads)
                yield self._to_batch(dict(zip(self.output_names, out)), positions[k], rows[k])
            if _next_or_raise(it) is not None:
                raise RuntimeError(f"FFCV yielded more than the {len(positions)} batches of the epoch")
            done = True
        finally:
            torch.set_num_threads(threads)
            if not done:
                _stop(it)
        self.epoch, self.skip = epoch + 1, 0
