"""Retrieval metrics (CMC top-k, mAP over the full ranking) against an independent reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from selfsup.errors import DataError
from selfsup.eval.retrieval import retrieval_metrics


def _norm(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(q, yq, g=None, yg=None, exclude_self=True, topk=(1, 5)):
    """Dense numpy/sklearn reference: argsort for CMC, average_precision_score per query for AP."""
    g = q if g is None else g
    yg = yq if yg is None else yg
    d = min(q.shape[1], g.shape[1])
    sims = _norm(q[:, :d]) @ _norm(g[:, :d]).T
    hits = {k: [] for k in topk}
    aps = []
    skipped = 0
    for i in range(len(q)):
        keep = np.ones(len(g), bool)
        if exclude_self:
            keep[i] = False
        s, rel = sims[i, keep], yg[keep] == yq[i]
        if not rel.any():
            skipped += 1
            continue
        order = np.argsort(-s, kind="stable")
        for k in topk:
            hits[k].append(rel[order[:k]].any())
        aps.append(average_precision_score(rel, s))
    out = {f"retrieval/top{k}": float(np.mean(v)) for k, v in hits.items()}
    out["retrieval/map"] = float(np.mean(aps))
    out["retrieval/n_skipped"] = float(skipped)
    return out


def _data(n=240, d=16, c=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d))
    y = rng.integers(0, c, n)
    x = centers[y] + 1.5 * rng.normal(size=(n, d))
    return x.astype(np.float32), y


def _assert_match(got, ref):
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, abs=1e-6), key


def test_self_retrieval_matches_reference():
    x, y = _data()
    got = retrieval_metrics(x, y)
    ref = reference(x, y)
    _assert_match(got, ref)
    assert 0.0 < got["retrieval/map"] < 1.0
    assert got["retrieval/n_queries"] == len(x)


def test_chunking_does_not_change_results():
    x, y = _data(n=101)
    assert retrieval_metrics(x, y, chunk_size=7) == retrieval_metrics(x, y)


def test_own_item_excluded_also_across_models():
    x, y = _data()
    rng = np.random.default_rng(1)
    g = x + 0.01 * rng.normal(size=x.shape).astype(np.float32)  # another model, nearly identical
    # Without exclusion each query finds its own (slightly perturbed) item first.
    assert retrieval_metrics(x, y, g, exclude_self=False)["retrieval/top1"] == 1.0
    got = retrieval_metrics(x, y, g)
    assert got["retrieval/top1"] < 0.9
    _assert_match(got, reference(x, y, g))


def test_cross_dim_needs_explicit_slicing():
    x, y = _data(d=16)
    rng = np.random.default_rng(2)
    new = np.concatenate([x + 0.3 * rng.normal(size=x.shape), rng.normal(size=(len(x), 8))], 1)
    with pytest.raises(DataError, match="query dim 24 vs gallery dim 16 cannot be compared"):
        retrieval_metrics(new, y, x)
    got = retrieval_metrics(new, y, x, slice_dims=True)
    _assert_match(got, reference(new[:, :16], y, x))
    # Slicing then re-normalising: scaling the old sub-space of a query changes nothing.
    scaled = new.copy()
    scaled[:, 16:] *= 100.0
    assert retrieval_metrics(scaled, y, x, slice_dims=True) == got


def test_query_without_relevant_item_is_skipped_and_counted():
    x, y = _data(n=60)
    y = y.copy()
    y[5] = 99  # the only item of its class: nothing relevant once its own item is excluded
    got = retrieval_metrics(x, y)
    assert got["retrieval/n_skipped"] == 1.0
    assert got["retrieval/n_queries"] == 59.0
    _assert_match(got, reference(x, y))


def test_disjoint_query_and_gallery():
    x, y = _data(n=200)
    got = retrieval_metrics(x[:50], y[:50], x[50:], y[50:], exclude_self=False)
    _assert_match(got, reference(x[:50], y[:50], x[50:], y[50:], exclude_self=False))
    with pytest.raises(DataError, match="same items"):
        retrieval_metrics(x[:50], y[:50], x[50:], y[50:])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_reports_recall(kind):
    x, y = _data(n=1200, d=16, c=20)
    got = retrieval_metrics(
        x, y, index=kind, index_kwargs={"nlist": 30, "nprobe": 1, "hnsw_m": 4, "ef_search": 8}
    )
    r = got[f"retrieval/{kind}_recall@10"]
    assert 0.0 < r <= 1.0
    assert 0.0 <= got[f"retrieval/{kind}_top1"] <= 1.0
    # Exact protocol metrics are unaffected by the approximate index.
    exact = retrieval_metrics(x, y)
    for key, v in exact.items():
        assert got[key] == v


def test_exhaustive_ivf_equals_exact():
    x, y = _data(n=500)
    got = retrieval_metrics(x, y, index="ivf", index_kwargs={"nlist": 8, "nprobe": 8})
    assert got["retrieval/ivf_recall@10"] == pytest.approx(1.0)
    assert got["retrieval/ivf_top1"] == pytest.approx(got["retrieval/top1"])
    assert got["retrieval/ivf_top5"] == pytest.approx(got["retrieval/top5"])


def test_bad_inputs_raise_user_errors():
    x, y = _data(n=20)
    with pytest.raises(DataError, match="unknown index"):
        retrieval_metrics(x, y, index="lsh")
    with pytest.raises(DataError, match="labels"):
        retrieval_metrics(x, y[:10])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        retrieval_metrics(bad, y)


def test_bench_retrieval_small(tmp_path):
    from selfsup.cli import main

    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "retrieval",
            "--json",
            str(out),
            "--n-gallery",
            "2000",
            "--n-queries",
            "100",
            "--n-large",
            "5000",
            "--n-large-queries",
            "50",
            "--n-clusters",
            "20",
            "--hnsw-m",
            "8",
            "--no-progress",
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    for key in ("faiss_qps", "torch_qps", "exact_qps", "speedup", "ivf_qps", "hnsw_qps"):
        assert res[f"retrieval/{key}"] > 0
    for kind in ("ivf", "hnsw"):
        assert 0.0 < res[f"retrieval/{kind}_recall@10"] <= 1.0
    # Both exact searches find the same neighbours.
    assert res["retrieval/torch_faiss_agreement"] > 0.99
    assert res["retrieval/exact_faiss_agreement"] > 0.99  # the project's exact search too
