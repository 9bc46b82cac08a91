"""Metadata of a gallery index (``index.json``): schema, validation, checksums, atomic writes.

The metadata is the commit point of every change: the faiss index it describes is written first
under a new generation name (``index-000007.faiss``), and the metadata, naming that file and its
SHA-256, is renamed into place last. A reader therefore sees either the old or the new state,
never a mix. The metadata carries its own SHA-256 (``meta_sha256``) so that a damaged or
hand-edited file is detected rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import IndexError_, UserError
from ..utils.io import atomic_write_text

FORMAT_VERSION = 1
KIND = "selfsup-gallery-index"
META_NAME = "index.json"
LOCK_NAME = ".lock"
NORMALIZATION = "l2"
METRIC = "inner_product"
FAISS_TYPE = "IndexFlatIP"
REBUILD_HINT = "rebuild it with `selfsup index build --overwrite`"

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "format_version": int,
    "index_file": str,
    "index_sha256": str,
    "faiss_index_type": str,
    "dim": int,
    "normalization": str,
    "metric": str,
    "count": int,
    "generation": int,
    "models": list,
    "item_ids": list,
    "item_versions": list,
    "meta_sha256": str,
}


def short(fp: str) -> str:
    """First 12 characters of a fingerprint, for messages."""
    return fp[:12]


@dataclass(frozen=True)
class ModelInfo:
    """The embedding model behind a set of features.

    ``fingerprint`` identifies the weights (two checkpoints with equal fingerprints embed
    identically); ``compatible_with`` lists the fingerprints of older models whose gallery features
    this model's queries may be compared against (declared by compatible training).
    """

    fingerprint: str
    model_id: str = ""
    dim: int | None = None
    compatible_with: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_any(cls, info: ModelInfo | Mapping[str, Any]) -> ModelInfo:
        """Validate a dict such as the one ``load_encoder`` returns (extra keys are ignored)."""
        if isinstance(info, ModelInfo):
            return info
        if not isinstance(info, Mapping):
            raise UserError(f"model info must be a dict with a 'fingerprint', got {type(info).__name__}")
        fp = info.get("fingerprint")
        if not isinstance(fp, str) or not fp:
            raise UserError("model info has no 'fingerprint'; load the model with a selfsup checkpoint")
        dim = info.get("dim")
        if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
            raise UserError(f"model info 'dim' must be a positive integer, got {dim!r}")
        compat = info.get("compatible_with") or ()
        if isinstance(compat, str) or not all(isinstance(c, str) for c in compat):
            raise UserError("model info 'compatible_with' must be a list of fingerprints (strings)")
        return cls(
            fingerprint=fp,
            model_id=str(info.get("model_id") or fp[:12]),
            dim=dim,
            compatible_with=tuple(compat),
        )

    def accepts(self, fingerprint: str) -> bool:
        """Whether this model's queries may search features embedded by ``fingerprint``."""
        return fingerprint == self.fingerprint or fingerprint in self.compatible_with

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "compatible_with": list(self.compatible_with),
        }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """SHA-256 of a file, streamed in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def meta_digest(meta: Mapping[str, Any]) -> str:
    """SHA-256 of the metadata's canonical JSON, ``meta_sha256`` itself left out."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def normalize_item_ids(item_ids: Iterable[Any]) -> list[int | str]:
    """Item ids as JSON scalars (ints or strings), checked unique."""
    out: list[int | str] = []
    for x in item_ids:
        if isinstance(x, bool):
            raise UserError(f"item ids must be integers or strings, got {x!r}")
        if isinstance(x, str):
            out.append(x)
            continue
        try:
            import numpy as np

            if isinstance(x, (int, np.integer)):
                out.append(int(x))
                continue
        except ImportError:  # pragma: no cover
            pass
        raise UserError(f"item ids must be integers or strings, got {type(x).__name__} {x!r}")
    if len(set(out)) != len(out):
        raise UserError("item ids must be unique; the gallery lists some item twice")
    return out


def read_manifest(index_dir: str | os.PathLike) -> dict[str, Any]:
    """Load and validate ``index.json``; any problem raises :class:`IndexError_` (one line)."""
    index_dir = Path(index_dir)
    path = index_dir / META_NAME
    if not path.exists():
        raise IndexError_(
            f"no gallery index at {index_dir} ({META_NAME} missing); create one with `selfsup index build`"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexError_(f"index metadata {path} is corrupt ({type(e).__name__}); {REBUILD_HINT}") from e
    if not isinstance(meta, dict):
        raise IndexError_(f"index metadata {path} is corrupt (not a JSON object); {REBUILD_HINT}")
    if meta.get("kind") != KIND:
        raise IndexError_(f"{path} is not a selfsup gallery index metadata file; {REBUILD_HINT}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexError_(
            f"index {index_dir} has format version {meta.get('format_version')!r} but this selfsup reads "
            f"version {FORMAT_VERSION}; use a matching selfsup version or {REBUILD_HINT}"
        )
    for key, typ in _REQUIRED.items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            raise IndexError_(
                f"index metadata {path} is corrupt (field {key!r} missing or invalid); {REBUILD_HINT}"
            )
    if meta["meta_sha256"] != meta_digest(meta):
        raise IndexError_(f"index metadata {path} is corrupt (checksum mismatch); {REBUILD_HINT}")
    n = meta["count"]
    versions = meta["item_versions"]
    if len(meta["item_ids"]) != n or len(versions) != n:
        raise IndexError_(
            f"index metadata {path} is inconsistent (item lists do not match count {n}); {REBUILD_HINT}"
        )
    nm = len(meta["models"])
    if nm == 0 or not all(isinstance(v, int) and 0 <= v < nm for v in versions):
        raise IndexError_(f"index metadata {path} is inconsistent (bad model versions); {REBUILD_HINT}")
    if meta.get("labels") is not None and len(meta["labels"]) != n:
        raise IndexError_(
            f"index metadata {path} is inconsistent (labels do not match count); {REBUILD_HINT}"
        )
    data = meta.get("data")
    if data is not None and (
        not isinstance(data, dict) or data.get("count") != n or not isinstance(data.get("fingerprint"), str)
    ):
        raise IndexError_(
            f"index metadata {path} is inconsistent (its data identity does not match count); {REBUILD_HINT}"
        )
    if Path(meta["index_file"]).name != meta["index_file"]:
        raise IndexError_(f"index metadata {path} names an index file outside its folder; {REBUILD_HINT}")
    return meta


def write_manifest(index_dir: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Stamp ``meta_sha256`` and atomically replace ``index.json`` (the commit point)."""
    meta["meta_sha256"] = meta_digest(meta)
    atomic_write_text(Path(index_dir) / META_NAME, json.dumps(meta, separators=(",", ":")) + "\n")
