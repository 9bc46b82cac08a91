"""Atomic file writes: a crash mid-write never leaves a truncated file behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_metrics(path: str | os.PathLike, metrics: dict[str, float], merge: bool = True) -> dict:
    """Write a flat ``metrics.json`` (slash-separated keys), merging with an existing one."""
    path = Path(path)
    out: dict[str, Any] = {}
    if merge and path.exists():
        try:
            out = json.loads(path.read_text())
        except json.JSONDecodeError:
            out = {}
    out.update({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()})
    atomic_write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out
