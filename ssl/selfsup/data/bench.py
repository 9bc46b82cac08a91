"""Loader throughput: the FFCV loader against the torchvision loader on the same images.

:func:`bench_loader` renders ``images`` synthetic photograph-like pictures (smooth colour fields,
a few shapes, a little noise: JPEG-compressible like real photos, unlike pure noise) at
``store_size`` px (by default the view size up to 64 px, else ``size * 256 / 224``: ImageNet's
256 px images for 224 px crops), stores them once as a temporary ``.beton`` (JPEG by default) and
measures, each in a fresh Python process so that one loader's threads, JIT state or forked
workers cannot slow another:

- ``loader/ffcv_img_per_s``: :class:`~selfsup.data.ffcv_loader.FFCVTrainLoader` with its default
  decode-once pipeline, two SimCLR views (crop, flip, colour jitter, grayscale, blur) per image,
  plus ``local_views`` multi-crop views if asked;
- ``loader/ffcv_per_view_img_per_s``: the same loader with the previous per-view pipeline (one
  decode per view), in the same run, so before and after are measured side by side;
- ``loader/torchvision_img_per_s``: :class:`~selfsup.data.torchvision_loader.TorchvisionTrainLoader`
  over the same encoded images (decoded in its workers), same recipe, same number of workers;
- ``loader/decode_img_per_s``: the ceiling, FFCV reading and decoding each image once with no
  augmentation, same threads;
- ``loader/speedup`` = ffcv / torchvision, ``loader/ffcv_vs_decode`` = decode / ffcv (and the
  ``per_view_`` twins for the previous pipeline).

Images per second count source images (each gives all its views). Each loader runs one epoch
first (FFCV's JIT compilation, worker start-up, page cache) and is then timed over the next epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import DataError
from .sources import InMemorySource, Source


class SyntheticSource(InMemorySource):
    """``n`` random pictures of ``size`` px: blurred colour fields with rectangles and discs."""

    name = "synthetic"

    def __init__(self, n: int, size: int, num_classes: int = 10, seed: int = 0) -> None:
        import torch
        import torch.nn.functional as F

        rng = np.random.default_rng(seed)
        self.num_classes = num_classes
        low = torch.from_numpy(rng.uniform(0, 1, (n, 3, 4, 4)).astype(np.float32))
        imgs = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1).numpy()
        imgs = np.ascontiguousarray(imgs.transpose(0, 2, 3, 1))
        yy, xx = np.mgrid[0:size, 0:size] / size
        for i in range(n):
            for _ in range(3):
                colour = rng.uniform(0, 1, 3).astype(np.float32)
                cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.3)
                mask = (
                    ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)
                    if rng.random() < 0.5
                    else ((abs(xx - cx) < r) & (abs(yy - cy) < r / 2))
                )
                imgs[i][mask] = colour
        imgs += rng.normal(0, 0.02, imgs.shape).astype(np.float32)
        self.images = (np.clip(imgs, 0, 1) * 255).round().astype(np.uint8)
        self._labels = rng.integers(0, num_classes, n).astype(np.int64)


class EncodedSource(Source):
    """A ``.beton``'s JPEG bytes, decoded on access (what a torchvision loader over files does)."""

    name = "encoded"

    def __init__(self, beton) -> None:
        self.num_classes = beton.num_classes
        self.blobs = [beton.encoded(i)[1].tobytes() for i in range(len(beton))]
        self._labels = np.asarray(beton.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        import torch
        from torchvision.io import decode_jpeg

        data = torch.frombuffer(bytearray(self.blobs[i]), dtype=torch.uint8)
        return decode_jpeg(data).permute(1, 2, 0).numpy(), int(self._labels[i])

    def __len__(self) -> int:
        return len(self.blobs)

    @property
    def labels(self) -> np.ndarray:
        return self._labels


def store_size(size: int) -> int:
    """Side of the stored images for ``size`` px views: the view size up to 64 px, else 256/224 of it."""
    return size if size <= 64 else int(round(size * 256 / 224))


def local_size(size: int) -> int:
    """Side of the multi-crop views: 96 px for 224 px views (SwAV's), half the view size when small."""
    return int(round(size * 96 / 224)) if size > 64 else max(8, size // 2)


def bench_recipe(size: int, batch_size: int, workers: int, seed: int = 0, local_views: int = 0):
    """The SimCLR recipe both loaders run: two views, crop 0.2-1, flip, jitter 0.8, gray 0.2, blur 0.5.

    ``local_views`` adds multi-crop views of :func:`local_size` px (crop scale 0.05-0.14).
    """
    from ..config import Recipe

    r = Recipe()
    r.seed = seed
    d = r.data
    d.image_size, d.batch_size, d.num_workers, d.views = size, batch_size, workers, 2
    a = d.augment
    a.crop_scale, a.flip_p = [0.2, 1.0], 0.5
    a.jitter_p, a.jitter = 0.8, [0.4, 0.4, 0.4, 0.1]
    a.grayscale_p, a.blur_p, a.blur_sigma, a.solarize_p = 0.2, 0.5, [0.1, 2.0], 0.0
    a.local_views, a.local_size, a.local_scale = local_views, local_size(size), [0.05, 0.14]
    return r


def _time_epochs(loader, epochs: int = 2) -> tuple[float, float, int]:
    """(first-epoch seconds, timed-epoch seconds, images in the timed epoch)."""
    times, count = [], 0
    for e in range(epochs):
        loader.set_epoch(e)
        t0 = time.perf_counter()
        count = 0
        for batch in loader:
            count += len(batch["label"])
        times.append(time.perf_counter() - t0)
    return times[0], times[-1], count


def _measure(kind: str, beton: str, size: int, batch_size: int, workers: int, local_views: int = 0) -> dict:
    """Runs in a child process: one warm-up epoch, one timed epoch."""
    import torch

    torch.set_num_threads(1)  # the consumer does no work; keep the cores for the loaders
    recipe = bench_recipe(size, batch_size, workers, local_views=local_views)
    if kind.startswith("ffcv"):
        from .ffcv_loader import FFCVTrainLoader

        pipeline = kind.split(":", 1)[1] if ":" in kind else "decode-once"
        t0 = time.perf_counter()
        loader = FFCVTrainLoader(recipe, path=beton, pipeline=pipeline)
        build = time.perf_counter() - t0
        warm, timed, n = _time_epochs(loader)
        return {"img_per_s": n / timed, "warmup_s": warm + build, "images": n}
    if kind == "torchvision":
        from .beton import BetonSource
        from .torchvision_loader import TorchvisionTrainLoader

        beton_src = BetonSource(beton)
        if beton_src.info["fields"]["image"]["mode"] == "raw":
            src: Source = beton_src
        else:  # the very JPEG bytes FFCV decodes, decoded in the DataLoader workers
            src = EncodedSource(beton_src)
        loader = TorchvisionTrainLoader(recipe, source=src)
        warm, timed, n = _time_epochs(loader)
        return {"img_per_s": n / timed, "warmup_s": warm, "images": n}
    if kind == "decode":
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.rgb_image import SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToTensor

        loader = Loader(
            beton,
            batch_size=batch_size,
            num_workers=max(1, workers),
            order=OrderOption.RANDOM,
            seed=0,
            os_cache=True,
            pipelines={
                "image": [SimpleRGBImageDecoder(), ToTensor()],
                "label": [IntDecoder(), ToTensor()],
                "index": None,
            },
        )
        times, n = [], 0
        for _ in range(2):
            t0 = time.perf_counter()
            n = 0
            for img, _ in loader:
                n += img.shape[0]
            times.append(time.perf_counter() - t0)
        return {"img_per_s": n / times[-1], "warmup_s": times[0], "images": n}
    raise ValueError(kind)


def _run_child(spec: dict, timeout: float) -> dict:
    kind = spec["kind"]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "selfsup.data.bench", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise DataError(
            f"the {kind} loader benchmark took over {timeout:.0f} s; try fewer --images"
        ) from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DataError(f"the {kind} loader benchmark failed: {' | '.join(tail)}")
    return json.loads(lines[-1])


PIPELINES = ("decode-once", "per-view")


def bench_loader(
    size: int = 32,
    images: int = 4096,
    workers: int = 2,
    batch_size: int = 128,
    mode: str = "jpg",
    quality: int = 90,
    directory: str | os.PathLike | None = None,
    timeout: float = 900.0,
    local_views: int = 0,
    pipelines: tuple[str, ...] = PIPELINES,
    stored: int | None = None,
) -> dict:
    """Measure the loaders and the decode ceiling; return the flat ``loader/...`` metrics.

    ``pipelines``: which FFCV pipelines to time (both by default: before and after in one run);
    ``stored``: side of the stored images (default :func:`store_size`).
    """
    from .ffcv_loader import ffcv_available

    if not ffcv_available():
        raise DataError("the loader benchmark needs ffcv; run tools/setup.sh (see datasets/*.md)")
    if images < 2 * batch_size:
        raise DataError(f"--images {images} is less than two batches of {batch_size}; use more images")
    unknown = [p for p in pipelines if p not in PIPELINES]
    if unknown or not pipelines:
        raise DataError(f"unknown FFCV pipeline {unknown}; choose from {', '.join(PIPELINES)}")
    from .beton import write_beton

    side = int(stored or store_size(size))
    kinds = ["decode", *[f"ffcv:{p}" for p in pipelines], "torchvision"]
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        beton = str(Path(tmp) / "bench.beton")
        write_beton(
            SyntheticSource(images, side), beton, image_mode=mode, jpeg_quality=quality, workers=workers
        )
        res = {}
        for kind in kinds:
            spec = {
                "kind": kind, "beton": beton, "size": size, "batch_size": batch_size,
                "workers": workers, "local_views": local_views,
            }  # fmt: skip
            res[kind] = _run_child(spec, timeout)
    tv, dec = res["torchvision"]["img_per_s"], res["decode"]["img_per_s"]
    out: dict = {}
    for p in pipelines:
        prefix = "loader/ffcv" if p == "decode-once" else "loader/ffcv_per_view"
        key = "" if p == "decode-once" else "per_view_"
        ips = res[f"ffcv:{p}"]["img_per_s"]
        out[f"{prefix}_img_per_s"] = round(ips, 1)
        out[f"loader/{key}speedup"] = round(ips / tv, 3)
        out[f"loader/{key}ffcv_vs_decode"] = round(dec / ips, 3)
        out[f"{prefix}_warmup_s"] = round(res[f"ffcv:{p}"]["warmup_s"], 2)
    if "decode-once" in pipelines and "per-view" in pipelines:
        out["loader/decode_once_vs_per_view"] = round(
            res["ffcv:decode-once"]["img_per_s"] / res["ffcv:per-view"]["img_per_s"], 3
        )
    out.update(
        {
            "loader/torchvision_img_per_s": round(tv, 1),
            "loader/decode_img_per_s": round(dec, 1),
            "loader/torchvision_warmup_s": round(res["torchvision"]["warmup_s"], 2),
            "loader/size": size,
            "loader/store_size": side,
            "loader/local_views": local_views,
            "loader/local_size": local_size(size) if local_views else 0,
            "loader/images": images,
            "loader/workers": workers,
            "loader/batch_size": batch_size,
        }
    )
    return out


if __name__ == "__main__":  # child process of _run_child
    spec = json.loads(sys.argv[1])
    print(
        json.dumps(
            _measure(
                spec["kind"],
                spec["beton"],
                spec["size"],
                spec["batch_size"],
                spec["workers"],
                spec.get("local_views", 0),
            )  # fmt: skip
        )
    )
