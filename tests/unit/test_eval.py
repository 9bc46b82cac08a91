"""kNN and linear probes against brute-force references."""

import numpy as np
import pytest

from selfsup.eval.knn import knn_classify
from selfsup.eval.linear import linear_probe


def knn_reference(xtr, ytr, xte, k, t, n_classes):
    xtr = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    xte = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    preds = []
    for q in xte:
        sims = xtr @ q
        nn = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(n_classes)
        for j in nn:
            votes[ytr[j]] += np.exp(sims[j] / t)
        preds.append(np.argmax(votes))
    return np.array(preds)


def test_knn_matches_bruteforce():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16))
    ytr, yte = rng.integers(0, 4, 200), rng.integers(0, 4, 60)
    xtr = centers[ytr] + 1.5 * rng.normal(size=(200, 16))
    xte = centers[yte] + 1.5 * rng.normal(size=(60, 16))
    out = knn_classify(xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, ks=(5, 50), temperature=0.1)
    for k in (5, 50):
        ref = knn_reference(xtr, ytr, xte, k, 0.1, 4)
        assert out[f"knn/k{k}/top1"] == pytest.approx(float((ref == yte).mean()), abs=1 / 60 + 1e-9)
    assert out["knn/top1"] == out["knn/k5/top1"]
    assert out["knn/top1"] > 0.5  # informative features beat chance (0.25)
    assert out["knn/top5"] == 1.0  # only 4 classes


def test_knn_chance_on_noise():
    rng = np.random.default_rng(1)
    out = knn_classify(
        rng.normal(size=(300, 8)).astype(np.float32),
        rng.integers(0, 10, 300),
        rng.normal(size=(300, 8)).astype(np.float32),
        rng.integers(0, 10, 300),
        ks=(20,),
    )
    assert out["knn/top1"] < 0.25


def test_linear_probe_learns_separable_and_not_noise():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(32, 5))
    xtr, xte = rng.normal(size=(500, 32)), rng.normal(size=(200, 32))
    ytr, yte = (xtr @ w).argmax(1), (xte @ w).argmax(1)
    good = linear_probe(xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, epochs=30, lr=0.1)
    assert good["linear/top1"] > 0.7 and good["linear/top5"] == 1.0
    noise = linear_probe(
        xtr.astype(np.float32),
        rng.integers(0, 5, 500),
        xte.astype(np.float32),
        rng.integers(0, 5, 200),
        epochs=30,
        lr=0.1,
    )
    assert noise["linear/top1"] < 0.35


def test_feature_cache_key_sees_the_data_content():
    """Data changed under the same spec (same size and labels, other pixels) is a cache miss."""
    import numpy as np

    from selfsup.data.sources import InMemorySource
    from selfsup.eval.features import content_fingerprint

    def source(images, labels):
        s = InMemorySource()
        s.images, s._labels = images, labels
        return s

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (40, 8, 8, 3), dtype=np.uint8), np.arange(40) % 4
    fp = content_fingerprint(source(images, labels))
    assert content_fingerprint(source(images.copy(), labels.copy())) == fp
    edited = images.copy()
    edited[39, 0, 0, 0] ^= 1  # the last item is always among the sampled ones
    assert content_fingerprint(source(edited, labels)) != fp
    assert content_fingerprint(source(images, (labels + 1) % 4)) != fp
