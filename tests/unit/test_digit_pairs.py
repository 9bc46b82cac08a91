"""The digitpairs source: 100 two-digit classes built from the digit scans, splits kept apart."""

from __future__ import annotations

import numpy as np

from selfsup.config import DataConfig
from selfsup.data.catalog import build_source
from selfsup.data.digit_pairs import TEST_PER_CLASS, TRAIN_PER_CLASS, DigitPairsSource
from selfsup.data.sources import DigitsSource


def test_images_are_the_two_scans_side_by_side_and_labels_are_the_number():
    src = DigitPairsSource("test")
    scans = DigitsSource("test", image_size=8)
    assert len(src) == 100 * TEST_PER_CLASS and src.images.shape[1:] == (16, 16, 3)
    assert np.array_equal(np.bincount(src.labels), np.full(100, TEST_PER_CLASS))
    for k in (0, 777, len(src) - 1):
        left, right = src.pairs[k]
        img, label = src[k]
        assert label == 10 * scans.labels[left] + scans.labels[right]
        assert np.array_equal(img[4:12, :8, 0], scans.images[left][..., 0])
        assert np.array_equal(img[4:12, 8:, 0], scans.images[right][..., 0])
        assert img[:4].max() == 0 and img[12:].max() == 0


def test_splits_use_disjoint_scans_fixed_draws_and_resize():
    train, test = DigitPairsSource("train"), DigitPairsSource("test")
    assert len(train) == 100 * TRAIN_PER_CLASS
    # the pairs index each split's own scans: a training image never reuses a test scan
    assert train.pairs.max() < len(DigitsSource("train", 8)) and test.pairs.max() < len(
        DigitsSource("test", 8)
    )
    assert np.array_equal(DigitPairsSource("train").images, train.images)  # same draw every time
    # within a test class no scan repeats: no retrieval by a pixel-identical half
    for c in range(100):
        left, right = test.pairs[test.labels == c].T
        if c // 10 == c % 10:  # both halves come from the same digit's scans
            assert len(set(left) | set(right)) == 2 * TEST_PER_CLASS
        else:
            assert len(set(left)) == len(set(right)) == TEST_PER_CLASS
    cfg = DataConfig(
        source="digitpairs", image_size=32, classes=[10 * a + b for a in range(7) for b in range(7)]
    )
    sub = build_source(cfg, "train")
    assert len(sub) == 49 * TRAIN_PER_CLASS and sub[0][0].shape == (32, 32, 3)
    assert set(sub.labels // 10) == set(range(7)) and set(sub.labels % 10) == set(range(7))
