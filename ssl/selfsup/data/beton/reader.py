"""Reading a ``.beton`` back as a :class:`~selfsup.data.sources.Source` (random access, no FFCV loader)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..sources import Source
from .schema import RESERVED_FIELDS, beton_info, rewrite_hint


def is_train_split(split: str | None) -> bool:
    return split == "train"


def resolve_beton_path(path: str | os.PathLike | None, split: str) -> Path:
    """``data.path`` of a beton source; ``{split}`` in it is replaced (val and test stand in for each other)."""
    if not path:
        raise DataError("data.source=beton needs data.path=FILE.beton (use {split} for per-split files)")
    text = str(path)
    if "{split}" in text:
        candidates = [split] + [s for s in ("val", "test") if s != split and not is_train_split(split)]
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
        self._checker = None
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
        missing = [f for f in RESERVED_FIELDS if f not in self._fields]
        if missing:
            raise DataError(
                f"'{self.path}' lacks the field(s) {', '.join(missing)}; {rewrite_hint(self.path)}"
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
        for k in ("_reader", "_mm", "_meta", "_ptrs", "_sizes", "_checker"):
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
            raise DataError(f"'{self.path}' is damaged (no allocation at {ptr}); {rewrite_hint(self.path)}")
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
            raise DataError(f"'{self.path}': the JPEG of row {i} is corrupt; {rewrite_hint(self.path)}")
        return np.ascontiguousarray(bgr[..., ::-1])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        if self._checker is None:  # per process: not pickled into DataLoader workers
            from .verify import RowChecker

            self._checker = RowChecker(self.path, self.info)
        self._checker.check_rows(np.array([i]))  # corrupt bytes: a DataError, as in the FFCV loader
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
