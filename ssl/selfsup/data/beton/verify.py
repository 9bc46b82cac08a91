"""Checking the records of a ``.beton``: per-row checksums, and a whole-file verification.

The sidecar's fingerprint covers the size and both ends of a file (header, allocation table), so
it is cheap for 100 GB files but blind to damage in the middle: a bad disk block, a half-copied
page. FFCV's decoder does not notice either (a corrupt JPEG decodes to some pixels, raw pixels
are taken as they are), so a run would train on damaged images without a word.

Hence a CRC32 per row over its bytes: its metadata record (label, index, image size and pointer)
and each of its allocations (the stored image, latents), in file order. The writer records them
in the sidecar (``row_crc32``: base64 of little-endian uint32). :class:`RowChecker` checks a row
the first time a loader reads it (``check_rows``), outside FFCV's decoding pipeline: a few
milliseconds per batch, the first epoch only. A file written before checksums existed is checked
by decoding its JPEG rows instead. :func:`verify_beton` checks every row of a file (and decodes
every JPEG): ``selfsup data info --verify``.
"""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import numpy as np

from ...errors import DataError
from .schema import rewrite_hint


def encode_crcs(crcs: np.ndarray) -> str:
    return base64.b64encode(np.asarray(crcs, dtype="<u4").tobytes()).decode("ascii")


def decode_crcs(text: str | None, count: int) -> np.ndarray | None:
    if not text:
        return None
    try:
        crcs = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype="<u4")
    except (ValueError, TypeError):
        return None
    return crcs if len(crcs) == count else None


class RowChecker:
    """Per-row checks of one ``.beton``; each row is checked once per checker."""

    def __init__(self, path: str | Path, info: dict) -> None:
        from ffcv.reader import Reader

        self.path = Path(path)
        reader = Reader(str(self.path))
        self.count = int(reader.num_samples)
        self.meta = reader.metadata
        self._meta_bytes = self.meta.view(np.uint8).reshape(self.count, -1) if self.count else None
        table = reader.alloc_table
        order = np.lexsort((table["ptr"], table["sample_id"]))
        self._sid = np.asarray(table["sample_id"][order], dtype=np.int64)
        self._ptr = np.asarray(table["ptr"][order], dtype=np.int64)
        self._size = np.asarray(table["size"][order], dtype=np.int64)
        self._bounds = np.searchsorted(self._sid, np.arange(self.count + 1))
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.crcs = decode_crcs(info.get("row_crc32"), self.count)
        names = list(reader.field_names)
        self._image_field = f"f{names.index('image')}" if "image" in names else None
        self.checked = np.zeros(self.count, dtype=bool)

    def crc(self, i: int) -> int:
        """CRC32 of row ``i``: its metadata record, then its allocations in file order."""
        c = zlib.crc32(self._meta_bytes[i].tobytes())
        for k in range(self._bounds[i], self._bounds[i + 1]):
            ptr, size = int(self._ptr[k]), int(self._size[k])
            if ptr + size > len(self._mm):
                return -1  # an allocation past the end of the file: damaged
            c = zlib.crc32(self._mm[ptr : ptr + size], c)
        return c

    def image_problem(self, i: int) -> str | None:
        """Why row ``i``'s image cannot be what was stored, or None (decodes JPEGs)."""
        if self._image_field is None:
            return None
        m = self.meta[self._image_field][i]
        h, w, ptr = int(m["height"]), int(m["width"]), int(m["data_ptr"])
        k = np.flatnonzero(self._ptr[self._bounds[i] : self._bounds[i + 1]] == ptr)
        if len(k) != 1:
            return "its image points to no allocation"
        size = int(self._size[self._bounds[i] + k[0]])
        if ptr + size > len(self._mm):
            return "its image runs past the end of the file"
        data = self._mm[ptr : ptr + size]
        if int(m["mode"]) == 1:  # raw pixels
            return None if size >= h * w * 3 else f"its raw image has {size} bytes for {h}x{w}x3"
        import cv2

        img = cv2.imdecode(np.asarray(data), cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != (h, w):
            return "its JPEG does not decode"
        return None

    def problem(self, i: int, decode: bool) -> str | None:
        if self.crcs is not None and self.crc(i) != int(self.crcs[i]):
            return "its bytes do not match the checksum written with the file"
        if decode or self.crcs is None:
            return self.image_problem(i)
        return None

    def check_rows(self, rows: np.ndarray) -> None:
        """Raise :class:`DataError` (one line) at the first damaged row not checked before."""
        rows = np.asarray(rows, dtype=np.int64)
        for i in rows[~self.checked[rows]]:
            why = self.problem(int(i), decode=False)
            if why is not None:
                raise DataError(
                    f"'{self.path}': row {int(i)} is corrupt ({why}); check the whole file with "
                    f"`selfsup data info --verify {self.path}` and {rewrite_hint(self.path)}"
                )
            self.checked[i] = True


def row_crc32(path: str | Path) -> np.ndarray:
    """CRC32 of every row of a freshly written file (what the writer records)."""
    checker = RowChecker(path, {})
    return np.array([checker.crc(i) for i in range(checker.count)], dtype=np.uint32)


def verify_beton(path: str | Path, progress: bool = True) -> dict:
    """Check every row of ``path`` (checksum when recorded, allocation bounds, JPEG decoding).

    Returns ``{"rows", "checksums": bool, "bad": [row, ...] (first 20), "bad_count", "first_problem"}``.
    """
    from tqdm.auto import tqdm

    from .schema import beton_info

    info = beton_info(path)  # size, fingerprint and header first
    checker = RowChecker(path, info)
    bad, first = [], None
    for i in tqdm(range(checker.count), desc="verify", unit="row", disable=not progress, leave=False):
        why = checker.problem(i, decode=True)
        if why is not None:
            if first is None:
                first = f"row {i}: {why}"
            bad.append(i)
    return {
        "rows": checker.count,
        "checksums": checker.crcs is not None,
        "bad": bad[:20],
        "bad_count": len(bad),
        "first_problem": first,
    }
