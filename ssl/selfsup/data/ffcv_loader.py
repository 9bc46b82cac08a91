"""Multi-view SSL training loader on FFCV.

Implements :class:`selfsup.data.base.TrainLoader` with the same batches as the torchvision
loader: ``{"views": [B x 3 x H x W float32] * (views + local_views + plain_views), "label", "index"}``.

Pipeline (``pipeline="decode-once"``, the default): the stored ``image`` field goes through
:class:`~selfsup.data.ffcv_ops.decode_once.DecodeOnce` (each JPEG decoded once per sample) and
:class:`~selfsup.data.ffcv_ops.decode_once.MultiViewAugment`, which cuts every global and local
view from the decoded image and runs the torchvision loader's ops on it (crop, flip, colour
jitter, grayscale, blur, solarize, normalisation to float32 CHW; :mod:`selfsup.data.ffcv_ops`).
Each view's random draws come from a generator seeded by ``(seed, epoch, position, view)``
(:func:`selfsup.data.augment.view_seed`, the torchvision loader's key), so two runs with one seed
yield identical batches whatever ``data.num_workers`` is, and ``--resume`` continues exactly. The
views are handed out without a copy, from buffers that are reused only once released.

``pipeline="per-view"`` is the previous pipeline, kept so that ``selfsup bench loader`` measures
both in one run: one FFCV pipeline per view (FFCV's crop decoder, so the image is decoded once per
view), the per-op FFCV operations of :mod:`selfsup.data.ffcv_ops`, numba's unseeded per-thread
generator (not reproducible), batches copied out of FFCV's reused buffers.

Sharding is index-based, not FFCV's ``distributed=True``: each epoch uses the torchvision loader's
permutation (:func:`selfsup.data.sharding.epoch_permutation` of ``(seed, epoch)``), global batch
``g`` is ``perm[g*B*W:(g+1)*B*W]`` and rank ``r`` takes its ``r``-th slice of ``B``. Reasons:

- both loaders then feed every rank the same samples at every step (only the augmentations'
  random draws differ), so switching loader changes nothing else in a run;
- ``distributed=True`` builds a torch ``DistributedSampler`` in the constructor (needs the process
  group), pads the last batch with repeated samples (``drop_last=False`` inside), and is unverified
  on this stack; ours needs no process group, never repeats a sample, gives every rank the same
  number of steps, and is testable with ``rank=0/1`` in one process;
- exact mid-epoch resume: ``set_epoch(e, skip_batches=k)`` drops the first ``k`` batches from the
  order instead of decoding and discarding them.

Non-jitted stages (the ``ffcv_ops`` operations) run precompiled, cached numba kernels and nothing
jitted follows them, so FFCV's graph builder cannot hit issue #396 (a jitted op after a
non-jitted one hangs it), and only the decoders are compiled when a run starts.

At about 440 lines this module is longer than most because it holds both pipelines (decode-once and
the per-view one kept for the benchmark) over one sharding and batch assembly; the kernels
themselves live in :mod:`selfsup.data.ffcv_ops`.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import sys
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .base import TrainLoader
from .sharding import per_process_batch, shard_positions


@functools.lru_cache(maxsize=1)
def ffcv_available() -> bool:
    """True when ffcv imports (it needs its compiled ``libffcv``, numba, OpenCV and Pillow)."""
    try:
        import ffcv.fields  # noqa: F401
        import ffcv.loader  # noqa: F401
        from ffcv.transforms import ToTensor  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False
    return True


def _shard_order_class():
    from ffcv.traversal_order.base import TraversalOrder

    class ShardOrder(TraversalOrder):
        """FFCV traversal order yielding this rank's rows of the epoch's shared permutation.

        FFCV instantiates orders as ``order(loader)``; an instance of this class returns itself.
        """

        def __init__(self, rows: np.ndarray, batch_size: int, rank: int, world_size: int, seed: int) -> None:
            # TraversalOrder.__init__ wants the loader, which does not exist yet: see __call__.
            self.rows = np.asarray(rows, dtype=np.uint64)
            self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
            self.skip_batches = 0
            self.loader = None
            self.distributed = False
            self.sampler = None

        def __call__(self, loader) -> ShardOrder:
            self.loader = loader
            self.indices = loader.indices
            return self

        def positions(self, epoch: int) -> np.ndarray:
            pos = shard_positions(
                len(self.rows), self.batch_size, self.rank, self.world_size, self.seed, epoch
            )
            return pos[self.skip_batches * self.batch_size :]

        def sample_order(self, epoch: int) -> np.ndarray:
            return self.rows[self.positions(epoch)]

    return ShardOrder


def _view_pipeline(aug, size: int, scale: Sequence[float], mean, std) -> list:
    """One view: the torchvision loader's ops (:func:`selfsup.data.augment.view_transform`), in order."""
    from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder
    from ffcv.transforms import ToTensor

    from . import ffcv_ops as ops
    from .augment import blur_kernel

    pipe: list = [RandomResizedCropRGBImageDecoder((size, size), scale=tuple(scale), ratio=(3 / 4, 4 / 3))]
    if aug.flip_p > 0:
        pipe.append(ops.RandomHorizontalFlip(aug.flip_p))
    if aug.jitter_p > 0 and any(aug.jitter):
        pipe.append(ops.RandomColorJitter(*aug.jitter, p=aug.jitter_p))
    if aug.grayscale_p > 0:
        pipe.append(ops.RandomGrayscale(aug.grayscale_p))
    if aug.blur_p > 0:
        pipe.append(ops.RandomGaussianBlur(blur_kernel(size), tuple(aug.blur_sigma), aug.blur_p))
    if aug.solarize_p > 0:
        pipe.append(ops.RandomSolarize(128, aug.solarize_p))
    pipe += [ops.NormalizeCHW(mean, std), ToTensor()]
    return pipe


def _plain_pipeline(aug, size: int, mean, std) -> list:
    """A plain view (:func:`selfsup.data.augment.plain_transform`): centre crop, flip, normalise."""
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder
    from ffcv.transforms import ToTensor

    from . import ffcv_ops as ops

    pipe: list = [CenterCropRGBImageDecoder((size, size), ratio=aug.plain_crop)]
    if aug.flip_p > 0:
        pipe.append(ops.RandomHorizontalFlip(aug.flip_p))
    return pipe + [ops.NormalizeCHW(mean, std), ToTensor()]


def view_sizes(data_cfg) -> list[tuple[int, tuple[float, float]]]:
    """(size, crop scale) of every view: ``data.views`` global views, then the local views."""
    aug = data_cfg.augment
    out = [(data_cfg.image_size, tuple(aug.crop_scale))] * data_cfg.views
    out += [(aug.local_size, tuple(aug.local_scale))] * aug.local_views
    return out


def plain_size(data_cfg) -> int:
    """Side of the plain views (``data.augment.plain_size``, by default ``data.image_size``)."""
    return int(data_cfg.augment.plain_size or data_cfg.image_size)


def view_specs(data_cfg) -> list:
    """Every view's :class:`~selfsup.data.ffcv_ops.multiview.ViewAug` (the decode-once pipeline):
    the global and local views, then the plain views (centre crop and flip only)."""
    from .augment import blur_kernel
    from .ffcv_ops.multiview import ViewAug

    aug = data_cfg.augment
    return [
        ViewAug(
            size=int(size),
            scale=(float(scale[0]), float(scale[1])),
            flip_p=float(aug.flip_p),
            jitter_p=float(aug.jitter_p),
            jitter=tuple(float(j) for j in aug.jitter),
            grayscale_p=float(aug.grayscale_p),
            blur_p=float(aug.blur_p),
            blur_kernel=blur_kernel(int(size)),
            blur_sigma=(float(aug.blur_sigma[0]), float(aug.blur_sigma[1])),
            solarize_p=float(aug.solarize_p),
        )
        for size, scale in view_sizes(data_cfg)
    ] + [
        ViewAug(size=plain_size(data_cfg), flip_p=float(aug.flip_p), centre=float(aug.plain_crop))
        for _ in range(aug.plain_views)
    ]


PIPELINES = ("decode-once", "per-view")


def _warn_small_images(beton, path: str, sizes: Sequence[int]) -> None:
    """A clear warning (not an error) when crops must be enlarged beyond the stored images."""
    stats = beton.info.get("sizes", {})
    min_hw = stats.get("min_hw")
    if not min_hw:
        return
    need = max(sizes)
    side = min(int(v) for v in min_hw)
    if side < need:
        print(
            f"warning: '{path}' holds images as small as {min_hw[0]}x{min_hw[1]} px but the largest view is "
            f"{need} px: those crops are enlarged (blurry views); write the .beton from larger images "
            f"(selfsup data write --max-side >= {need}) or lower data.image_size",
            file=sys.stderr,
        )


class FFCVTrainLoader(TrainLoader):
    """The FFCV implementation of :class:`~selfsup.data.base.TrainLoader` (see module docstring).

    Args:
        recipe: the run's :class:`~selfsup.config.Recipe` (``data`` and ``seed`` are used).
        rank, world_size: this process's shard.
        path: a ``.beton`` to read instead of the recipe's (cached) conversion; its rows must be
            the training set in source order (as :func:`~selfsup.data.beton_cache.ensure_beton` writes).
        batches_ahead: FFCV's prefetch depth.
        pipeline: ``"decode-once"`` (default) or ``"per-view"`` (the previous pipeline, for
            benchmarks; its augmentations are not seeded).

    ``data.num_workers`` is the number of numba threads decoding and augmenting (at least 1; they
    run beside the training loop, in FFCV's loader thread). ``batch_size`` is this process's batch
    per step (the trainer's micro-batch); by default ``data.batch_size / world_size``.
    """

    name = "ffcv"

    def __init__(
        self,
        recipe,
        rank: int = 0,
        world_size: int = 1,
        path: str | None = None,
        batches_ahead: int = 2,
        batch_size: int | None = None,
        pipeline: str = "decode-once",
    ) -> None:
        if not ffcv_available():
            raise ConfigError(
                "data.loader=ffcv but ffcv is not installed; run tools/setup.sh (needs Debian's "
                "pkg-config libturbojpeg0-dev libopencv-dev) or set data.loader=torchvision"
            )
        from ffcv.fields.basics import FloatDecoder, IntDecoder
        from ffcv.fields.ndarray import NDArrayDecoder
        from ffcv.loader import Loader
        from ffcv.pipeline import PipelineSpec
        from ffcv.transforms import ToTensor

        from .beton import BetonSource, RowChecker
        from .beton_cache import ensure_beton
        from .catalog import build_source
        from .sources import Subset

        data = recipe.data
        batch_size = batch_size or per_process_batch(data.batch_size, world_size)
        if pipeline not in PIPELINES:
            raise ConfigError(f"unknown FFCV pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
        self.pipeline = pipeline
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside 0..{world_size - 1}")
        # Rows of the file that make up the training set, position by position.
        if path is not None:
            self.path = str(path)
            beton = BetonSource(self.path)
            rows = np.arange(len(beton))
        elif data.source == "beton":
            src = build_source(data, "train")  # validates; applies data.classes / train_fraction
            beton = src.base if isinstance(src, Subset) else src
            self.path = str(beton.path)
            rows = src.indices if isinstance(src, Subset) else np.arange(len(src))
        else:
            self.path = str(ensure_beton(data, "train"))
            beton = BetonSource(self.path)
            rows = np.arange(len(beton))
        if beton.info["fields"].get("image", {}).get("type") != "rgb":
            raise DataError(f"'{self.path}' has no RGB 'image' field; write it with `selfsup data write`")
        self.rows = np.asarray(rows, dtype=np.int64)
        # Corrupt records: checked against the row checksums outside the decoding pipeline
        # (FFCV decodes damaged bytes without a word); see selfsup.data.beton.verify.
        self._checker = RowChecker(self.path, beton.info)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        n = len(self.rows)
        if n < batch_size * world_size:
            raise ConfigError(
                f"the training set has {n} images, fewer than one global batch "
                f"({batch_size * world_size}); lower data.batch_size"
            )
        self.epoch, self.skip = 0, 0
        self.order = _shard_order_class()(self.rows, batch_size, rank, world_size, recipe.seed)

        sizes = [size for size, _ in view_sizes(data)] + [plain_size(data)] * data.augment.plain_views
        _warn_small_images(beton, self.path, sizes)
        self.view_names: list[str] = []
        self.multiview = None
        pipelines: dict = {}
        if pipeline == "decode-once":
            from .ffcv_ops.decode_once import DecodeOnce, MultiViewAugment

            positions = np.full(len(beton), -1, np.int64)
            positions[self.rows] = np.arange(n)
            self.multiview = MultiViewAugment(view_specs(data), data.mean, data.std, positions, recipe.seed)
            # decoder= explicitly: FFCV only recognises its own decoder class at the head of a list
            pipelines["image"] = PipelineSpec("image", decoder=DecodeOnce(), transforms=[self.multiview])
            self.view_names = ["image"]
        else:
            for v, (size, scale) in enumerate(view_sizes(data)):
                name = "image" if v == 0 else f"image_{v}"
                spec = _view_pipeline(data.augment, size, scale, data.mean, data.std)
                pipelines[name] = (
                    spec if v == 0 else PipelineSpec("image", decoder=spec[0], transforms=spec[1:])
                )
                self.view_names.append(name)
            for _ in range(data.augment.plain_views):  # after the global and local views
                name = f"image_{len(self.view_names)}"
                spec = _plain_pipeline(data.augment, plain_size(data), data.mean, data.std)
                pipelines[name] = PipelineSpec("image", decoder=spec[0], transforms=spec[1:])
                self.view_names.append(name)
        self.view_shapes = [(3, s, s) for s in sizes]
        pipelines["label"] = [IntDecoder(), ToTensor()]
        pipelines["index"] = [IntDecoder(), ToTensor()]
        # Per-sample extras (3DIEBench latents, object and view ids) ride along under their names.
        self._stored_index = beton.source_indices
        self.extra_names = [f for f in beton.info["fields"] if f not in ("image", "label", "index")]
        for field in self.extra_names:
            kind = beton.info["fields"][field].get("type")
            decoder = {"int": IntDecoder, "float": FloatDecoder, "ndarray": NDArrayDecoder}[kind]
            pipelines[field] = [decoder(), ToTensor()]
        threads = torch.get_num_threads()
        try:
            self.loader = Loader(
                self.path,
                batch_size=batch_size,
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
            torch.set_num_threads(threads)  # FFCV sets torch's thread count to its worker count
        self.output_names = list(self.loader.pipeline_specs)

    def __len__(self) -> int:
        return len(self.rows) // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Next ``__iter__`` yields epoch ``epoch`` from batch ``skip_batches`` on (exact resume)."""
        if not 0 <= skip_batches <= len(self):
            raise ConfigError(f"skip_batches={skip_batches} is outside 0..{len(self)}")
        self.epoch, self.skip = int(epoch), int(skip_batches)

    def batch_positions(self, epoch: int, skip_batches: int = 0) -> np.ndarray:
        """The training-set positions this rank reads in ``epoch``, shape (batches, B)."""
        pos = shard_positions(
            len(self.rows), self.batch_size, self.rank, self.world_size, self.order.seed, epoch
        )
        return pos.reshape(-1, self.batch_size)[skip_batches:]

    def _to_batch(self, out: dict, positions: np.ndarray) -> dict:
        # FFCV reuses its output buffers (a ring of batches_ahead + 2): copy what we hand out.
        self._checker.check_rows(self.rows[positions])
        stored = out["index"].reshape(-1).numpy()
        if not np.array_equal(stored, self._stored_index[self.rows[positions]]):
            raise RuntimeError("FFCV returned samples out of order (stored index mismatch); this is a bug")
        if self.multiview is not None:  # one flat array, view-major, from a pool: no copy needed
            flat = torch.from_numpy(out["image"])
            b = len(positions)
            views, start = [], 0
            for shape in self.view_shapes:
                n = b * shape[0] * shape[1] * shape[2]
                views.append(flat[start : start + n].view(b, *shape))
                start += n
        else:
            views = [out[name].clone() for name in self.view_names]
        batch = {
            "views": views,
            "label": out["label"].reshape(-1).to(torch.long, copy=True),
            "index": torch.from_numpy(positions.astype(np.int64)),
        }
        for name in self.extra_names:
            t = out[name]
            batch[name] = t.reshape(-1).clone() if t.ndim == 2 and t.shape[1] == 1 else t.clone()
        return batch

    def __iter__(self) -> Iterator[dict]:
        epoch, skip = self.epoch, self.skip
        positions = self.batch_positions(epoch, skip)
        self.order.skip_batches = skip
        self.loader.next_epoch = epoch
        if self.multiview is not None:  # the views' seeds key on the epoch
            self.multiview.epoch = epoch
        threads = torch.get_num_threads()
        it = iter(self.loader)
        done = False
        try:
            for k in range(len(positions)):
                out = _next_or_raise(it)
                if out is None:
                    raise RuntimeError(f"FFCV ended the epoch after {k} of {len(positions)} batches")
                if k == 0:  # FFCV's thread has called torch.set_num_threads by now: undo it
                    torch.set_num_threads(threads)
                yield self._to_batch(dict(zip(self.output_names, out)), positions[k])
            if _next_or_raise(it) is not None:
                raise RuntimeError(f"FFCV yielded more than the {len(positions)} batches of the epoch")
            done = True
        finally:
            torch.set_num_threads(threads)
            if not done:  # stopped early: end FFCV's thread (each iterator owns one, #345)
                _stop(it)
        self.epoch, self.skip = epoch + 1, 0


def _stop(it, timeout_s: float = 30.0) -> None:
    """End an FFCV ``EpochIterator`` early without leaking its thread.

    ``close()`` only sets a flag that the thread checks when its queue is full; at the end of the
    epoch it blocks on an unconditional ``put(None)``. Draining the queue lets it finish either way.
    """
    it.close()
    deadline = time.monotonic() + timeout_s
    while it.is_alive() and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            it.output_queue.get(timeout=0.05)
    it.join(timeout=1.0)


def _next_or_raise(it, poll_s: float = 1.0):
    """The next batch of an FFCV ``EpochIterator``, or None at the end of the epoch.

    ``EpochIterator.__next__`` blocks forever if its thread dies (an exception while compiling or
    running a pipeline is printed and the queue simply stays empty); poll instead, and fail.
    """
    while True:
        try:
            item = it.output_queue.get(timeout=poll_s)
        except queue.Empty:
            if not it.is_alive():
                raise RuntimeError(
                    "FFCV's loader thread stopped before the end of the epoch (its error is printed above)"
                ) from None
            continue
        if item is None:
            it.close()
            return None
        slot, result = item
        streams = getattr(it, "cuda_streams", None)
        if streams and streams[slot] is not None:  # what EpochIterator.__next__ does on CUDA
            it.current_stream.wait_stream(streams[slot])
        return result
