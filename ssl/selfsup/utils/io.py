"""Atomic file writes: a crash mid-write never leaves a truncated file behind.

Every file selfsup writes goes through :func:`atomic_path`, which also gives it the permissions an
ordinary ``open()`` would (``0666`` minus the umask): ``mkstemp`` creates its file ``0600``, which
would hide results from teammates on a shared disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic read-by-setting, restored at once
    os.umask(mask)
    return mask


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
        # After writing: some writers replace the temporary file instead of writing into it.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder that exists or can be made: refuse it (one line) if it, or a folder
    above it, is a file. Checked before any work, so a bad ``--out`` never costs a run."""
    from ..errors import UserError

    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                which = "is a file" if p == path else f"is inside '{p}', which is a file"
                raise UserError(f"{what} '{path}' {which}; pass a folder")
            break
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_value(v: Any) -> Any:
    """Floats stay floats, counts stay integers (world size, batch), flags become 0.0/1.0."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int):
        return v
    if isinstance(v, (float, str)) or v is None:
        return v
    try:  # numpy and torch scalars
        return float(v)
    except (TypeError, ValueError):
        return v


def write_metrics(path: str | os.PathLike, metrics: dict[str, float], merge: bool = True) -> dict:
    """Write a flat ``metrics.json`` (slash-separated keys), merging with an existing one."""
    path = Path(path)
    out: dict[str, Any] = {}
    if merge and path.exists():
        try:
            out = json.loads(path.read_text())
        except json.JSONDecodeError:
            out = {}
    out.update({k: _json_value(v) for k, v in metrics.items()})
    atomic_write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out
