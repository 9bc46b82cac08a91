"""The ``.beton`` schema: sidecar files, fingerprints, FFCV's header, and validating a file.

Beside each ``FILE.beton`` lies a sidecar ``FILE.beton.json``: schema version, fields, sample
count, source name and split, class count, image sizes, skipped samples, and the file's size and
fingerprint. It is what makes a file trustworthy: a ``.beton`` without a sidecar, from another
schema version, or whose size or fingerprint no longer matches (a truncated copy) is refused with a
:class:`~selfsup.errors.DataError` saying how to rewrite it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ...errors import DataError

SCHEMA_VERSION = 1
FORMAT = "selfsup-beton"
IMAGE_MODES = ("jpg", "raw", "proportion", "smart")
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 1 << 21, 1 << 28  # every sample must fit in one FFCV page
SMART_THRESHOLD = 3 * 256 * 256  # "smart": raw up to a 256x256 image's bytes, JPEG above
_FINGERPRINT_SPAN = 1 << 16
MAX_SIDE = 65535  # FFCV stores width and height as uint16
RESERVED_FIELDS = ("image", "label", "index")

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


def rewrite_hint(path: Path) -> str:
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
            f"'{path}' has no sidecar '{sc.name}': written by an older selfsup or another tool; {rewrite_hint(path)}"
        )
    try:
        info = json.loads(sc.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"sidecar '{sc}' is unreadable ({e}); {rewrite_hint(path)}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(f"'{sc}' is not a selfsup .beton sidecar; {rewrite_hint(path)}")
    schema = info.get("schema")
    if schema != SCHEMA_VERSION:
        raise DataError(
            f"'{path}' uses .beton schema {schema}, this selfsup reads schema {SCHEMA_VERSION}; {rewrite_hint(path)}"
        )
    size = path.stat().st_size
    if size != info.get("file_size"):
        raise DataError(
            f"'{path}' is truncated or was modified ({size} bytes, its sidecar says {info.get('file_size')}); "
            f"{rewrite_hint(path)}"
        )
    if fingerprint(path) != info.get("fingerprint"):
        raise DataError(
            f"'{path}' no longer matches its sidecar (modified after writing); {rewrite_hint(path)}"
        )
    header = np.fromfile(path, dtype=_HEADER, count=1)
    if (
        len(header) != 1
        or int(header[0]["version"]) != _FFCV_FORMAT_VERSION
        or int(header[0]["num_samples"]) != info.get("count")
        or int(header[0]["alloc_table_ptr"]) > size
    ):
        raise DataError(f"'{path}' has a damaged FFCV header; {rewrite_hint(path)}")
    return {"path": str(path), **info}
