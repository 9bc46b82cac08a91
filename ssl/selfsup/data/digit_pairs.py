"""Two-digit numbers composed from scikit-learn's handwritten digit scans: 100 classes, embedded.

Class ``c = 10 a + b`` is the number "ab": the 8x8 scan of a digit ``a`` to the left of a scan of
a digit ``b``, both at native resolution on a 16x16 black canvas (rows 4-11), upscaled bilinearly
when ``data.image_size`` is not 16. Training images draw both scans from the 1,347 training scans
of :class:`~selfsup.data.sources.DigitsSource`, test images from its 450 test scans, so no scan is
shared between the splits. The pairs are drawn once with a fixed seed per split:
``TRAIN_PER_CLASS`` images per class for training and ``TEST_PER_CLASS`` for testing; within a
test class every scan is different (see :func:`compose_pairs`).

Why it exists: the backward-compatibility papers train the old model on half of CIFAR-100's
classes and the new ones on all 100. Ten digit classes give five old and five new classes: too
few for class prototypes, and a retrieval test of 450 images whose top-1 differences drown in
their standard errors. The replication's old model takes the 49 numbers whose digits are both
0-6 (``recipes/compat/old.yaml``): it never sees a 7, 8 or 9, so each of the 51 new classes holds
something the old model has never seen, as CIFAR-100's new classes do for an old model trained on
the other half. (Taking numbers 00-49 instead would show the old model every digit in the right
position, and a convolutional network recognises it on the left as well.)
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .sources import DigitsSource, InMemorySource

TRAIN_PER_CLASS = 40
TEST_PER_CLASS = 20
CANVAS = 16


def compose_pairs(
    scans: np.ndarray, digit_labels: np.ndarray, per_class: int, seed: int, distinct: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``per_class`` (left, right) scan pairs for each number 00-99.

    ``scans [M, 8, 8]`` uint8 grey, ``digit_labels [M]`` in 0-9. Returns the 16x16 grey images
    ``[100 * per_class, 16, 16]`` uint8, their labels ``10 a + b`` and the scan indices ``[N, 2]``.
    With ``distinct`` no scan appears twice within a class (the test split): otherwise two images
    of a class may share a half pixel for pixel, and retrieval would reward any model for matching
    that duplicate half instead of recognising the number.
    """
    rng = np.random.default_rng(seed)
    by_digit = [np.flatnonzero(digit_labels == d) for d in range(10)]
    need = 2 * per_class if distinct else 1
    if any(len(ix) < need for ix in by_digit):
        raise DataError(
            f"the digit scans have fewer than {need} scans of some digit; cannot compose the pairs"
        )
    n = 100 * per_class
    images = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    labels = np.repeat(np.arange(100, dtype=np.int64), per_class)
    pairs = np.empty((n, 2), dtype=np.int64)
    if distinct:
        for c in range(100):
            a, b = divmod(c, 10)
            if a == b:  # one pool for both halves: 2 * per_class different scans
                drawn = rng.choice(by_digit[a], 2 * per_class, replace=False)
                left, right = drawn[:per_class], drawn[per_class:]
            else:
                left = rng.choice(by_digit[a], per_class, replace=False)
                right = rng.choice(by_digit[b], per_class, replace=False)
            pairs[c * per_class : (c + 1) * per_class] = np.stack([left, right], axis=1)
    else:
        for k, c in enumerate(labels):
            pairs[k] = (rng.choice(by_digit[c // 10]), rng.choice(by_digit[c % 10]))
    images[:, 4:12, 0:8] = scans[pairs[:, 0]]
    images[:, 4:12, 8:16] = scans[pairs[:, 1]]
    return images, labels, pairs


class DigitPairsSource(InMemorySource):
    """Two-digit numbers 00-99 from the digit scans (see the module docstring)."""

    name = "digitpairs"
    num_classes = 100

    def __init__(self, split: str = "train", image_size: int = CANVAS) -> None:
        digits = DigitsSource(split, image_size=8)  # 8 -> 8: the scans unchanged, as uint8
        scans = digits.images[..., 0]
        train = split == "train"
        grey, self._labels, self.pairs = compose_pairs(
            scans,
            digits.labels,
            TRAIN_PER_CLASS if train else TEST_PER_CLASS,
            seed=0 if train else 1,
            distinct=not train,
        )
        if image_size != CANVAS:
            grey = _resize(grey, image_size)
        self.images = np.repeat(grey[..., None], 3, axis=3)


def _resize(grey: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(grey).float()[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.clamp(0, 255).round().byte()[:, 0].numpy()
