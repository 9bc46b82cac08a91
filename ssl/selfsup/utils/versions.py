"""Versions of selfsup and the libraries that change results, as recorded in every run."""

from __future__ import annotations

import functools
import importlib.metadata
import platform

# Distribution names; faiss ships as faiss-cpu or faiss-gpu.
_LIBRARIES = {
    "torch": ("torch",),
    "timm": ("timm",),
    "accelerate": ("accelerate",),
    "ffcv": ("ffcv",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss"),
    "numpy": ("numpy",),
}


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """``{"selfsup": "0.1.0", "python": ..., "torch": ..., ...}``; "not installed" where absent.

    Read from package metadata, so nothing heavy (ffcv, faiss) is imported.
    """
    from .. import __version__

    out = {"selfsup": __version__, "python": platform.python_version()}
    for name, dists in _LIBRARIES.items():
        version = "not installed"
        for dist in dists:
            try:
                version = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out[name] = version
    return out
