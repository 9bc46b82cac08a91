"""Exact inner-product search: faiss (GPU when there), or a blocked torch matmul + top-k.

Retrieval, kNN and the gallery index all need the ``k`` largest inner products of each query
against a gallery. Which backend is fastest depends on the machine:

- with CUDA and ``faiss-gpu`` (the ``gpu`` extra), a ``GpuIndexFlatIP`` copy of the gallery;
- with CUDA but no ``faiss-gpu``, torch on the GPU (``queries @ gallery.T`` and ``topk`` in blocks);
- on CPU, faiss's ``IndexFlatIP`` or the same torch blocks: on this project's 2-core machine torch's
  BLAS matmul was 1.6x faster than faiss at 100k x 128 (``selfsup bench retrieval``); elsewhere it
  can be the other way round, so ``backend="auto"`` times both once on the first queries of a
  search of that shape and keeps the faster (:func:`pick_cpu_backend`).

Every backend returns the same neighbours (scores up to float rounding; the order of exact ties
may differ); the tests check it. Scores are float32, ids int64, ``[Q, k]`` each, best first.
"""

from __future__ import annotations

import functools
import time

import numpy as np

BACKENDS = ("auto", "faiss", "torch")
# (dim, log2 gallery size, k > 64) -> "faiss" | "torch": measured once per process
_CPU_CHOICE: dict[tuple[int, int, bool], str] = {}


@functools.lru_cache(maxsize=1)
def faiss_gpu_available() -> bool:
    """True when faiss has GPU support and sees a GPU (``faiss-gpu`` from the ``gpu`` extra)."""
    try:
        import faiss
    except ImportError:
        return False
    if not hasattr(faiss, "StandardGpuResources"):
        return False  # faiss-cpu
    try:
        gpus = faiss.get_num_gpus()
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no GPU faiss"
        gpus = 0
    if gpus == 0:
        import sys

        print(
            "warning: faiss-gpu is installed but sees no GPU; exact search runs on the CPU", file=sys.stderr
        )
    return gpus > 0


@functools.lru_cache(maxsize=1)
def _gpu_resources():
    import faiss

    return faiss.StandardGpuResources()


def to_gpu(index, device: int = 0):
    """A GPU copy of a faiss index when ``faiss-gpu`` and a GPU are there, else ``index`` itself.

    Flat and IVF indexes move; HNSW has no GPU version and stays on the CPU.
    """
    if not faiss_gpu_available():
        return index
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        return index
    return faiss.index_cpu_to_gpu(_gpu_resources(), device, index)


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_search(
    gallery: np.ndarray, queries: np.ndarray, k: int, device: str | None = None, block: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by ``queries @ gallery.T`` and ``torch.topk``, ``block`` queries at a time.

    ``block`` defaults to what keeps one block's scores near 64 MB. With ``k`` equal to the
    gallery size the whole ranking is sorted (stable, so ties keep gallery order).
    """
    import torch

    device = device or _torch_device()
    n = gallery.shape[0]
    k = min(int(k), n)
    if block is None:
        block = max(1, min(4096, (1 << 24) // max(1, n)))
    sims = np.empty((queries.shape[0], k), np.float32)
    ids = np.empty((queries.shape[0], k), np.int64)
    with torch.inference_mode():
        g = torch.from_numpy(np.ascontiguousarray(gallery, np.float32)).to(device)
        for s in range(0, queries.shape[0], block):
            q = torch.from_numpy(np.ascontiguousarray(queries[s : s + block], np.float32)).to(device)
            scores = q @ g.T
            if k == n:
                top, idx = torch.sort(scores, dim=1, descending=True, stable=True)
            else:
                top, idx = torch.topk(scores, k, dim=1)
            sims[s : s + block] = top.cpu().numpy()
            ids[s : s + block] = idx.cpu().numpy()
    return sims, ids


def _faiss_flat(gallery: np.ndarray, gpu: bool):
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, np.float32))
    return to_gpu(index) if gpu else index


def pick_cpu_backend(gallery: np.ndarray, queries: np.ndarray, k: int, trial: int = 256) -> str:
    """``"faiss"`` or ``"torch"``: the faster on CPU for this gallery shape, timed once per process.

    Both run on the same ``trial`` queries (one untimed call each, then the best of three
    interleaved calls); the choice is cached by (dimension, gallery size to a power of two, k
    above 64).
    """
    n, d = gallery.shape
    key = (int(d), int(np.log2(max(1, n))), int(k) > 64)
    if key in _CPU_CHOICE:
        return _CPU_CHOICE[key]
    q = queries[:trial]
    index = _faiss_flat(gallery, gpu=False)
    times = {}
    runs = {
        "faiss": lambda: index.search(q, min(k, n)),
        "torch": lambda: torch_search(gallery, q, k, device="cpu"),
    }
    for fn in runs.values():
        fn()
    for _ in range(3):  # interleaved, best of three: robust to other load on the machine
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name] = min(times.get(name, float("inf")), time.perf_counter() - t0)
    _CPU_CHOICE[key] = min(times, key=times.get)
    return _CPU_CHOICE[key]


class FlatSearch:
    """Exact inner-product search over a fixed ``[N, D]`` float32 gallery.

    ``backend``: ``auto`` (GPU faiss, else torch on CUDA, else the faster of faiss and torch on
    CPU), ``faiss`` (GPU when there) or ``torch`` (CUDA when there). :attr:`backend` says what runs.
    """

    def __init__(self, gallery: np.ndarray, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.gallery = np.ascontiguousarray(gallery, np.float32)
        self.requested = backend
        self._faiss = None
        self.backend = self._resolve(backend)

    def _resolve(self, backend: str) -> str:
        if backend == "faiss":
            return "faiss-gpu" if faiss_gpu_available() else "faiss"
        if backend == "torch":
            return "torch-cuda" if _torch_device() == "cuda" else "torch"
        if faiss_gpu_available():
            return "faiss-gpu"
        if _torch_device() == "cuda":
            return "torch-cuda"
        return ""  # CPU: decided on the first search, which knows k and has queries to time

    @property
    def ntotal(self) -> int:
        return self.gallery.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, ``[Q, k]`` each, best first; ``k`` is capped at the gallery size."""
        queries = np.ascontiguousarray(queries, np.float32)
        k = min(int(k), self.ntotal)
        if not self.backend:
            self.backend = pick_cpu_backend(self.gallery, queries, k)
        if self.backend.startswith("faiss"):
            if self._faiss is None:
                self._faiss = _faiss_flat(self.gallery, gpu=self.backend == "faiss-gpu")
            return self._faiss.search(queries, k)
        return torch_search(
            self.gallery, queries, k, device="cuda" if self.backend == "torch-cuda" else "cpu"
        )
