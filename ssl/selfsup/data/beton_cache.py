"""A recipe's data source converted to ``.beton`` once and cached (what the FFCV loader reads)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from .beton import SCHEMA_VERSION, beton_info, resolve_beton_path, write_beton
from .catalog import build_source


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
                checked = bool(info.get("row_crc32"))  # files from before row checksums: rewrite
                if info.get("cache_key") == key and info.get("source_len") == len(source) and checked:
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
