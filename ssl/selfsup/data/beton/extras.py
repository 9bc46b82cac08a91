"""Per-sample fields beside image, label and index (3DIEBench latents, object and view ids).

A source may offer them as ``latents(i)``, ``object_ids`` / ``view_ids`` arrays or ``locate(i)``;
they become FFCV fields of fixed shape and dtype so the FFCV loader can hand them to methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import DataError
from ..sources import Source


class ArrayValue:
    """Normalises an extra field's array value to the dtype and shape fixed by sample 0 (picklable)."""

    def __init__(self, name: str, dtype: np.dtype, shape: tuple) -> None:
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)

    def __call__(self, value: Any) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(value, dtype=self.dtype))
        if a.shape != self.shape:
            raise ValueError(
                f"extra field '{self.name}' has shape {a.shape}, expected {self.shape} (set by sample 0)"
            )
        return a


class IdLookup:
    """``fn(i) -> int(ids[i])`` for a source's ``object_ids`` / ``view_ids`` (picklable)."""

    def __init__(self, ids: Any) -> None:
        self.ids = np.asarray(ids)

    def __call__(self, i: int) -> int:
        return int(self.ids[i])


def extra_value_field(name: str, value: Any):
    """The FFCV field storing ``value`` (sample 0's), its sidecar description and a normaliser."""
    from ffcv.fields import FloatField, IntField, NDArrayField

    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return IntField(), {"type": "int"}, int
    if isinstance(value, (float, np.floating)):
        return FloatField(), {"type": "float"}, float
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.ndim == 0:
        raise DataError(
            f"extra field '{name}': expected a number or a numeric array, got {type(value).__name__}"
        )
    dtype = arr.dtype.newbyteorder("<")
    desc = {"type": "ndarray", "dtype": dtype.str, "shape": list(arr.shape)}
    return NDArrayField(dtype, arr.shape), desc, ArrayValue(name, dtype, arr.shape)


class Remapped:
    """``fn(indices[i])``: a base source's extra seen through a :class:`Subset` (picklable)."""

    def __init__(self, fn: Callable[[int], Any], indices: np.ndarray) -> None:
        self.fn, self.indices = fn, np.asarray(indices)

    def __call__(self, i: int) -> Any:
        return self.fn(int(self.indices[i]))


class LocatedExtra:
    """Extras of a 3DIEBench-style source that maps item -> (object, view) with ``locate(i)``."""

    def __init__(self, source: Any, what: str) -> None:
        self.source, self.what = source, what

    def __call__(self, i: int) -> Any:
        obj, view = self.source.locate(i)
        if self.what == "latent":
            return self.source.index.load_latent(obj, view)
        return int(obj if self.what == "object_id" else view)


def source_extras(source: Source) -> dict[str, Callable[[int], Any]]:
    """Optional per-sample extras a source exposes: ``latents(i)``, ``object_ids``, ``view_ids``.

    Looks through :class:`~selfsup.data.sources.Subset` wrappers (class filters, fractions), and
    understands the 3DIEBench reader's ``locate(i) -> (object, view)`` with ``index.load_latent``.
    """
    if hasattr(source, "base") and hasattr(source, "indices"):
        return {k: Remapped(fn, source.indices) for k, fn in source_extras(source.base).items()}
    extras: dict[str, Callable[[int], Any]] = {}
    if callable(getattr(source, "latents", None)):
        extras["latent"] = source.latents
    for attr, name in (("object_ids", "object_id"), ("view_ids", "view_id")):
        ids = getattr(source, attr, None)
        if ids is not None and not callable(ids):
            extras[name] = IdLookup(ids)
    locate, index = getattr(source, "locate", None), getattr(source, "index", None)
    if callable(locate) and callable(getattr(index, "load_latent", None)):
        if getattr(source, "view", None) == "random":
            raise DataError(
                "a 3DIEBench source with view='random' draws a new view at every access, so it cannot "
                "be frozen into a .beton; use view='all' (every view) or 'fixed'"
            )
        for name in ("latent", "object_id", "view_id"):
            extras.setdefault(name, LocatedExtra(source, name))
    return extras


def sample_path(source: Source, i: int) -> str | None:
    """The file behind sample ``i`` when the source knows it (image folders, subsets of them)."""
    base, idx = source, i
    while hasattr(base, "base") and hasattr(base, "indices"):  # Subset
        base, idx = base.base, int(base.indices[idx])
    path_of = getattr(base, "path_of", None)
    if callable(path_of):
        return str(path_of(idx))
    samples = getattr(base, "samples", None)
    if samples is not None:
        try:
            return str(samples[idx][0])
        except (IndexError, TypeError, KeyError):
            return None
    return None
