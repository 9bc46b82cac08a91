"""Which items a gallery index holds: the data identity recorded in ``index.json``.

An index is a list of embeddings by position; an upgrade overwrites positions with a new model's
embeddings. If those come from other data (another split, another class subset, a dataset folder
that changed), every upgraded slot silently describes the wrong image. So the metadata records
the data the index was built from::

    {"source": "digits", "path": null, "split": "test", "classes": [0, 1, 2, 3, 4],
     "train_fraction": 1.0, "count": 226, "fingerprint": "3f0c..."}

``fingerprint`` hashes each item's id in its source (the position before ``data.classes`` and
``data.train_fraction`` filtering) and its label, in gallery order: two data specs that yield the
same items in the same order have the same fingerprint, anything else a different one. Features
given as a file (``--feats``) have ``source: "features"``: only their count (and labels, when
given) can be checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexError_

FEATURES = "features"


def items_fingerprint(ids: np.ndarray, labels: np.ndarray | None) -> str:
    """sha256 (first 16 hex digits) of the items' ids and labels, in order."""
    h = hashlib.sha256(b"selfsup-items-v1")
    h.update(np.ascontiguousarray(np.asarray(ids, dtype="<i8")).tobytes())
    if labels is not None:
        h.update(b"labels")
        h.update(np.ascontiguousarray(np.asarray(labels, dtype="<i8")).tobytes())
    return h.hexdigest()[:16]


def source_identity(data_cfg, split: str, source) -> dict[str, Any]:
    """The identity of ``build_source(data_cfg, split)`` (passed in as ``source``)."""
    ids = getattr(source, "indices", None)
    ids = np.arange(len(source)) if ids is None else np.asarray(ids)
    labels = np.asarray(source.labels)
    return {
        "source": data_cfg.source,
        "path": str(Path(data_cfg.path).resolve()) if data_cfg.path else None,
        "split": split,
        "classes": list(data_cfg.classes) if data_cfg.classes is not None else None,
        "train_fraction": float(data_cfg.train_fraction) if split == "train" else 1.0,
        "count": int(len(source)),
        "fingerprint": items_fingerprint(ids, labels),
    }


def features_identity(path: str | None, count: int, labels: np.ndarray | None) -> dict[str, Any]:
    """The identity of ``count`` feature rows from a file (labels optional)."""
    return {
        "source": FEATURES,
        "path": str(Path(path).resolve()) if path else None,
        "split": None,
        "classes": None,
        "train_fraction": 1.0,
        "count": int(count),
        "fingerprint": items_fingerprint(np.arange(count), labels),
        "has_labels": labels is not None,
    }


def describe(data: Mapping[str, Any] | None) -> str:
    """``digits (test split, classes [0, 1, 2, 3, 4], 226 items, fingerprint 3f0c...)``."""
    if not data:
        return "data of unknown identity (an index built before selfsup recorded it)"
    if data.get("source") == FEATURES:
        return f"{data['count']} feature rows from {data.get('path') or 'a features file'}"
    parts = [f"{data.get('split')} split"]
    if data.get("classes") is not None:
        parts.append(f"classes {data['classes']}")
    if data.get("train_fraction", 1.0) < 1.0:
        parts.append(f"train_fraction {data['train_fraction']}")
    parts += [f"{data['count']} items", f"fingerprint {str(data.get('fingerprint'))[:8]}"]
    where = f":{data['path']}" if data.get("path") else ""
    return f"{data.get('source')}{where} ({', '.join(parts)})"


def same_label_space(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether labels of ``a``'s and ``b``'s items can be compared (same dataset and classes)."""
    return all(a.get(k) == b.get(k) for k in ("source", "path", "classes"))


def check_same_items(
    meta: Mapping[str, Any],
    data: Mapping[str, Any],
    index_dir: Path,
    action: str,
    labels: np.ndarray | None = None,
) -> None:
    """Refuse ``data`` unless it is the index's items in the index's order (one-line error).

    ``meta`` is the index's metadata. For features files (and indexes that predate the data
    identity) only the count and, when both sides have them, the labels can be compared.
    """
    index_data = meta.get("data")
    hint = (
        "give features of the index's items, in the index's order"
        if data.get("source") == FEATURES
        else "omit --data and --split: index commands embed the index's own data by default"
    )
    held = f"the index at {index_dir} holds {describe(index_data)}"
    if data["count"] != meta["count"]:
        raise IndexError_(f"cannot {action}: {held}, but {describe(data)} has {data['count']} items; {hint}")
    if index_data is None or FEATURES in (data.get("source"), index_data.get("source")):
        index_labels = meta.get("labels")
        known = labels is not None and index_labels is not None
        if known and not np.array_equal(np.asarray(labels).reshape(-1), np.asarray(index_labels)):
            raise IndexError_(
                f"cannot {action}: {held}, and the given labels differ from its items' labels; {hint}"
            )
        return
    if data.get("fingerprint") != index_data.get("fingerprint"):
        raise IndexError_(f"cannot {action}: {held}, not {describe(data)}; {hint}")
