"""Index generations on disk: the writer lock, atomic commits, and checked reads.

Every change writes a new ``index-NNNNNN.faiss`` generation (atomic rename) and then the metadata
naming it (atomic rename, the commit point); the previous generation is kept, older ones and
stray temporaries (``.index-*.tmp``, ``.index.json.*.tmp`` of a killed writer) are deleted.

Readers never fail because of a writer. A generation file is never modified once renamed into
place, and a reader opens it right after reading the metadata: an open file stays readable after
a writer deletes it (POSIX), and if the writer deleted it first (it had committed twice since),
the reader reads the newer metadata and tries again. A reader therefore always gets a consistent
(metadata, generation) pair and reports corruption only for a generation that the current
metadata names and that is really missing or damaged.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import IndexError_
from ..utils.io import atomic_path
from .manifest import LOCK_NAME, META_NAME, REBUILD_HINT, file_sha256, now, read_manifest, write_manifest

GEN_RE = re.compile(r"^index-(\d+)\.faiss$")


@contextmanager
def write_lock(index_dir: Path) -> Iterator[None]:
    """Exclusive advisory lock for writers; released by the OS if the process dies."""
    index_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no locking
        yield
        return
    fd = os.open(index_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise IndexError_(
                f"another build or upgrade is writing the index at {index_dir}; wait for it to finish"
            ) from e
        remove_stale_temporaries(index_dir)  # left by a killed writer; no writer runs now
        yield
    finally:
        os.close(fd)


def next_generation(index_dir: Path, meta: Mapping[str, Any] | None) -> int:
    gens = [int(m.group(1)) for p in index_dir.iterdir() if (m := GEN_RE.match(p.name))]
    if meta is not None:
        gens.append(int(meta["generation"]))
    return max(gens, default=0) + 1


def _is_temporary(name: str) -> bool:
    return name.startswith((".index-", f".{META_NAME}.")) and name.endswith(".tmp")


def remove_stale_temporaries(index_dir: Path) -> None:
    """Delete temporaries of writers that died; call only while holding the writer lock."""
    for p in index_dir.iterdir():
        if _is_temporary(p.name):
            with contextlib.suppress(OSError):  # best effort
                p.unlink()


def cleanup(index_dir: Path, keep: set[str]) -> None:
    """Delete index generations other than ``keep`` and temporaries left by killed writers."""
    for p in index_dir.iterdir():
        if (GEN_RE.match(p.name) and p.name not in keep) or _is_temporary(p.name):
            with contextlib.suppress(OSError):  # best effort
                p.unlink()


def commit(index_dir: Path, faiss_index: Any, meta: dict[str, Any]) -> None:
    """Write ``faiss_index`` as a new generation, then the metadata naming it (commit point)."""
    import faiss

    previous = meta.get("index_file")
    gen = next_generation(index_dir, meta if "generation" in meta else None)
    name = f"index-{gen:06d}.faiss"
    with atomic_path(index_dir / name) as tmp:
        faiss.write_index(faiss_index, str(tmp))
        digest = file_sha256(tmp)
    meta.update(index_file=name, index_sha256=digest, generation=gen, updated=now())
    write_manifest(index_dir, meta)
    cleanup(index_dir, keep={name} | ({previous} if previous else set()))


class _Vanished(Exception):
    """The generation named by the metadata we read is gone: a writer has moved on since."""


def _fd_path(fd: int, fallback: Path) -> str:
    """A path that reads the open file ``fd`` even after it was deleted (Linux: /proc)."""
    proc = f"/proc/self/fd/{fd}"
    return proc if os.path.exists(proc) else str(fallback)


def _load_open(index_dir: Path, meta: Mapping[str, Any]) -> Any:
    import faiss

    path = index_dir / meta["index_file"]
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise _Vanished() from None
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            h = file_sha256_stream(f)
        if h != meta["index_sha256"]:
            raise IndexError_(
                f"index file {path} is corrupt (checksum mismatch with {META_NAME}); {REBUILD_HINT}"
            )
        try:
            idx = faiss.read_index(_fd_path(fd, path))
        except RuntimeError as e:
            raise IndexError_(f"index file {path} cannot be read by faiss; {REBUILD_HINT}") from e
    finally:
        os.close(fd)
    if not isinstance(idx, faiss.IndexFlat) or idx.ntotal != meta["count"] or idx.d != meta["dim"]:
        raise IndexError_(
            f"index file {path} does not match {META_NAME} (type, count or dim); {REBUILD_HINT}"
        )
    return idx


def file_sha256_stream(f, block: int = 1 << 22) -> str:
    import hashlib

    h = hashlib.sha256()
    while chunk := f.read(block):
        h.update(chunk)
    return h.hexdigest()


def load_generation(index_dir: Path, meta: Mapping[str, Any]) -> Any:
    """Read the faiss index named by ``meta`` after checking its SHA-256, count and dimension."""
    try:
        return _load_open(index_dir, meta)
    except _Vanished:
        raise IndexError_(
            f"index file {index_dir / meta['index_file']} named by {META_NAME} is missing; {REBUILD_HINT}"
        ) from None


def open_index(index_dir: Path, timeout_s: float = 120.0) -> tuple[Any, dict[str, Any]]:
    """A consistent (index, metadata) pair, whatever a concurrent writer does (module docstring)."""
    deadline = time.monotonic() + timeout_s
    while True:
        meta = read_manifest(index_dir)
        try:
            return _load_open(index_dir, meta), meta
        except _Vanished:
            newer = read_manifest(index_dir)
            if newer["generation"] == meta["generation"]:  # not a writer: the file is really gone
                return load_generation(index_dir, newer), newer
            if time.monotonic() > deadline:  # pragma: no cover - a writer committing non-stop
                raise IndexError_(
                    f"the index at {index_dir} changed faster than it could be read for {timeout_s:.0f} s; "
                    "try again when the upgrade has finished"
                ) from None
