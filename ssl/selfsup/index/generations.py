"""Index generations on disk: the writer lock, atomic commits, and checked reads.

Every change writes a new ``index-NNNNNN.faiss`` generation (atomic rename) and then the metadata
naming it (atomic rename, the commit point); the previous generation is kept for readers that
opened the old metadata, older ones and stray temporaries are deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
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
        yield
    finally:
        os.close(fd)


def next_generation(index_dir: Path, meta: Mapping[str, Any] | None) -> int:
    gens = [int(m.group(1)) for p in index_dir.iterdir() if (m := GEN_RE.match(p.name))]
    if meta is not None:
        gens.append(int(meta["generation"]))
    return max(gens, default=0) + 1


def cleanup(index_dir: Path, keep: set[str]) -> None:
    """Delete index generations other than ``keep`` and temporaries left by killed writers."""
    for p in index_dir.iterdir():
        stale_tmp = p.name.startswith(".index-") and p.name.endswith(".tmp")
        if (GEN_RE.match(p.name) and p.name not in keep) or stale_tmp:
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


def load_generation(index_dir: Path, meta: Mapping[str, Any]) -> Any:
    """Read the faiss index named by ``meta`` after checking its SHA-256, count and dimension."""
    import faiss

    path = index_dir / meta["index_file"]
    if not path.exists():
        raise IndexError_(f"index file {path} named by {META_NAME} is missing; {REBUILD_HINT}")
    if file_sha256(path) != meta["index_sha256"]:
        raise IndexError_(
            f"index file {path} is corrupt (checksum mismatch with {META_NAME}); {REBUILD_HINT}"
        )
    try:
        idx = faiss.read_index(str(path))
    except RuntimeError as e:
        raise IndexError_(f"index file {path} cannot be read by faiss; {REBUILD_HINT}") from e
    if not isinstance(idx, faiss.IndexFlat) or idx.ntotal != meta["count"] or idx.d != meta["dim"]:
        raise IndexError_(
            f"index file {path} does not match {META_NAME} (type, count or dim); {REBUILD_HINT}"
        )
    return idx


def open_index(index_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Metadata and index, retrying if a concurrent writer swapped generations in between."""
    for attempt in range(3):
        meta = read_manifest(index_dir)
        try:
            return load_generation(index_dir, meta), meta
        except IndexError_:
            if attempt == 2 or read_manifest(index_dir)["generation"] == meta["generation"]:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
