"""Backfill-free gallery index: build, query, progressive upgrade, info.

A gallery is embedded once by some model and indexed (faiss ``IndexFlatIP`` over L2-normalised
features, exact cosine search). When a new model is trained to be backward compatible with the
old one (BCT / BT² / OCA, see :mod:`selfsup.compat`), its queries can search
the old gallery directly, so the gallery need not be re-embedded ("backfilled") before the new
model is deployed. :func:`upgrade` then re-embeds a budgeted fraction of the gallery per call
(progressive backfill); the index stays queryable throughout, holding a mix of old- and
new-model items, and :func:`info` reports the fraction upgraded.

Layout of ``index_dir``::

    index.json            metadata: models, per-item model version, item ids, checksum of the index
    index-000007.faiss    the faiss index it names (one generation; the previous one is kept for
                          readers that opened the old metadata)
    .lock                 advisory lock held by build/upgrade

Every change writes a new generation file (atomic rename) and then the metadata (atomic rename,
the commit point), so a crash or a kill at any moment leaves the last committed index valid and
the next :func:`upgrade` continues from it; readers (:func:`query`, :func:`info`) always see a
consistent generation, also while an upgrade commits (:mod:`selfsup.index.generations`).

The metadata records which data the gallery items are (:mod:`selfsup.index.identity`); an
upgrade given the identity of the data it embeds refuses other data, so every slot keeps
describing its own item. Dimensions: the index keeps the dimension of the model
that built it; a compatible newer model with more dimensions is truncated to that sub-space and
re-normalised (BT² and OCA put the old-compatible sub-space first), a smaller one is refused.

At about 450 lines this module is longer than most: build, query, upgrade and info share the
compatibility check, the feature preparation and the commit sequence, which are one protocol and
read best in one place (the on-disk parts already live in ``generations``, ``manifest`` and
``identity``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, IndexError_, UserError
from ..eval.retrieval import as_features
from .generations import commit, next_generation, open_index, write_lock
from .identity import check_same_items
from .manifest import (
    FAISS_TYPE,
    FORMAT_VERSION,
    KIND,
    META_NAME,
    METRIC,
    NORMALIZATION,
    ModelInfo,
    normalize_item_ids,
    now,
    read_manifest,
    short,
)

EmbedFn = Callable[[list], np.ndarray]


@dataclass
class SearchResult:
    """Top-k search results for ``Q`` queries.

    ``scores``: ``[Q, k]`` float32 cosine similarities, best first; ``positions``: ``[Q, k]`` int64
    gallery positions; ``item_ids``: ``[Q, k]`` the corresponding item ids (int64 or str array);
    ``versions``: ``[Q, k]`` int64 model version that embedded each hit (index into ``models``).
    The rest describes the generation that was searched (an upgrade may commit meanwhile):
    ``labels`` ``[Q, k]`` the hits' labels (or None), ``fraction_upgraded``, ``generation``, ``data``.
    """

    scores: np.ndarray
    positions: np.ndarray
    item_ids: np.ndarray
    versions: np.ndarray
    labels: np.ndarray | None = None
    fraction_upgraded: float = 1.0
    generation: int = 0
    data: dict | None = None


# ----------------------------------------------------------------------------------------------
# helpers


def _features(x: Any, name: str) -> np.ndarray:
    return as_features(x, name)


def _prepare(feats: np.ndarray, index_dim: int, model: ModelInfo, slice_dims: bool, what: str) -> np.ndarray:
    """Check ``[N, D]`` features against the model and index; truncate and L2-normalise."""
    d = feats.shape[1]
    if model.dim is not None and d != model.dim:
        raise DataError(f"{what} have dim {d} but model {model.model_id!r} declares dim {model.dim}")
    if d != index_dim:
        if d < index_dim or not slice_dims:
            raise IndexError_(
                f"{what} dim {d} vs index dim {index_dim} cannot be compared; use a model with "
                f"{index_dim} dims (or a compatible model with more dims and slicing allowed)"
            )
        feats = feats[:, :index_dim]  # compatible sub-space first (BT², OCA)
    out = np.array(feats, dtype=np.float32, order="C", copy=True)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _models(meta: Mapping[str, Any]) -> list[ModelInfo]:
    return [ModelInfo.from_any(m) for m in meta["models"]]


def _check_compatible(model: ModelInfo, meta: Mapping[str, Any], index_dir: Path, action: str) -> None:
    """Refuse ``model`` unless it is, or declares compatibility with, every model in the index."""
    models = _models(meta)
    counts = np.bincount(np.asarray(meta["item_versions"], dtype=np.int64), minlength=len(models))
    for v, m in enumerate(models):
        if counts[v] and not model.accepts(m.fingerprint):
            raise IndexError_(
                f"cannot {action}: model {model.model_id!r} ({short(model.fingerprint)}) is not compatible "
                f"with the index at {index_dir}, whose {counts[v]} items were embedded by {m.model_id!r} "
                f"({short(m.fingerprint)}) and which it does not list in compatible_with; use a compatible "
                f"model or build a new index with `selfsup index build`"
            )


def _embed_batches(
    embed: EmbedFn, ids: Sequence[Any], batch_size: int, what: str
) -> Iterator[tuple[int, int, np.ndarray]]:
    for start in range(0, len(ids), batch_size):
        stop = min(len(ids), start + batch_size)
        feats = _features(embed(list(ids[start:stop])), what)
        if feats.shape[0] != stop - start:
            raise DataError(f"the embed function returned {feats.shape[0]} rows for {stop - start} items")
        yield start, stop, feats


def _lookup_embed(item_ids: Sequence[Any], feats: np.ndarray) -> EmbedFn:
    """An embed callable over precomputed ``[N, D]`` features of ``item_ids``."""
    feats = _features(feats, "features")
    ids = normalize_item_ids(item_ids)
    if len(ids) != feats.shape[0]:
        raise DataError(f"{len(ids)} item ids for {feats.shape[0]} feature rows")
    row = {x: i for i, x in enumerate(ids)}

    def embed(batch: list) -> np.ndarray:
        try:
            return feats[[row[x] for x in batch]]
        except KeyError as e:
            raise DataError(f"no features given for item {e.args[0]!r}") from e

    return embed


def _ids_array(ids: list) -> np.ndarray:
    return (
        np.asarray(ids, dtype=np.int64)
        if all(isinstance(x, int) for x in ids)
        else np.asarray(ids, dtype=str)
    )


# ----------------------------------------------------------------------------------------------
# public API


def build(
    index_dir: str | os.PathLike,
    feats: np.ndarray | EmbedFn,
    item_ids: Sequence[Any],
    model_info: ModelInfo | Mapping[str, Any],
    *,
    labels: Sequence[int] | None = None,
    batch_size: int = 4096,
    overwrite: bool = False,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed and index a gallery; returns :func:`info`.

    ``feats`` is either the ``[N, D]`` gallery features or a callable ``embed(item_ids) -> [n, D]``
    called on batches of ``batch_size`` ids (so a large gallery is never held twice in memory).
    ``item_ids`` (``N`` unique ints or strings) name the items; ``labels`` (``[N]`` ints, optional)
    let ``selfsup index query`` measure retrieval. ``model_info`` is the dict of
    ``load_encoder``: ``fingerprint``, ``model_id``, ``dim``, ``compatible_with``. ``data`` is the
    identity of the items (:mod:`selfsup.index.identity`), recorded so that upgrades and queries
    can refuse other data. An existing index is only replaced with ``overwrite=True``, atomically.
    """
    import faiss

    index_dir = Path(index_dir)
    model = ModelInfo.from_any(model_info)
    ids = normalize_item_ids(item_ids)
    if not ids:
        raise DataError("cannot build an index over an empty gallery")
    if labels is not None:
        labels = [int(x) for x in np.asarray(labels).reshape(-1)]
        if len(labels) != len(ids):
            raise DataError(f"{len(labels)} labels for {len(ids)} items")
    if data is not None and int(data.get("count", -1)) != len(ids):
        raise DataError(f"the data identity counts {data.get('count')} items but {len(ids)} are indexed")
    embed = feats if callable(feats) else _lookup_embed(ids, feats)
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexError_(f"--index '{index_dir}' is a file; pass a folder for the index")
    with write_lock(index_dir):
        old = None
        if (index_dir / META_NAME).exists():
            if not overwrite:
                raise IndexError_(
                    f"an index already exists at {index_dir}; pass --overwrite (overwrite=True) to replace it"
                )
            try:
                old = read_manifest(index_dir)
            except IndexError_:
                old = None  # replacing a corrupt index is allowed with overwrite
        index = None
        for _, _, batch in _embed_batches(embed, ids, max(1, int(batch_size)), "gallery features"):
            if index is None:
                dim = batch.shape[1]
                if model.dim is not None and dim != model.dim:
                    raise DataError(f"gallery features have dim {dim} but the model declares dim {model.dim}")
                index = faiss.IndexFlatIP(dim)
            index.add(_prepare(batch, index.d, model, False, "gallery features"))
        meta: dict[str, Any] = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "faiss_index_type": FAISS_TYPE,
            "dim": int(index.d),
            "normalization": NORMALIZATION,
            "metric": METRIC,
            "count": len(ids),
            "models": [{**model.to_dict(), "version": 0, "dim": int(index.d)}],
            "item_ids": ids,
            "item_versions": [0] * len(ids),
            "labels": labels,
            "data": dict(data) if data is not None else None,
            "created": now(),
            "generation": next_generation(index_dir, old) - 1,
        }
        if old is not None:
            meta["index_file"] = old["index_file"]  # kept until the new one is committed
        commit(index_dir, index, meta)
    return info(index_dir, verify=False)


def query(
    index_dir: str | os.PathLike,
    query_feats: np.ndarray,
    model_info: ModelInfo | Mapping[str, Any],
    k: int = 10,
    *,
    slice_dims: bool = True,
) -> SearchResult:
    """Search ``[Q, D]`` query features for their ``k`` nearest gallery items (cosine similarity).

    The query model must be the model of every item in the index or declare each of those models
    in ``compatible_with``; otherwise :class:`IndexError_`. Queries with more dimensions than the
    index are truncated to the index's (compatible) sub-space when ``slice_dims``; fewer
    dimensions are refused.
    """
    index_dir = Path(index_dir)
    model = ModelInfo.from_any(model_info)
    q = _features(query_feats, "query features")
    idx, meta = open_index(index_dir)
    _check_compatible(model, meta, index_dir, "query")
    q = _prepare(q, meta["dim"], model, slice_dims, "query features")
    k = int(k)
    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    k = min(k, meta["count"])
    import faiss

    from ..eval.search import FlatSearch

    # The stored CPU index's vectors, searched on the GPU when faiss-gpu is there (else the
    # faster CPU backend); same neighbours as idx.search.
    xb = faiss.rev_swig_ptr(idx.get_xb(), meta["count"] * idx.d).reshape(meta["count"], idx.d)
    scores, pos = FlatSearch(xb).search(q, k)
    ids = _ids_array(meta["item_ids"])
    versions = np.asarray(meta["item_versions"], dtype=np.int64)
    lab = meta.get("labels")
    latest = len(meta["models"]) - 1
    return SearchResult(
        scores=scores,
        positions=pos,
        item_ids=ids[pos],
        versions=versions[pos],
        labels=None if lab is None else np.asarray(lab, dtype=np.int64)[pos],
        fraction_upgraded=float((versions == latest).mean()),
        generation=int(meta["generation"]),
        data=meta.get("data"),
    )


def upgrade(
    index_dir: str | os.PathLike,
    new: EmbedFn | tuple[Sequence[Any], np.ndarray],
    model_info: ModelInfo | Mapping[str, Any],
    budget_fraction: float = 0.1,
    *,
    batch_size: int = 1024,
    commit_every: int | None = None,
    slice_dims: bool = True,
    progress: bool = False,
    data: Mapping[str, Any] | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Re-embed up to ``ceil(budget_fraction · N)`` gallery items with a newer compatible model.

    ``new`` is a callable ``embed(item_ids) -> [n, D]`` (called on batches of ``batch_size``
    ids) or a pair ``(item_ids, feats)`` of precomputed features for a subset (only those items
    are candidates). Items not yet embedded by this model are upgraded in gallery order. The model
    must declare compatibility with every model still in the index (so that it can query the mixed
    index). Changes are committed atomically every ``commit_every`` items (default: once, at the
    end of the call); a crash loses at most the uncommitted items and the next call continues.

    ``data`` (with ``labels`` for a features file) is the identity of the items ``new`` embeds
    (:mod:`selfsup.index.identity`): anything but the index's items in the index's order is
    refused before a single slot is written.

    Returns ``upgraded`` (items re-embedded by this call), ``fraction_upgraded`` (items now at this
    model / N), ``remaining`` and ``done``.
    """
    index_dir = Path(index_dir)
    model = ModelInfo.from_any(model_info)
    if not (0.0 < float(budget_fraction) <= 1.0):
        raise UserError(f"budget fraction must be in (0, 1], got {budget_fraction}")
    subset = None
    if callable(new):
        embed = new
    else:
        try:
            sub_ids, sub_feats = new
        except (TypeError, ValueError) as e:
            raise UserError("upgrade needs an embed callable or an (item_ids, feats) pair") from e
        embed = _lookup_embed(sub_ids, sub_feats)
        subset = normalize_item_ids(sub_ids)

    with write_lock(index_dir):
        idx, meta = open_index(index_dir)
        if data is not None:
            check_same_items(meta, data, index_dir, "upgrade", labels)
        _check_compatible(model, meta, index_dir, "upgrade")
        models = meta["models"]
        fps = [m["fingerprint"] for m in models]
        if model.fingerprint in fps:
            version = fps.index(model.fingerprint)
        else:
            version = len(models)
            models.append({**model.to_dict(), "version": version})
        ids = meta["item_ids"]
        versions = np.asarray(meta["item_versions"], dtype=np.int64)
        n = meta["count"]
        todo = np.flatnonzero(versions != version)
        if subset is not None:
            pos_of = {x: i for i, x in enumerate(ids)}
            missing = [x for x in subset if x not in pos_of]
            if missing:
                raise DataError(f"{len(missing)} item ids are not in the index, e.g. {missing[0]!r}")
            wanted = np.zeros(n, dtype=bool)
            wanted[[pos_of[x] for x in subset]] = True
            todo = todo[wanted[todo]]
        budget = min(len(todo), math.ceil(float(budget_fraction) * n))
        todo = todo[:budget]

        import faiss

        xb = faiss.rev_swig_ptr(idx.get_xb(), n * idx.d).reshape(n, idx.d)
        every = int(commit_every) if commit_every else max(1, budget)
        bar = None
        if progress and budget:
            from tqdm.auto import tqdm

            bar = tqdm(total=budget, desc="upgrade", unit="item")
        done_now = pending = 0
        try:
            todo_ids = [ids[p] for p in todo]
            for start, stop, batch in _embed_batches(
                embed, todo_ids, max(1, int(batch_size)), "new features"
            ):
                pos = todo[start:stop]
                xb[pos] = _prepare(batch, idx.d, model, slice_dims, "new features")
                versions[pos] = version
                done_now += stop - start
                pending += stop - start
                if bar is not None:
                    bar.update(stop - start)
                if pending >= every:
                    meta["item_versions"] = versions.tolist()
                    commit(index_dir, idx, meta)
                    pending = 0
            if pending:
                meta["item_versions"] = versions.tolist()
                commit(index_dir, idx, meta)
        finally:
            if bar is not None:
                bar.close()
    at_model = int((versions == version).sum())
    remaining = int(n - at_model)
    return {
        "upgraded": done_now,
        "model_version": version,
        "fraction_upgraded": at_model / n,
        "remaining": remaining,
        "done": remaining == 0,
    }


def info(index_dir: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Describe an index: count, dim, models with their item counts, fraction at the newest model.

    With ``verify`` the index file's SHA-256 is checked against the metadata (reads the file).
    """
    index_dir = Path(index_dir)
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexError_(f"'{index_dir}' is a file, not an index folder")
    meta = open_index(index_dir)[1] if verify else read_manifest(index_dir)
    versions = np.asarray(meta["item_versions"], dtype=np.int64)
    counts = np.bincount(versions, minlength=len(meta["models"]))
    n = meta["count"]
    models = [{**m, "items": int(c), "fraction": float(c) / n} for m, c in zip(meta["models"], counts)]
    latest = len(models) - 1
    return {
        "path": str(index_dir),
        "format_version": meta["format_version"],
        "count": n,
        "dim": meta["dim"],
        "normalization": meta["normalization"],
        "metric": meta["metric"],
        "faiss_index_type": meta["faiss_index_type"],
        "index_file": meta["index_file"],
        "index_sha256": meta["index_sha256"],
        "generation": meta["generation"],
        "models": models,
        "current_model": models[latest]["model_id"],
        "current_fingerprint": models[latest]["fingerprint"],
        "fraction_upgraded": float(counts[latest]) / n,
        "has_labels": meta.get("labels") is not None,
        "data": meta.get("data"),
        "created": meta.get("created"),
        "updated": meta.get("updated"),
        "verified": bool(verify),
    }


def labels(index_dir: str | os.PathLike) -> np.ndarray | None:
    """The ``[N]`` labels stored at build time, or None."""
    meta = read_manifest(Path(index_dir))
    lab = meta.get("labels")
    return None if lab is None else np.asarray(lab, dtype=np.int64)
