"""Image retrieval evaluation: CMC top-k and mAP with faiss exact search.

Protocol (method card ``/work/shared/reference/compat.md`` section 4, as in openBCT, BT-2 and OCA):

- query set = gallery = the whole test set; each query's own **item index** is excluded from its
  ranking, also when query and gallery features come from different models ("new/old" =
  new-model queries against an old-model gallery);
- features are compared by cosine similarity: ``IndexFlatIP`` on L2-normalised features;
- when the two dimensions differ, both sides are truncated to the smaller one and re-normalised
  (OCA's convention; BCT/BT²/OCA put the old-compatible sub-space first);
- **CMC top-k** = fraction of queries with a same-label item among the first k results;
- **mAP** = mean average precision over the **full** ranking of the gallery;
- a query with no relevant item in the gallery is skipped (and counted in ``<prefix>/n_skipped``).

Approximate indexes (IVF-Flat, HNSW) are optional: the protocol metrics always come from the
exact search, and the approximate index adds its own top-k and its recall@10 against exact search.

Exact search goes through :class:`selfsup.eval.search.FlatSearch` (faiss on the GPU when
``faiss-gpu`` is installed, else the faster of faiss and a torch matmul + top-k); IVF indexes
move to the GPU too when they can (:func:`selfsup.eval.search.to_gpu`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

INDEX_KINDS = ("flat", "ivf", "hnsw")
# Elements of the (chunk x gallery) result matrices held at once; bounds memory to ~100 MB.
DEFAULT_CHUNK_ELEMS = 1 << 22


def as_features(x: np.ndarray, name: str = "features") -> np.ndarray:
    """Validate a ``[N, D]`` feature matrix and return it as C-contiguous float32."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{name} must be a non-empty [N, D] array, got shape {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{name} must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{name} contain NaN or inf values; check the model and its inputs")
    return x


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of ``[N, D]`` features (all-zero rows stay zero); float32 copy."""
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def match_dims(
    query: np.ndarray, gallery: np.ndarray, slice_dims: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Bring ``[Nq, Dq]`` queries and ``[Ng, Dg]`` gallery to a common dimension.

    With ``slice_dims`` both sides are truncated to ``min(Dq, Dg)`` (the old, smaller model's
    dimension: compatible models put the old-compatible sub-space first, card section 4); callers
    re-normalise afterwards. Without it, differing dimensions raise :class:`DataError`.
    """
    dq, dg = query.shape[1], gallery.shape[1]
    if dq == dg:
        return query, gallery
    if not slice_dims:
        raise DataError(
            f"query dim {dq} vs gallery dim {dg} cannot be compared; allow slicing to the smaller "
            "(old-model) dimension (slice_dims=True / --slice-dims) if the new model is compatible"
        )
    d = min(dq, dg)
    return query[:, :d], gallery[:, :d]


def _check_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise DataError(f"{name} must have shape ({n},) to match the features, got {tuple(labels.shape)}")
    return labels


def _chunk_rows(n_gallery: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, DEFAULT_CHUNK_ELEMS // max(1, n_gallery))


def build_faiss_index(
    gallery: np.ndarray,
    index: str = "flat",
    *,
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int = 32,
    ef_construction: int = 40,
    ef_search: int = 64,
    train_points_per_list: int = 64,
    seed: int = 0,
):
    """An inner-product faiss index over ``[Ng, D]`` (already normalised) gallery features.

    ``flat`` = exact ``IndexFlatIP``; ``ivf`` = ``IndexIVFFlat`` with ``nlist`` inverted lists
    (default ``4·sqrt(Ng)``, at most ``Ng / 39``) probing ``nprobe`` of them (default
    ``min(nlist, 16)``), k-means trained on at most ``train_points_per_list · nlist`` points;
    ``hnsw`` = ``IndexHNSWFlat`` with ``hnsw_m`` links per node.
    """
    import faiss

    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    n, d = gallery.shape
    if index == "flat":
        idx = faiss.IndexFlatIP(d)
    elif index == "ivf":
        if nlist is None:
            nlist = int(round(4 * math.sqrt(n)))
        nlist = int(max(1, min(nlist, n // 39 if n >= 39 else 1)))
        quantizer = faiss.IndexFlatIP(d)
        idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        idx.cp.max_points_per_centroid = int(train_points_per_list)
        idx.cp.seed = int(seed)
        rng = np.random.default_rng(seed)
        n_train = min(n, int(train_points_per_list) * nlist)
        train = gallery if n_train == n else gallery[np.sort(rng.choice(n, n_train, replace=False))]
        idx.train(train)
        idx.nprobe = int(max(1, min(nlist, nprobe if nprobe is not None else 16)))
    elif index == "hnsw":
        idx = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = int(ef_construction)
        idx.hnsw.efSearch = int(ef_search)
    else:
        raise DataError(f"unknown index {index!r}; choose one of {', '.join(INDEX_KINDS)}")
    idx.add(gallery)
    return idx


@dataclass
class RankingStats:
    """Per-query results of a full-ranking retrieval evaluation.

    ``hits``: ``[Nq, len(topk)]`` bool, a relevant item among the first k; ``ap``: ``[Nq]``
    average precision over the full ranking; ``valid``: ``[Nq]`` bool, the query has at least one
    relevant gallery item (invalid queries have ``ap = nan`` and are skipped by the means).
    """

    topk: tuple[int, ...]
    hits: np.ndarray
    ap: np.ndarray
    valid: np.ndarray


def _drop_self(ids: np.ndarray, rows: np.ndarray, keep: int) -> np.ndarray:
    """Remove each row's own index from ``ids`` ([c, k]); keep the first ``keep`` remaining entries.

    Rows that do not contain their own index simply lose their last entry, so all rows keep
    ``keep`` columns (``keep <= k - 1``).
    """
    mask = ids != rows[:, None]
    # Guarantee exactly k-1 kept per row: where self is absent, drop the last column instead.
    no_self = mask.all(axis=1)
    mask[no_self, -1] = False
    return ids[mask].reshape(ids.shape[0], ids.shape[1] - 1)[:, :keep]


def ranking_stats(
    query: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    exclude_self: bool,
    topk: Sequence[int] = (1, 5),
    chunk_size: int | None = None,
    faiss_index=None,
    return_top: int = 0,
    backend: str = "auto",
) -> tuple[RankingStats, np.ndarray | None]:
    """Exact full ranking of ``[Ng, D]`` gallery for ``[Nq, D]`` normalised queries, in chunks.

    Searches with ``k = Ng`` (all items) for ``chunk_size`` queries at a time, through
    ``faiss_index`` when given, else a :class:`~selfsup.eval.search.FlatSearch` (``backend``);
    with ``exclude_self`` gallery item ``i`` is removed from query ``i``'s ranking (by index, not
    by distance; card section 4). Returns the per-query stats and, if ``return_top > 0``, the
    ``[Nq, return_top]`` gallery indices at the head of each ranking (self excluded).
    """
    from .search import FlatSearch

    nq, ng = query.shape[0], gallery.shape[0]
    topk = tuple(int(k) for k in topk)
    if faiss_index is None:
        faiss_index = FlatSearch(gallery, backend)
    m = ng - 1 if exclude_self else ng  # ranking length
    if m < 1:
        raise DataError("the gallery needs at least 2 items when each query's own item is excluded")
    hits = np.zeros((nq, len(topk)), dtype=bool)
    ap = np.full(nq, np.nan, dtype=np.float64)
    valid = np.zeros(nq, dtype=bool)
    top = np.empty((nq, min(return_top, m)), dtype=np.int64) if return_top > 0 else None
    ranks = np.arange(1, m + 1, dtype=np.float64)
    step = _chunk_rows(ng, chunk_size)
    for start in range(0, nq, step):
        stop = min(nq, start + step)
        _, ids = faiss_index.search(query[start:stop], ng)
        if exclude_self:
            ids = _drop_self(ids, np.arange(start, stop), m)
        if top is not None:
            top[start:stop] = ids[:, : top.shape[1]]
        rel = gallery_labels[ids] == query_labels[start:stop, None]  # [c, m]
        npos = rel.sum(axis=1)
        ok = npos > 0
        valid[start:stop] = ok
        for j, k in enumerate(topk):
            hits[start:stop, j] = rel[:, :k].any(axis=1)
        # AP over the full ranking = mean over relevant positions r of precision@r.
        prec = np.cumsum(rel, axis=1, dtype=np.float64) / ranks
        ap_chunk = np.where(rel, prec, 0.0).sum(axis=1)
        ap[start:stop] = np.where(ok, ap_chunk / np.maximum(npos, 1), np.nan)
    return RankingStats(topk=topk, hits=hits, ap=ap, valid=valid), top


def _approx_eval(
    q: np.ndarray,
    q_labels: np.ndarray,
    g: np.ndarray,
    g_labels: np.ndarray,
    exact_top: np.ndarray,
    valid: np.ndarray,
    *,
    index: str,
    exclude_self: bool,
    topk: tuple[int, ...],
    recall_k: int,
    chunk_size: int | None,
    index_kwargs: dict,
) -> dict[str, float]:
    """CMC top-k of an approximate index and its recall@``recall_k`` against the exact ranking."""
    from .search import to_gpu

    approx = to_gpu(build_faiss_index(g, index, **index_kwargs))
    nq, ng = q.shape[0], g.shape[0]
    m = ng - 1 if exclude_self else ng
    kmax = min(m, max(max(topk), recall_k))
    k_search = min(ng, kmax + (1 if exclude_self else 0))
    hits = np.zeros((nq, len(topk)), dtype=bool)
    rec = np.zeros(nq, dtype=np.float64)
    rk = exact_top.shape[1]
    step = max(1, DEFAULT_CHUNK_ELEMS // max(1, k_search))
    if chunk_size is not None:
        step = max(1, int(chunk_size))
    for start in range(0, nq, step):
        stop = min(nq, start + step)
        _, ids = approx.search(q[start:stop], k_search)
        if exclude_self:
            ids = _drop_self(ids, np.arange(start, stop), kmax)
        ids = ids[:, :kmax]
        found = ids >= 0  # IVF returns -1 where fewer than k items were visited
        rel = found & (g_labels[np.where(found, ids, 0)] == q_labels[start:stop, None])
        for j, k in enumerate(topk):
            hits[start:stop, j] = rel[:, :k].any(axis=1)
        head = ids[:, :rk]
        ex = exact_top[start:stop]
        rec[start:stop] = (head[:, :, None] == ex[:, None, :]).any(axis=2).sum(axis=1) / rk
    n_valid = int(valid.sum())
    out = {
        f"{index}_top{k}": float(hits[valid, j].mean()) if n_valid else float("nan")
        for j, k in enumerate(topk)
    }
    out[f"{index}_recall@{recall_k}"] = float(rec.mean())
    return out


def retrieval_metrics(
    query_feats: np.ndarray,
    query_labels: np.ndarray,
    gallery_feats: np.ndarray | None = None,
    gallery_labels: np.ndarray | None = None,
    *,
    exclude_self: bool = True,
    topk: Sequence[int] = (1, 5),
    index: str = "flat",
    slice_dims: bool = False,
    recall_k: int = 10,
    chunk_size: int | None = None,
    prefix: str = "retrieval",
    index_kwargs: dict | None = None,
    backend: str = "auto",
) -> dict[str, float]:
    """Retrieval metrics of ``[Nq, Dq]`` queries against a ``[Ng, Dg]`` gallery (card section 4).

    Without ``gallery_feats`` the gallery is the query set itself (query = gallery = test set).
    ``gallery_labels`` defaults to ``query_labels`` (same items embedded by another model). With
    ``exclude_self`` (default) query ``i`` never retrieves gallery item ``i``; this needs
    ``Nq == Ng`` (the same items, in the same order). Differing dimensions need
    ``slice_dims=True``: both are truncated to the smaller one and re-normalised.

    Returns fractions in [0, 1]: ``<prefix>/top{k}`` for each ``k`` in ``topk`` (CMC),
    ``<prefix>/map`` (mAP over the full ranking), and the counts ``<prefix>/n_queries`` (queries
    evaluated) and ``<prefix>/n_skipped`` (queries without any relevant gallery item). With
    ``index="ivf"`` or ``"hnsw"`` also ``<prefix>/<index>_top{k}`` and
    ``<prefix>/<index>_recall@{recall_k}`` (overlap of its top-``recall_k`` with exact search).
    ``backend`` picks the exact search (:data:`selfsup.eval.search.BACKENDS`; same neighbours).
    """
    if index not in INDEX_KINDS:
        raise DataError(f"unknown index {index!r}; choose one of {', '.join(INDEX_KINDS)}")
    topk = tuple(sorted({int(k) for k in topk}))
    if not topk or topk[0] < 1:
        raise DataError(f"topk must be positive integers, got {topk}")
    q = as_features(query_feats, "query features")
    q_labels = _check_labels(query_labels, q.shape[0], "query labels")
    if gallery_feats is None:
        g, g_labels = q, q_labels
    else:
        g = as_features(gallery_feats, "gallery features")
        g_labels = q_labels if gallery_labels is None else gallery_labels
        g_labels = _check_labels(g_labels, g.shape[0], "gallery labels")
    if exclude_self and q.shape[0] != g.shape[0]:
        raise DataError(
            f"excluding each query's own item needs the same items on both sides, got {q.shape[0]} "
            f"queries and {g.shape[0]} gallery items; pass exclude_self=False for disjoint sets"
        )
    q, g = match_dims(q, g, slice_dims)
    q = l2_normalize(q)
    g = q if g is q else l2_normalize(g)

    stats, exact_top = ranking_stats(
        q,
        q_labels,
        g,
        g_labels,
        exclude_self=exclude_self,
        topk=topk,
        chunk_size=chunk_size,
        return_top=recall_k if index != "flat" else 0,
        backend=backend,
    )
    n_valid = int(stats.valid.sum())
    out: dict[str, float] = {}
    for j, k in enumerate(topk):
        out[f"top{k}"] = float(stats.hits[stats.valid, j].mean()) if n_valid else float("nan")
    out["map"] = float(np.nanmean(stats.ap)) if n_valid else float("nan")
    out["n_queries"] = float(n_valid)
    out["n_skipped"] = float(q.shape[0] - n_valid)
    if index != "flat":
        out.update(
            _approx_eval(
                q,
                q_labels,
                g,
                g_labels,
                exact_top,
                stats.valid,
                index=index,
                exclude_self=exclude_self,
                topk=topk,
                recall_k=recall_k,
                chunk_size=chunk_size,
                index_kwargs=index_kwargs or {},
            )
        )
    return {f"{prefix}/{k}": v for k, v in out.items()}
