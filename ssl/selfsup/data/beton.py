"""FFCV ``.beton`` files: writing, describing, caching and reading them back as a :class:`Source`.

A ``.beton`` written here holds the fields ``image`` (RGB), ``label`` (int), ``index`` (the sample's
index in the source it came from) and, when the source provides them, ``latent`` (an array per
sample, e.g. 3DIEBench's rotation and lighting latents), ``object_id`` and ``view_id``.

Beside each ``FILE.beton`` lies a sidecar ``FILE.beton.json``: schema version, fields, sample
count, source name and split, class count, image sizes, skipped samples, and the file's size and
fingerprint. It is what makes a file trustworthy: a ``.beton`` without a sidecar, from another
schema version, or whose size or fingerprint no longer matches (a truncated copy) is refused with a
:class:`~selfsup.errors.DataError` saying how to rewrite it.

Writes are atomic (temporary file, then rename). An unreadable image is reported by its path and is
either fatal or skipped (and listed in the sidecar) depending on ``on_error``; a partial file is
never left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..utils.io import atomic_path, atomic_write_text
from .sources import Source, to_rgb_uint8

SCHEMA_VERSION = 1
FORMAT = "selfsup-beton"
IMAGE_MODES = ("jpg", "raw", "proportion", "smart")
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 1 << 21, 1 << 28  # every sample must fit in one FFCV page
SMART_THRESHOLD = 3 * 256 * 256  # "smart": raw up to a 256x256 image's bytes, JPEG above
_FINGERPRINT_SPAN = 1 << 16
_MAX_SIDE = 65535  # FFCV stores width and height as uint16
_RESERVED = ("image", "label", "index")

# FFCV's file header (ffcv/types.py, format version 2), declared here so that describing a file
# does not need ffcv (and its seconds-long import).
_HEADER = np.dtype(
    [
        ("version", "<u2"),
        ("num_fields", "<u2"),
        ("page_size", "<u4"),
        ("num_samples", "<u8"),
        ("alloc_table_ptr", "<u8"),
    ],
    align=True,
)
_FFCV_FORMAT_VERSION = 2


def sidecar_path(path: str | os.PathLike) -> Path:
    """``FILE.beton`` -> ``FILE.beton.json``."""
    return Path(str(path) + ".json")


def fingerprint(path: str | os.PathLike) -> str:
    """sha256 of the file's size, first 64 KiB and last 64 KiB: cheap even for 100 GB files.

    It catches truncation, a rewritten header or allocation table (always at the end of a
    ``.beton``), and a different file copied over this one.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_FINGERPRINT_SPAN))
        f.seek(max(0, size - _FINGERPRINT_SPAN))
        h.update(f.read(_FINGERPRINT_SPAN))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Writing


class _ArrayValue:
    """Normalises an extra field's array value to the dtype and shape fixed by sample 0 (picklable)."""

    def __init__(self, name: str, dtype: np.dtype, shape: tuple) -> None:
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)

    def __call__(self, value: Any) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(value, dtype=self.dtype))
        if a.shape != self.shape:
            raise ValueError(
                f"extra field '{self.name}' has shape {a.shape}, expected {self.shape} (set by sample 0)"
            )
        return a


class _IdLookup:
    """``fn(i) -> int(ids[i])`` for a source's ``object_ids`` / ``view_ids`` (picklable)."""

    def __init__(self, ids: Any) -> None:
        self.ids = np.asarray(ids)

    def __call__(self, i: int) -> int:
        return int(self.ids[i])


def _extra_value_field(name: str, value: Any):
    """The FFCV field storing ``value`` (sample 0's), its sidecar description and a normaliser."""
    from ffcv.fields import FloatField, IntField, NDArrayField

    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return IntField(), {"type": "int"}, int
    if isinstance(value, (float, np.floating)):
        return FloatField(), {"type": "float"}, float
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.ndim == 0:
        raise DataError(
            f"extra field '{name}': expected a number or a numeric array, got {type(value).__name__}"
        )
    dtype = arr.dtype.newbyteorder("<")
    desc = {"type": "ndarray", "dtype": dtype.str, "shape": list(arr.shape)}
    return NDArrayField(dtype, arr.shape), desc, _ArrayValue(name, dtype, arr.shape)


class _Remapped:
    """``fn(indices[i])``: a base source's extra seen through a :class:`Subset` (picklable)."""

    def __init__(self, fn: Callable[[int], Any], indices: np.ndarray) -> None:
        self.fn, self.indices = fn, np.asarray(indices)

    def __call__(self, i: int) -> Any:
        return self.fn(int(self.indices[i]))


class _LocatedExtra:
    """Extras of a 3DIEBench-style source that maps item -> (object, view) with ``locate(i)``."""

    def __init__(self, source: Any, what: str) -> None:
        self.source, self.what = source, what

    def __call__(self, i: int) -> Any:
        obj, view = self.source.locate(i)
        if self.what == "latent":
            return self.source.index.load_latent(obj, view)
        return int(obj if self.what == "object_id" else view)


def _source_extras(source: Source) -> dict[str, Callable[[int], Any]]:
    """Optional per-sample extras a source exposes: ``latents(i)``, ``object_ids``, ``view_ids``.

    Looks through :class:`~selfsup.data.sources.Subset` wrappers (class filters, fractions), and
    understands the 3DIEBench reader's ``locate(i) -> (object, view)`` with ``index.load_latent``.
    """
    if hasattr(source, "base") and hasattr(source, "indices"):
        return {k: _Remapped(fn, source.indices) for k, fn in _source_extras(source.base).items()}
    extras: dict[str, Callable[[int], Any]] = {}
    if callable(getattr(source, "latents", None)):
        extras["latent"] = source.latents
    for attr, name in (("object_ids", "object_id"), ("view_ids", "view_id")):
        ids = getattr(source, attr, None)
        if ids is not None and not callable(ids):
            extras[name] = _IdLookup(ids)
    locate, index = getattr(source, "locate", None), getattr(source, "index", None)
    if callable(locate) and callable(getattr(index, "load_latent", None)):
        if getattr(source, "view", None) == "random":
            raise DataError(
                "a 3DIEBench source with view='random' draws a new view at every access, so it cannot "
                "be frozen into a .beton; use view='all' (every view) or 'fixed'"
            )
        for name in ("latent", "object_id", "view_id"):
            extras.setdefault(name, _LocatedExtra(source, name))
    return extras


def _sample_path(source: Source, i: int) -> str | None:
    """The file behind sample ``i`` when the source knows it (image folders, subsets of them)."""
    base, idx = source, i
    while hasattr(base, "base") and hasattr(base, "indices"):  # Subset
        base, idx = base.base, int(base.indices[idx])
    path_of = getattr(base, "path_of", None)
    if callable(path_of):
        return str(path_of(idx))
    samples = getattr(base, "samples", None)
    if samples is not None:
        try:
            return str(samples[idx][0])
        except (IndexError, TypeError, KeyError):
            return None
    return None


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
        if max(h, w) > _MAX_SIDE:
            raise ValueError(f"image {w}x{h} exceeds FFCV's {_MAX_SIDE} px limit; pass --max-side")
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

    extras = {**_source_extras(source), **(extra_fields or {})}
    for name in extras:
        if name in _RESERVED or len(name.encode()) > 16 or not name.isascii():
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
        field, desc, norm = _extra_value_field(name, value)
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
    from .. import __version__

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
    return {"index": i, "path": _sample_path(source, i), "error": " ".join(error.split())}


# ---------------------------------------------------------------------------------------------
# Describing and validating


def _rewrite_hint(path: Path) -> str:
    return f"rewrite it with `selfsup data write --out {path} ...` (see datasets/*.md)"


def beton_info(path: str | os.PathLike) -> dict:
    """Validate ``path`` against its sidecar and return the sidecar (fields, count, sizes, ...).

    Raises :class:`DataError` for a missing file or sidecar, another schema version, or a file
    whose size, fingerprint or FFCV header no longer matches (truncated or modified).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f".beton file '{path}' not found; write it with `selfsup data write --out {path} ...`"
        )
    sc = sidecar_path(path)
    if not sc.is_file():
        raise DataError(
            f"'{path}' has no sidecar '{sc.name}': written by an older selfsup or another tool; {_rewrite_hint(path)}"
        )
    try:
        info = json.loads(sc.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"sidecar '{sc}' is unreadable ({e}); {_rewrite_hint(path)}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(f"'{sc}' is not a selfsup .beton sidecar; {_rewrite_hint(path)}")
    schema = info.get("schema")
    if schema != SCHEMA_VERSION:
        raise DataError(
            f"'{path}' uses .beton schema {schema}, this selfsup reads schema {SCHEMA_VERSION}; {_rewrite_hint(path)}"
        )
    size = path.stat().st_size
    if size != info.get("file_size"):
        raise DataError(
            f"'{path}' is truncated or was modified ({size} bytes, its sidecar says {info.get('file_size')}); "
            f"{_rewrite_hint(path)}"
        )
    if fingerprint(path) != info.get("fingerprint"):
        raise DataError(
            f"'{path}' no longer matches its sidecar (modified after writing); {_rewrite_hint(path)}"
        )
    header = np.fromfile(path, dtype=_HEADER, count=1)
    if (
        len(header) != 1
        or int(header[0]["version"]) != _FFCV_FORMAT_VERSION
        or int(header[0]["num_samples"]) != info.get("count")
        or int(header[0]["alloc_table_ptr"]) > size
    ):
        raise DataError(f"'{path}' has a damaged FFCV header; {_rewrite_hint(path)}")
    return {"path": str(path), **info}


# ---------------------------------------------------------------------------------------------
# Cached conversion of a recipe's source


def cache_dir() -> Path:
    """Where converted sources go: ``$SELFSUP_DATA_CACHE`` or ``datasets/cache``."""
    return Path(os.environ.get("SELFSUP_DATA_CACHE", "datasets/cache"))


def cache_key(data_cfg, split: str, image_mode: str, jpeg_quality: int, max_side: int | None) -> dict:
    """Everything that changes the converted images or their order."""
    path = str(Path(data_cfg.path).resolve()) if data_cfg.path else None
    return {
        "schema": SCHEMA_VERSION,
        "source": data_cfg.source,
        "path": path,
        "split": split,
        "image_size": data_cfg.image_size,
        "classes": data_cfg.classes,
        "train_fraction": data_cfg.train_fraction if split == "train" else 1.0,
        "image_mode": image_mode,
        "jpeg_quality": jpeg_quality,
        "max_side": max_side,
    }


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise conversions of one cache entry between processes (e.g. ranks on one node)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_beton(
    data_cfg,
    split: str = "train",
    image_mode: str = "smart",
    jpeg_quality: int = 95,
    max_side: int | None = None,
    workers: int | None = None,
    progress: bool = False,
    directory: str | os.PathLike | None = None,
) -> Path:
    """The recipe's source as a ``.beton``, converted once and cached.

    The file is ``<cache>/<source>-<split>-<hash>.beton`` with the hash over :func:`cache_key`; it
    holds the *filtered* source (``data.classes``, ``data.train_fraction``) in source order, so its
    row ``i`` is sample ``i`` of ``build_source(data_cfg, split)``, as the torchvision loader sees it.
    A valid cached file is reused; an invalid one (truncated, older schema) is rewritten.
    For ``data.source = beton`` the file named by ``data.path`` is validated and returned.
    """
    from .sources import build_source

    if data_cfg.source == "beton":
        return resolve_beton_path(data_cfg.path, split)
    key = cache_key(data_cfg, split, image_mode, jpeg_quality, max_side)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    out = Path(directory) if directory is not None else cache_dir()
    out = out / f"{data_cfg.source}-{split}-{digest}.beton"
    source = build_source(data_cfg, split)
    with _file_lock(out.with_name(out.name + ".lock")):
        if out.exists():
            try:
                info = beton_info(out)
                if info.get("cache_key") == key and info.get("source_len") == len(source):
                    return out
            except DataError:
                pass  # stale or damaged: rewrite below
        write_beton(
            source,
            out,
            image_mode=image_mode,
            jpeg_quality=jpeg_quality,
            max_side=max_side,
            on_error="fatal",
            workers=workers,
            progress=progress,
            split=split,
            meta={"cache_key": key},
        )
    return out


# ---------------------------------------------------------------------------------------------
# Reading a .beton back as a Source


def _is_train(split: str | None) -> bool:
    return split == "train"


def resolve_beton_path(path: str | os.PathLike | None, split: str) -> Path:
    """``data.path`` of a beton source; ``{split}`` in it is replaced (val and test stand in for each other)."""
    if not path:
        raise DataError("data.source=beton needs data.path=FILE.beton (use {split} for per-split files)")
    text = str(path)
    if "{split}" in text:
        candidates = [split] + [s for s in ("val", "test") if s != split and not _is_train(split)]
        for s in candidates:
            p = Path(text.replace("{split}", s))
            if p.exists():
                return p
        return Path(text.replace("{split}", split))
    return Path(text)


class BetonSource(Source):
    """A :class:`Source` over a ``.beton``: ``src[i]`` decodes row ``i`` (JPEG with OpenCV).

    Extra attributes: ``source_indices`` (the ``index`` field: each row's index in the original
    source), ``latents(i)``, ``object_ids`` and ``view_ids`` when those fields exist. Picklable
    (the file is reopened lazily in each process), so it works in DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.info = beton_info(self.path)
        self.name = str(self.info.get("source", "beton"))
        self.num_classes = int(self.info.get("num_classes", 0))
        self.split = self.info.get("split")
        self._reader = None
        self._mm = None
        self._open()
        if "latent" not in self.info["fields"]:
            self.latents = None  # type: ignore[assignment]

    def _open(self) -> None:
        try:
            from ffcv.reader import Reader
        except ImportError:
            raise DataError(
                f"reading '{self.path}' needs ffcv; install it (tools/setup.sh) or set data.source to the "
                f"original dataset ('{self.info.get('source')}')"
            ) from None
        reader = Reader(str(self.path))
        self._fields = {name: f"f{k}" for k, name in enumerate(reader.field_names)}
        missing = [f for f in _RESERVED if f not in self._fields]
        if missing:
            raise DataError(
                f"'{self.path}' lacks the field(s) {', '.join(missing)}; {_rewrite_hint(self.path)}"
            )
        table = reader.alloc_table
        order = np.argsort(table["ptr"])
        self._ptrs = np.ascontiguousarray(table["ptr"][order])
        self._sizes = np.ascontiguousarray(table["size"][order])
        self._meta = reader.metadata
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        self._reader = reader

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in ("_reader", "_mm", "_meta", "_ptrs", "_sizes"):
            state[k] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return int(self.info["count"])

    def _bytes(self, ptr: int) -> np.ndarray:
        k = int(np.searchsorted(self._ptrs, ptr))
        if k >= len(self._ptrs) or int(self._ptrs[k]) != ptr:
            raise DataError(f"'{self.path}' is damaged (no allocation at {ptr}); {_rewrite_hint(self.path)}")
        return self._mm[ptr : ptr + int(self._sizes[k])]

    def encoded(self, i: int) -> tuple[str, np.ndarray]:
        """Row ``i``'s stored image: ``("jpg", JPEG bytes)`` or ``("raw", HWC pixel bytes)``."""
        m = self._meta[self._fields["image"]][i]
        return ("raw" if int(m["mode"]) == 1 else "jpg"), np.asarray(self._bytes(int(m["data_ptr"])))

    def image(self, i: int) -> np.ndarray:
        """Row ``i``'s image, HWC uint8 RGB."""
        m = self._meta[self._fields["image"]][i]
        data = self._bytes(int(m["data_ptr"]))
        h, w = int(m["height"]), int(m["width"])
        if int(m["mode"]) == 1:  # raw
            return np.array(data, dtype=np.uint8).reshape(h, w, 3)
        import cv2

        bgr = cv2.imdecode(np.asarray(data), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] != (h, w):
            raise DataError(f"'{self.path}': the JPEG of row {i} is corrupt; {_rewrite_hint(self.path)}")
        return np.ascontiguousarray(bgr[..., ::-1])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        return self.image(i), int(self._meta[self._fields["label"]][i])

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self._meta[self._fields["label"]], dtype=np.int64)

    @property
    def source_indices(self) -> np.ndarray:
        return np.asarray(self._meta[self._fields["index"]], dtype=np.int64)

    def field(self, name: str) -> np.ndarray:
        """A scalar field (int or float) for every row."""
        if name not in self._fields:
            raise DataError(f"'{self.path}' has no field '{name}' (fields: {', '.join(self._fields)})")
        desc = self.info["fields"].get(name, {})
        if desc.get("type") not in ("int", "float"):
            raise DataError(f"field '{name}' of '{self.path}' is not a scalar")
        return np.asarray(self._meta[self._fields[name]])

    @property
    def object_ids(self) -> np.ndarray | None:
        return self.field("object_id").astype(np.int64) if "object_id" in self._fields else None

    @property
    def view_ids(self) -> np.ndarray | None:
        return self.field("view_id").astype(np.int64) if "view_id" in self._fields else None

    def latents(self, i: int) -> np.ndarray:  # replaced by None when the file has no latents
        desc = self.info["fields"]["latent"]
        ptr = int(self._meta[self._fields["latent"]][i])
        return np.frombuffer(self._bytes(ptr).tobytes(), dtype=np.dtype(desc["dtype"])).reshape(desc["shape"])


def build_source(cfg, split: str = "train") -> BetonSource:
    """``data.source = beton``: read ``data.path`` (a ``.beton``; ``{split}`` is substituted)."""
    path = resolve_beton_path(cfg.path, split)
    src = BetonSource(path)
    if src.split is not None and _is_train(src.split) != _is_train(split):
        raise DataError(
            f"'{path}' holds the {src.split} split but the {split} split was asked for; "
            "name one file per split and set data.path with {split}, e.g. datasets/cifar10-{split}.beton"
        )
    return src
