"""Retrieval throughput benchmark: faiss exact search vs torch matmul + topk; IVF-Flat and HNSW.

Part 1: queries/s of exact inner-product search over an ``n_gallery x dim`` gallery (100k x 128 by
default) with faiss ``IndexFlatIP``, with a batched torch ``matmul`` + ``topk``, and with the
project's exact search (:class:`selfsup.eval.search.FlatSearch`, which retrieval, kNN and the
gallery index use: faiss on the GPU when there, else the faster of the two), same queries, same
k, same threads; each timed three times, interleaved, median kept. Part 2: at ``n_large`` vectors (1M by default), build IVF-Flat and HNSW
indexes and report their queries/s and recall@k against exact search (ground truth from
``IndexFlatIP``). Data is a Gaussian mixture of low intrinsic dimension on the unit sphere, so
that the cluster structure IVF relies on and the low-dimensional neighbourhoods HNSW relies on
exist, as in real embeddings (isotropic high-dimensional noise would make every neighbour
equidistant and tell nothing about either index). Speed is reported, never asserted (design.md, Testing).
"""

from __future__ import annotations

import gc
import math
import time

import numpy as np


def mixture(
    n: int,
    dim: int,
    n_clusters: int,
    noise: float,
    rng: np.random.Generator,
    basis: tuple[np.ndarray, np.ndarray] | None = None,
    intrinsic_dim: int = 16,
    ambient_noise: float = 0.02,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """``[n, dim]`` L2-normalised float32 samples of a Gaussian mixture with low intrinsic dimension.

    Like real embeddings, the data lives near a low-dimensional subspace: cluster centres
    (standard normal, ``[C, r]``) plus isotropic noise of std ``noise`` in an ``r = intrinsic_dim``
    latent space, mapped to ``dim`` dimensions by a random orthonormal ``[dim, r]`` basis, plus
    ambient noise of std ``ambient_noise``. Pass the returned ``(basis, centres)`` back to draw
    queries from the same distribution. Generated in blocks, float32 only.
    """
    if basis is None:
        r = min(intrinsic_dim, dim)
        w = np.linalg.qr(rng.standard_normal((dim, r)))[0].astype(np.float32)
        basis = (w, rng.standard_normal((n_clusters, r), dtype=np.float32))
    w, centers = basis
    out = np.empty((n, dim), dtype=np.float32)
    block = 1 << 16
    for s in range(0, n, block):
        e = min(n, s + block)
        z = rng.standard_normal((e - s, w.shape[1]), dtype=np.float32)
        z *= noise
        z += centers[rng.integers(0, centers.shape[0], e - s)]
        x = z @ w.T
        x += ambient_noise * rng.standard_normal((e - s, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:e] = x
    return out, basis


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of ``|found[q, :k] ∩ truth[q, :k]| / k`` for ``[Q, k]`` id arrays."""
    k = truth.shape[1]
    hit = (found[:, :k, None] == truth[:, None, :]).any(axis=2)
    return float(hit.sum(axis=1).mean() / k)


def torch_topk_search(gallery, queries, k: int, batch: int) -> np.ndarray:
    """Exact top-k by batched ``queries @ gallery.T`` and ``torch.topk``; ``[Q, k]`` int64 ids."""
    import torch

    ids = []
    with torch.inference_mode():
        for s in range(0, queries.shape[0], batch):
            sims = queries[s : s + batch] @ gallery.T
            ids.append(torch.topk(sims, k, dim=1).indices)
    return torch.cat(ids).numpy()


def bench_retrieval(
    n_gallery: int = 100_000,
    dim: int = 128,
    n_queries: int = 2_000,
    n_large: int = 1_000_000,
    n_large_queries: int = 1_000,
    k: int = 10,
    n_clusters: int = 1_000,
    noise: float = 0.5,
    intrinsic_dim: int = 16,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 12,
    ef_construction: int = 32,
    ef_search: int = 64,
    torch_batch: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Run the benchmark and return flat ``retrieval/*`` metrics (``bench`` JSON form).

    Keys: ``retrieval/faiss_qps``, ``retrieval/torch_qps``, ``retrieval/exact_qps`` (the project's
    exact search), ``retrieval/speedup`` (exact / torch), ``retrieval/faiss_vs_torch``,
    ``retrieval/ivf_recall@{k}``, ``retrieval/ivf_qps``, ``retrieval/hnsw_recall@{k}``,
    ``retrieval/hnsw_qps``, ``retrieval/exact_large_qps`` (flat search at ``n_large``), build
    times in seconds, the agreement of torch's and the exact search's top-k with faiss's
    (``retrieval/torch_faiss_agreement``, ``retrieval/exact_faiss_agreement``)
    and the sizes and index parameters used. ``nlist`` defaults to ``sqrt(n_large)`` rounded to a
    power of two; IVF k-means trains on ``64 · nlist`` points.
    """
    import faiss
    import torch

    from ..eval.retrieval import build_faiss_index

    stages = ["data", "faiss exact", "torch exact", "large data", "ground truth", "ivf", "hnsw"]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(stages), desc="bench retrieval", unit="stage")

    def stage(name: str) -> None:
        if bar is not None:
            bar.set_postfix_str(name)

    def done() -> None:
        if bar is not None:
            bar.update(1)

    rng = np.random.default_rng(seed)
    out: dict[str, float] = {
        "retrieval/n_gallery": float(n_gallery),
        "retrieval/dim": float(dim),
        "retrieval/n_queries": float(n_queries),
        "retrieval/n_large": float(n_large),
        "retrieval/n_large_queries": float(n_large_queries),
        "retrieval/k": float(k),
        "retrieval/threads": float(faiss.omp_get_max_threads()),
        "retrieval/torch_threads": float(torch.get_num_threads()),
    }
    try:
        # Part 1: exact search, faiss vs torch, on the same gallery and queries.
        stage("data")
        g, basis = mixture(n_gallery, dim, n_clusters, noise, rng, intrinsic_dim=intrinsic_dim)
        q, _ = mixture(n_queries, dim, n_clusters, noise, rng, basis)
        done()

        stage("faiss exact")
        from .search import FlatSearch

        fidx = faiss.IndexFlatIP(dim)
        fidx.add(g)
        tg, tq = torch.from_numpy(g), torch.from_numpy(q)
        exact = FlatSearch(g, "auto")
        runs = {
            "faiss": lambda: fidx.search(q, k)[1],
            "torch": lambda: torch_topk_search(tg, tq, k, torch_batch),
            "exact": lambda: exact.search(q, k)[1],
        }
        for fn in runs.values():  # warm-up (and the exact search's backend choice)
            fn()
        times: dict[str, list[float]] = {name: [] for name in runs}
        found = {}
        for _ in range(3):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                found[name] = fn()
                times[name].append(time.perf_counter() - t0)
        med = {name: sorted(t)[1] for name, t in times.items()}
        out["retrieval/faiss_qps"] = n_queries / med["faiss"]
        done()

        stage("torch exact")
        out["retrieval/torch_qps"] = n_queries / med["torch"]
        out["retrieval/exact_qps"] = n_queries / med["exact"]
        out["retrieval/faiss_vs_torch"] = out["retrieval/faiss_qps"] / out["retrieval/torch_qps"]
        # The project's exact search against the torch matmul baseline (>= 1 when it picks well).
        out["retrieval/speedup"] = out["retrieval/exact_qps"] / out["retrieval/torch_qps"]
        out["retrieval/exact_backend_is_torch"] = float(exact.backend.startswith("torch"))
        out["retrieval/exact_backend_is_gpu"] = float(exact.backend in ("faiss-gpu", "torch-cuda"))
        out["retrieval/torch_faiss_agreement"] = recall_at_k(found["torch"], found["faiss"])
        out["retrieval/exact_faiss_agreement"] = recall_at_k(found["exact"], found["faiss"])
        runs.clear()
        fidx = tg = tq = g = q = found = exact = None  # free before the 1M part
        gc.collect()
        done()

        # Part 2: approximate indexes at n_large.
        stage("large data")
        big, basis = mixture(n_large, dim, n_clusters, noise, rng, intrinsic_dim=intrinsic_dim)
        bq, _ = mixture(n_large_queries, dim, n_clusters, noise, rng, basis)
        done()

        stage("ground truth")
        flat = faiss.IndexFlatIP(dim)
        flat.add(big)
        t0 = time.perf_counter()
        _, truth = flat.search(bq, k)
        t_exact = time.perf_counter() - t0
        out["retrieval/exact_large_qps"] = n_large_queries / t_exact
        del flat
        gc.collect()
        done()

        stage("ivf")
        if nlist is None:
            nlist = 2 ** int(round(math.log2(max(1.0, math.sqrt(n_large)))))
        t0 = time.perf_counter()
        ivf = build_faiss_index(big, "ivf", nlist=nlist, nprobe=nprobe, seed=seed)
        t_build = time.perf_counter() - t0
        ivf.search(bq[:16], k)  # warm-up
        t0 = time.perf_counter()
        _, ivf_ids = ivf.search(bq, k)
        t_ivf = time.perf_counter() - t0
        out.update(
            {
                "retrieval/ivf_nlist": float(ivf.nlist),
                "retrieval/ivf_nprobe": float(ivf.nprobe),
                "retrieval/ivf_build_s": t_build,
                "retrieval/ivf_qps": n_large_queries / t_ivf,
                f"retrieval/ivf_recall@{k}": recall_at_k(ivf_ids, truth),
            }
        )
        del ivf
        gc.collect()
        done()

        stage("hnsw")
        t0 = time.perf_counter()
        hnsw = build_faiss_index(
            big, "hnsw", hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search
        )
        t_build = time.perf_counter() - t0
        hnsw.search(bq[:16], k)  # warm-up
        t0 = time.perf_counter()
        _, hnsw_ids = hnsw.search(bq, k)
        t_hnsw = time.perf_counter() - t0
        out.update(
            {
                "retrieval/hnsw_m": float(hnsw_m),
                "retrieval/hnsw_ef_construction": float(ef_construction),
                "retrieval/hnsw_ef_search": float(ef_search),
                "retrieval/hnsw_build_s": t_build,
                "retrieval/hnsw_qps": n_large_queries / t_hnsw,
                f"retrieval/hnsw_recall@{k}": recall_at_k(hnsw_ids, truth),
            }
        )
        del hnsw
        done()
    finally:
        if bar is not None:
            bar.close()
    return out
