"""Every data source by name: ``build_source(data_cfg, split)`` for ``data.source``.

Sources themselves live in :mod:`.sources` (digits, image folders, CIFAR), :mod:`.iebench`
(3DIEBench-layout folders) and :mod:`.beton` (``.beton`` files); this module picks one, renders the
default ``render3d`` dataset on first use, and applies ``data.classes`` and ``data.train_fraction``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError
from .beton import BetonSource, is_train_split, resolve_beton_path
from .iebench import DOWNLOAD_HINT, IEBenchSource, norm_split
from .render3d import render_dataset
from .sources import CIFARSource, DigitsSource, ImageFolderSource, Source, Subset

DEFAULT_RENDER3D_ROOT = "datasets/render3d"
# The dataset `make demo` uses when data.path is unset: renders in about 10-20 s on 2 cores.
DEFAULT_RENDER3D = {"num_classes": 10, "objects_per_class": 20, "views_per_object": 10, "size": 64, "seed": 0}


def _iebench(cfg, split: str) -> Source:
    """The ``render3d`` and ``3diebench`` sources for :func:`selfsup.data.sources.build_source`.

    ``cfg`` is a :class:`~selfsup.config.DataConfig`. The train split shows every view of every
    training object (``view="all"``: pretraining and probe training see all renders); val and test
    show one fixed view per object (``view="fixed"``), so evaluation is deterministic. Images are
    resized to ``cfg.image_size``.

    For ``render3d`` with ``data.path`` unset, the default dataset (:data:`DEFAULT_RENDER3D`) is
    rendered into ``datasets/render3d`` (relative to the working directory) on first use.
    """
    split = norm_split(split)
    view = "all" if split == "train" else "fixed"
    if cfg.source == "3diebench":
        if not cfg.path:
            raise DataError(f"data.path is required for data.source=3diebench: {DOWNLOAD_HINT}")
        if not Path(cfg.path).is_dir():
            raise DataError(f"3DIEBench not found at data.path='{cfg.path}': {DOWNLOAD_HINT}")
        return IEBenchSource(cfg.path, split, image_size=cfg.image_size, view=view)
    if cfg.path:
        if not Path(cfg.path).is_dir():
            raise DataError(
                f"render3d dataset not found at data.path='{cfg.path}'; render it with "
                f"`selfsup data render3d --out {cfg.path}`, or unset data.path to use the default dataset"
            )
        return IEBenchSource(cfg.path, split, image_size=cfg.image_size, view=view)
    root = Path(DEFAULT_RENDER3D_ROOT)
    # A no-op when the folder already holds the default dataset; raises if it holds another one.
    render_dataset(root, workers=min(2, os.cpu_count() or 1), progress=True, **DEFAULT_RENDER3D)
    return IEBenchSource(root, split, image_size=cfg.image_size, view=view)


def _beton(cfg, split: str) -> BetonSource:
    """``data.source = beton``: read ``data.path`` (a ``.beton``; ``{split}`` is substituted)."""
    path = resolve_beton_path(cfg.path, split)
    src = BetonSource(path)
    if src.split is not None and is_train_split(src.split) != is_train_split(split):
        raise DataError(
            f"'{path}' holds the {src.split} split but the {split} split was asked for; "
            "name one file per split and set data.path with {split}, e.g. datasets/cifar10-{split}.beton"
        )
    return src


# name -> factory(cfg, split)
SOURCES: dict[str, Callable | str] = {
    "digits": lambda cfg, split: DigitsSource(split, cfg.image_size),
    "imagefolder": lambda cfg, split: ImageFolderSource(_need_path(cfg), split),
    "cifar10": lambda cfg, split: CIFARSource(cfg.path, split, 10),
    "cifar100": lambda cfg, split: CIFARSource(cfg.path, split, 100),
    "render3d": lambda cfg, split: _iebench(cfg, split),
    "3diebench": lambda cfg, split: _iebench(cfg, split),
    "beton": lambda cfg, split: _beton(cfg, split),
}


# Sources that read data.path (a folder or file); the others generate or embed their data.
NEEDS_PATH: dict[str, str] = {
    "imagefolder": "a folder holding train/<class>/* and val/<class>/* (datasets/imagefolder.md)",
    "cifar10": "the folder holding cifar-10-batches-py (datasets/cifar.md)",
    "cifar100": "the folder holding cifar-100-python (datasets/cifar.md)",
    "3diebench": "the 3DIEBench folder (datasets/3diebench.md)",
    "beton": "a .beton file written by `selfsup data write`; {split} is replaced by the split",
}


def _need_path(cfg) -> str:
    if not cfg.path:
        raise DataError(f"data.path is required for data.source={cfg.source}")
    return cfg.path


def build_source(cfg, split: str = "train") -> Source:
    """Build the source named by ``cfg.source`` (a :class:`~selfsup.config.DataConfig`)."""
    if cfg.source not in SOURCES:
        import difflib

        m = difflib.get_close_matches(cfg.source, list(SOURCES), n=1)
        hint = f"; did you mean '{m[0]}'?" if m else f"; choose one of {', '.join(SOURCES)}"
        raise DataError(f"data.source: unknown source '{cfg.source}'{hint}")
    src = SOURCES[cfg.source](cfg, split)
    return _filter(src, cfg, split)


def _filter(src: Source, cfg, split: str) -> Source:
    keep = np.arange(len(src))
    if cfg.classes is not None:
        keep = keep[np.isin(src.labels, np.asarray(cfg.classes))]
        if len(keep) == 0:
            raise DataError(f"data.classes={cfg.classes} selects no images of '{cfg.source}'")
    if split == "train" and cfg.train_fraction < 1.0:
        rng = np.random.default_rng(0)
        keep = np.sort(rng.permutation(keep)[: max(1, int(round(len(keep) * cfg.train_fraction)))])
    if len(keep) == len(src):
        return src
    return Subset(src, keep)
