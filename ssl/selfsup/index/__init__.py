"""Backfill-free gallery index: faiss index + versioned metadata, atomic progressive upgrades.

See :mod:`selfsup.index.store` for the design; the public API is re-exported here.
"""

from __future__ import annotations

from .manifest import FORMAT_VERSION, ModelInfo
from .store import SearchResult, build, info, labels, query, upgrade

__all__ = ["FORMAT_VERSION", "ModelInfo", "SearchResult", "build", "info", "labels", "query", "upgrade"]
