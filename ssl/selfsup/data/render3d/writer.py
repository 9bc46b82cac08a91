"""Writing a 3DIEBench-layout dataset of renders: objects in parallel, atomically, cached by parameters."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..iebench import IEBenchIndex, object_split
from .raycast import render_views
from .scene import CLASSES, sample_latents, sample_shape

FORMAT_VERSION = 1
MANIFEST = "render3d.json"


# ---------------------------------------------------------------------------------------------
# Dataset writer


def _object_seed(seed: int, class_name: str, obj: int) -> np.random.SeedSequence:
    # Keyed by class *name* and object index: an object's shape, colour and views do not depend
    # on the worker count, the render order or how many classes were asked for.
    return np.random.SeedSequence([seed, zlib.crc32(class_name.encode()), obj])


def object_name(obj: int) -> str:
    """Folder name of object number ``obj`` within its class."""
    return f"obj{obj:04d}"


def _render_object(task: tuple[str, str, int, int, int, int]) -> int:
    """Render and write every view of one object (a process-pool task); returns the image count."""
    from PIL import Image

    root, class_name, obj, views, size, seed = task
    rng = np.random.default_rng(_object_seed(seed, class_name, obj))
    shape = sample_shape(class_name, rng)
    latents = sample_latents(rng, views)
    images = render_views(shape, latents, size)
    folder = Path(root) / class_name / object_name(obj)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(views):
        # Quality 95 without chroma subsampling: at 32-64 px, 4:2:0 subsampling would smear the
        # floor and light hues that the colour latents are meant to be recoverable from.
        Image.fromarray(images[k]).save(folder / f"image_{k}.jpg", quality=95, subsampling=0)
        np.save(folder / f"latent_{k}.npy", latents[k])
    return views


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _existing_is_complete(out: Path, params: dict[str, Any]) -> bool:
    """True if ``out`` already holds this exact dataset; raises DataError if it holds anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DataError(f"'{out}' exists and is not a folder; pick another output folder")
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            raise DataError(f"'{manifest}' is unreadable; delete '{out}' and render again") from None
        if {k: found.get(k) for k in params} == params:
            return True
        diff = ", ".join(f"{k}={found.get(k)} (asked {v})" for k, v in params.items() if found.get(k) != v)
        raise DataError(
            f"'{out}' already holds a render3d dataset with other parameters: {diff}; "
            "pick another output folder or delete this one"
        )
    if any(out.iterdir()):
        raise DataError(
            f"'{out}' exists and is not a render3d dataset; pick another output folder or delete it"
        )
    return False


def render_dataset(
    out: str | Path,
    num_classes: int = 10,
    objects_per_class: int = 20,
    views_per_object: int = 10,
    size: int = 64,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render a 3DIEBench-layout dataset into ``out``; a no-op if ``out`` already holds it.

    Classes are the first ``num_classes`` of :data:`CLASSES`; each object gets its own shape
    parameters, colour and ``views_per_object`` random latents, all determined by ``seed``
    (results do not depend on ``workers``). The split files hold a fixed 80/20 per-class object
    split. Everything is written to a hidden sibling folder that is renamed onto ``out`` at the
    end, so an interrupted render leaves no partial dataset.

    Returns ``{"images", "seconds", "images_per_s", "cached", "path"}``; ``cached`` is True (and
    nothing is rendered) when ``out`` already holds a dataset with these parameters. Raises
    :class:`DataError` if ``out`` holds anything else.
    """
    out = Path(out)
    if not 1 <= num_classes <= len(CLASSES):
        raise DataError(f"render3d: num_classes must be between 1 and {len(CLASSES)}, got {num_classes}")
    if objects_per_class < 2:
        raise DataError(
            f"render3d: objects_per_class must be at least 2 (train and val), got {objects_per_class}"
        )
    if views_per_object < 1:
        raise DataError(f"render3d: views_per_object must be at least 1, got {views_per_object}")
    if not 16 <= size <= 512:
        raise DataError(f"render3d: size must be between 16 and 512 pixels, got {size}")
    params = {
        "format": "render3d",
        "version": FORMAT_VERSION,
        "num_classes": int(num_classes),
        "objects_per_class": int(objects_per_class),
        "views_per_object": int(views_per_object),
        "size": int(size),
        "seed": int(seed),
    }
    n_images = num_classes * objects_per_class * views_per_object
    if _existing_is_complete(out, params):
        return {"images": n_images, "seconds": 0.0, "images_per_s": 0.0, "cached": True, "path": str(out)}

    out.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of killed renders into the same folder: remove those whose process is gone.
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    classes = CLASSES[:num_classes]
    tasks = [
        (str(tmp), c, o, views_per_object, size, seed) for c in classes for o in range(objects_per_class)
    ]
    start = time.perf_counter()
    bar = None
    try:
        tmp.mkdir()
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_images, desc=f"render3d {out.name}", unit="img", leave=False, mininterval=1.0)
        if workers > 1:
            import multiprocessing as mp

            import scipy.spatial.transform  # noqa: F401  (imported once here, inherited by forked workers)

            # fork on Linux (as torch's DataLoader does): spawn would re-import the caller's main
            # module, which breaks scripts without an `if __name__ == "__main__"` guard. Children
            # only run numpy and PIL, so threads the parent may hold (torch, tqdm) are not touched.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
                for n in pool.imap_unordered(_render_object, tasks, chunksize=4):
                    if bar is not None:
                        bar.update(n)
        else:
            for task in tasks:
                n = _render_object(task)
                if bar is not None:
                    bar.update(n)
        seconds = time.perf_counter() - start

        objects = {c: [object_name(o) for o in range(objects_per_class)] for c in classes}
        split = object_split(objects)
        for name, arr in split.items():
            np.save(tmp / f"{name}.npy", arr)
        manifest = dict(params, classes=sorted(classes), images=n_images)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        # Publish: the rename is atomic. Another process may have published the same dataset in
        # the meantime (two trainers starting together); then keep theirs.
        try:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            os.rename(tmp, out)
        except OSError:
            if not _existing_is_complete(out, params):
                raise
            return {"images": n_images, "seconds": 0.0, "images_per_s": 0.0, "cached": True, "path": str(out)}
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "images": n_images,
        "seconds": seconds,
        "images_per_s": n_images / max(seconds, 1e-9),
        "cached": False,
        "path": str(out),
    }


def save_sample_grid(root: str | Path, path: str | Path, views: int = 8, cell: int = 64) -> Path:
    """Save a PNG grid of a rendered dataset: one row per class (its first object), one column per view.

    Each row is labelled with the class name. Images are resized to ``cell`` pixels. The PNG is
    palette-quantised to stay small enough to commit.
    """
    from PIL import Image, ImageDraw

    index = IEBenchIndex(root, "train")
    label_w = 72
    rows = []
    for c, name in enumerate(index.classes):
        objs = np.nonzero(index.labels == c)[0]
        if len(objs) == 0:
            continue
        i = int(objs[0])
        nv = min(views, index.num_views)
        rows.append((name, [index.load_image(i, v, cell) for v in range(nv)]))
    if not rows:
        raise DataError(f"'{root}' has no training objects to draw")
    ncols = max(len(r[1]) for r in rows)
    canvas = Image.new("RGB", (label_w + ncols * cell, len(rows) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (name, imgs) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 6), name, fill=(0, 0, 0))
        for k, img in enumerate(imgs):
            canvas.paste(Image.fromarray(img), (label_w + k * cell, r * cell))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )
    return path
