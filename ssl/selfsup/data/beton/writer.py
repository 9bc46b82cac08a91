"""Writing a :class:`~selfsup.data.sources.Source` into a ``.beton`` (FFCV's format) with its sidecar.

Writes are atomic (temporary file, then rename). An unreadable image is reported by its path and is
either fatal or skipped (and listed in the sidecar) depending on ``on_error``; a partial file is
never left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...utils.io import atomic_path, atomic_write_text
from ..sources import Source, to_rgb_uint8
from .extras import extra_value_field, sample_path, source_extras
from .schema import (
    FORMAT,
    IMAGE_MODES,
    MAX_PAGE_SIZE,
    MAX_SIDE,
    MIN_PAGE_SIZE,
    RESERVED_FIELDS,
    SCHEMA_VERSION,
    SMART_THRESHOLD,
    fingerprint,
    sidecar_path,
)
from .verify import encode_crcs, row_crc32


def _to_hwc_rgb(img: Any) -> np.ndarray:
    """Sources promise HWC uint8 RGB, but be lenient: PIL images, grey, RGBA, other dtypes."""
    arr = to_rgb_uint8(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image of shape {arr.shape} is not HxWx(1|3|4)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError("image is empty")
    return np.ascontiguousarray(arr)


def _resize_max_side(img: np.ndarray, max_side: int | None) -> np.ndarray:
    # Same resampling as FFCV's own max_resolution (OpenCV INTER_AREA), done here so that the
    # writer knows each sample's final size before FFCV encodes it.
    if max_side is None or max(img.shape[:2]) <= max_side:
        return img
    import cv2

    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


class _WriterView:
    """What FFCV's writer workers index: ``(image, label, index, *extras)``, never raising.

    A sample that cannot be read is replaced by a 1x1 placeholder and flagged in ``failed`` (shared
    memory, so the flags set in the writer's worker processes reach the parent); the parent then
    either rewrites without those samples or stops.
    """

    def __init__(self, source, extras, norms, max_side, image_mode, quality, failed, page_size) -> None:
        self.source, self.extras, self.norms = source, extras, norms
        self.max_side, self.image_mode, self.quality = max_side, image_mode, quality
        self.failed, self.page_size = failed, page_size

    def __len__(self) -> int:
        return len(self.source)

    def _check_fits(self, img: np.ndarray) -> None:
        h, w = img.shape[:2]
        if max(h, w) > MAX_SIDE:
            raise ValueError(f"image {w}x{h} exceeds FFCV's {MAX_SIDE} px limit; pass --max-side")
        limit = self.page_size // 2  # room for the extras and the page's other samples
        if img.nbytes <= limit:
            return
        if self.image_mode in ("raw", "proportion"):
            raise ValueError(f"image {w}x{h} is too large to store raw; pass --max-side or use --mode jpg")
        import cv2

        ok, enc = cv2.imencode(".jpg", img[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), self.quality])
        if not ok or enc.nbytes > limit:
            raise ValueError(f"image {w}x{h} is too large even as JPEG; pass --max-side")

    def __getitem__(self, i: int):
        i = int(i)
        # 'proportion' mode draws from numpy's global generator inside FFCV: seed it per sample
        # so that which images are compressed does not depend on worker scheduling.
        np.random.seed(i % (1 << 32))
        try:
            img, label = self.source[i]
            img = _resize_max_side(_to_hwc_rgb(img), self.max_side)
            self._check_fits(img)
            extras = [norm(fn(i)) for fn, norm in zip(self.extras.values(), self.norms)]
            return (img, int(label), i, *extras)
        except Exception:  # noqa: BLE001 - reported by the parent, which re-reads the sample
            self.failed[i] = 1
            return (
                np.zeros((1, 1, 3), np.uint8),
                -1,
                i,
                *[norm(fn(0)) for fn, norm in zip(self.extras.values(), self.norms)],
            )


class _QuietProgress:
    """Stands in for the tqdm bar FFCV's writer always draws."""

    def __init__(self, total: int = 0, **_: Any) -> None:
        self.total = total

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _WorkerDied(RuntimeError):
    pass


@contextlib.contextmanager
def _guarded_ffcv_writer(progress: bool) -> Iterator[None]:
    """Make FFCV's writer fail instead of hanging when a worker process dies.

    ``DatasetWriter`` waits for a shared counter to reach the sample count, sleeping 0.1 s per
    check; a worker that crashes (out of memory, a sample larger than a page) leaves it waiting
    forever. We record the worker processes and replace that sleep with one that raises when a
    worker has exited with an error; the bar is tqdm only when ``progress`` is asked for.
    """
    import multiprocessing
    import time as _time

    import ffcv.writer as fw

    procs: list = []

    class _RecordedProcess(multiprocessing.Process):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            procs.append(self)

    def _watchful_sleep(seconds: float) -> None:
        _time.sleep(seconds)
        dead = [p for p in procs if p.exitcode not in (None, 0)]
        if dead:
            raise _WorkerDied(f"an FFCV writer worker exited with code {dead[0].exitcode}")

    saved = (fw.Process, fw.sleep, fw.tqdm)
    fw.Process, fw.sleep = _RecordedProcess, _watchful_sleep
    if not progress:
        fw.tqdm = _QuietProgress
    try:
        yield
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.kill()
        raise
    finally:
        for p in procs:
            p.join(timeout=5)
        fw.Process, fw.sleep, fw.tqdm = saved


def _page_size(source: Source, max_side: int | None) -> int:
    """Four times the largest of a few probed images: small pages keep small datasets small
    (each writer process pads its last page), big ones let large images fit."""
    n = len(source)
    largest = 0
    for i in np.unique(np.linspace(0, n - 1, num=min(n, 16)).astype(int)):
        try:
            img = _resize_max_side(_to_hwc_rgb(source[int(i)][0]), max_side)
        except Exception:  # noqa: BLE001 - unreadable images are reported by the writer pass
            continue
        largest = max(largest, img.nbytes)
    page = MIN_PAGE_SIZE
    while page < 4 * largest and page < MAX_PAGE_SIZE:
        page *= 2
    return page


def _write_ffcv(
    tmp: Path, fields: dict, view: _WriterView, indices: np.ndarray, workers: int, progress: bool
) -> None:
    from ffcv.writer import DatasetWriter

    writer = DatasetWriter(str(tmp), fields, page_size=view.page_size, num_workers=workers)
    chunk = max(1, min(100, len(indices) // max(1, 4 * workers)))
    try:
        with _guarded_ffcv_writer(progress):
            writer.from_indexed_dataset(view, indices=indices.tolist(), chunksize=chunk)
    except _WorkerDied as e:
        raise DataError(
            f"writing '{tmp}' failed: {e} (see the messages above); is the machine out of memory?"
        ) from None
    finally:
        sm = getattr(writer, "metadata_sm", None)
        if sm is not None and not isinstance(sm, int):
            with contextlib.suppress(Exception):
                sm.close()
                sm.unlink()


def _image_stats(path: Path) -> dict:
    """Image sizes and storage modes read back from the written file's metadata."""
    from ffcv.reader import Reader

    reader = Reader(str(path))
    meta = reader.metadata["f0"]
    h = meta["height"].astype(np.int64)
    w = meta["width"].astype(np.int64)
    if len(h) == 0:
        return {"count": 0}
    return {
        "count": int(reader.num_samples),
        "min_hw": [int(h.min()), int(w.min())],
        "max_hw": [int(h.max()), int(w.max())],
        "mean_hw": [round(float(h.mean()), 2), round(float(w.mean()), 2)],
        "jpeg": int((meta["mode"] == 0).sum()),
        "raw": int((meta["mode"] == 1).sum()),
    }


def write_beton(
    source: Source,
    out: str | os.PathLike,
    image_mode: str = "jpg",
    jpeg_quality: int = 90,
    max_side: int | None = None,
    extra_fields: dict[str, Callable[[int], Any]] | None = None,
    on_error: str = "fatal",
    workers: int | None = None,
    progress: bool = False,
    split: str | None = None,
    meta: dict | None = None,
) -> dict:
    """Write ``source`` to the FFCV file ``out`` and its sidecar; return the sidecar's content.

    Args:
        source: a :class:`Source` (``src[i] -> (HWC uint8 RGB, label)``); optional ``latents(i)``,
            ``object_ids`` and ``view_ids`` become the fields ``latent``, ``object_id``, ``view_id``.
        out: the ``.beton`` path; written to a temporary file in the same folder, then renamed.
        image_mode: ``jpg`` (always JPEG), ``raw`` (pixels, exact), ``proportion`` (JPEG for a
            random half, fixed per sample), ``smart`` (raw up to 256x256 worth of bytes, JPEG above).
        jpeg_quality: JPEG quality, 1-100.
        max_side: shrink images whose longer side exceeds this (OpenCV INTER_AREA).
        extra_fields: more fields, name -> ``fn(i)`` returning an int, a float or a fixed-shape array.
        on_error: ``fatal`` stops at unreadable images (listing them); ``skip`` leaves them out and
            lists them in the sidecar under ``skipped``.
        workers: writer processes (default: up to 4, one per core).
        progress: draw a progress bar on stderr.
        split: recorded in the sidecar (``build_source`` checks it).
        meta: more entries for the sidecar (e.g. the cache key).
    """
    out = Path(out)
    if image_mode not in IMAGE_MODES:
        raise DataError(f"image mode '{image_mode}' is not one of {', '.join(IMAGE_MODES)}")
    if on_error not in ("fatal", "skip"):
        raise DataError(f"on_error must be 'fatal' or 'skip', got '{on_error}'")
    if not 1 <= int(jpeg_quality) <= 100:
        raise DataError(f"JPEG quality must be in 1..100, got {jpeg_quality}")
    if max_side is not None and max_side < 1:
        raise DataError(f"max_side must be a positive number of pixels, got {max_side}")
    if out.suffix != ".beton":
        raise DataError(f"output '{out}' should end in .beton")
    n = len(source)
    if n == 0:
        raise DataError(f"source '{getattr(source, 'name', 'source')}' has no samples; nothing to write")
    try:
        from ffcv.fields import IntField, RGBImageField
    except ImportError:
        raise DataError("writing a .beton needs ffcv; run tools/setup.sh (see datasets/*.md)") from None

    extras = {**source_extras(source), **(extra_fields or {})}
    for name in extras:
        if name in RESERVED_FIELDS or len(name.encode()) > 16 or not name.isascii():
            raise DataError(
                f"extra field name '{name}' is reserved or longer than FFCV's 16 ASCII characters"
            )
    fields: dict[str, Any] = {
        "image": RGBImageField(
            write_mode=image_mode,
            max_resolution=None,  # resized in _WriterView so that sizes are checked first
            smart_threshold=SMART_THRESHOLD,
            jpeg_quality=int(jpeg_quality),
            compress_probability=0.5,
        ),
        "label": IntField(),
        "index": IntField(),
    }
    field_desc: dict[str, dict] = {
        "image": {"type": "rgb", "mode": image_mode, "jpeg_quality": int(jpeg_quality), "max_side": max_side},
        "label": {"type": "int"},
        "index": {"type": "int"},
    }
    norms = []
    for name, fn in extras.items():
        try:
            value = fn(0)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"extra field '{name}' cannot be read for sample 0: {e}") from None
        field, desc, norm = extra_value_field(name, value)
        fields[name], field_desc[name] = field, desc
        norms.append(norm)

    import multiprocessing

    workers = int(workers) if workers else min(4, os.cpu_count() or 1)
    failed = multiprocessing.Array("b", n, lock=False)  # shared with the forked writer workers
    page = _page_size(source, max_side)
    view = _WriterView(source, extras, norms, max_side, image_mode, int(jpeg_quality), failed, page)
    t0 = time.perf_counter()
    skipped: list[dict] = []
    sidecar = sidecar_path(out)
    with atomic_path(out) as tmp:
        _write_ffcv(tmp, fields, view, np.arange(n), workers, progress)
        bad = np.flatnonzero(np.frombuffer(failed, dtype=np.int8))
        if len(bad):
            skipped = [_describe_failure(source, int(i)) for i in bad]
            if on_error == "fatal":
                first = skipped[0]
                where = first["path"] or f"sample {first['index']}"
                raise DataError(
                    f"{len(bad)} of {n} images of '{getattr(source, 'name', 'source')}' cannot be read; "
                    f"first: {where}: {first['error']}. Fix or remove them, or pass --on-error skip"
                )
            keep = np.setdiff1d(np.arange(n), bad)
            if len(keep) == 0:
                raise DataError(
                    f"none of the {n} images of '{getattr(source, 'name', 'source')}' can be read"
                )
            for i in range(n):
                failed[i] = 0
            _write_ffcv(tmp, fields, view, keep, workers, progress)
            again = np.flatnonzero(np.frombuffer(failed, dtype=np.int8))
            if len(again):
                raise DataError(
                    f"images became unreadable while writing '{out}' (sample {int(again[0])}); try again"
                )
        stats = _image_stats(tmp)
        crcs = encode_crcs(row_crc32(tmp))  # what loaders check each row against
        expected = n - len(skipped)
        if stats["count"] != expected:
            raise DataError(
                f"writing '{out}' produced {stats['count']} samples instead of {expected}; try again"
            )
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()  # a stale sidecar must never describe the new file
    try:
        import ffcv

        ffcv_version = getattr(ffcv, "__version__", "1.0.2")
    except ImportError:  # pragma: no cover
        ffcv_version = None
    from ... import __version__

    info = {
        "format": FORMAT,
        "schema": SCHEMA_VERSION,
        "fields": field_desc,
        "count": stats["count"],
        "source": getattr(source, "name", "source"),
        "source_len": n,
        "split": split,
        "num_classes": int(getattr(source, "num_classes", 0) or 0),
        "sizes": {k: v for k, v in stats.items() if k != "count"},
        "skipped": skipped,
        "file_size": out.stat().st_size,
        "fingerprint": fingerprint(out),
        "row_crc32": crcs,
        "seconds": round(time.perf_counter() - t0, 3),
        "selfsup_version": __version__,
        "ffcv_version": ffcv_version,
        **(meta or {}),
    }
    atomic_write_text(sidecar, json.dumps(info, indent=2) + "\n")
    return {"path": str(out), **info}


def _describe_failure(source: Source, i: int) -> dict:
    """Re-read a failed sample in this process to report why (the workers only set a flag)."""
    try:
        img, _ = source[i]
        _to_hwc_rgb(img)
        error = "unreadable in the writer process (too large or a transient error)"
    except Exception as e:  # noqa: BLE001
        error = f"{type(e).__name__}: {e}" if not isinstance(e, DataError) else str(e)
    return {"index": i, "path": sample_path(source, i), "error": " ".join(error.split())}
