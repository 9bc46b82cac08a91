"""Weighted kNN classifier on faiss (InstDisc, Wu et al. CVPR 2018, Sec. 3.4).

Features are L2-normalised; the ``k`` nearest training samples by cosine similarity ``s_i`` vote
for their class with weight ``exp(s_i / T)`` (T = 0.07). Exact search through
:class:`selfsup.eval.search.FlatSearch` (GPU faiss when installed, else the faster exact backend).
"""

from __future__ import annotations

import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_classify(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    ks: list[int] | tuple[int, ...] = (20, 200),
    temperature: float = 0.07,
    backend: str = "auto",
) -> dict[str, float]:
    """Returns ``knn/k{k}/top1`` and ``knn/k{k}/top5`` per k, and ``knn/top1``, ``knn/top5`` for the first k.

    ``backend``: the exact search (:data:`selfsup.eval.search.BACKENDS`; same neighbours).
    """
    from .search import FlatSearch

    xtr, xte = _normalize(train_feats), _normalize(test_feats)
    kmax = min(max(ks), len(xtr))
    sims, nn = FlatSearch(xtr, backend).search(xte, kmax)
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    out: dict[str, float] = {}
    for j, k in enumerate(ks):
        kk = min(k, kmax)
        w = np.exp(sims[:, :kk] / temperature)
        votes = np.zeros((len(xte), n_classes))
        np.add.at(votes, (np.arange(len(xte))[:, None], train_labels[nn[:, :kk]]), w)
        ranked = np.argsort(-votes, axis=1, kind="stable")
        top1 = float((ranked[:, 0] == test_labels).mean())
        top5 = float((ranked[:, : min(5, n_classes)] == test_labels[:, None]).any(1).mean())
        out[f"knn/k{k}/top1"], out[f"knn/k{k}/top5"] = top1, top5
        if j == 0:
            out["knn/top1"], out["knn/top5"] = top1, top5
    return out
