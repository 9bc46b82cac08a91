"""Seeded random draws for the decode-once pipeline: one small generator per view of each sample.

Every random choice for view ``v`` of the sample at training-set position ``i`` in epoch ``e`` comes
from a generator started at :func:`selfsup.data.augment.view_seed` ``(seed, e, i, v)`` (the
torchvision loader's key), so the augmentations depend neither on the thread that runs them nor
on what was drawn before: two runs with one seed give identical batches whatever the number of
threads, and a resumed run continues exactly.

The generator is splitmix64 (Steele, Lea and Flood, OOPSLA 2014): the state advances by a fixed
odd constant and each output is a bijective 64-bit mix of the state. It is tiny, has no warm-up
(one view draws about fifteen numbers) and passes BigCrush; its state is one ``uint64`` held in a
1-element array so numba kernels can advance it in place. Its streams are not torch's, so the
FFCV views are not bit-identical to the torchvision loader's, only equal in distribution.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53

# view_seed's constants (selfsup.data.augment), as uint64 for wrapping numpy arithmetic.
_VS_SEED = np.uint64(0x9E3779B97F4A7C15)
_VS_EPOCH = np.uint64(0xBF58476D1CE4E5B9)
_VS_INDEX = np.uint64(0x94D049BB133111EB)
_MASK63 = np.uint64((1 << 63) - 1)


def view_seeds(seed: int, epoch: int, positions: np.ndarray, n_views: int) -> np.ndarray:
    """``(B, n_views)`` uint64: ``view_seed(seed, epoch, positions[b], v)`` for every sample and view.

    The same splitmix-style mixing as :func:`selfsup.data.augment.view_seed`, vectorised (numpy
    ``uint64`` arithmetic wraps modulo 2**64, as the Python version's masking does).
    """
    m = 1 << 64
    pos = np.asarray(positions, dtype=np.int64).astype(np.uint64)
    base = np.array([seed % m], np.uint64) * _VS_SEED + np.array([epoch % m], np.uint64) * _VS_EPOCH
    x = base + pos[:, None] * _VS_INDEX + np.arange(n_views, dtype=np.uint64)[None, :]
    x ^= x >> np.uint64(31)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    return x & _MASK63


@njit(**_JIT)
def next_u64(st):
    """Advance the generator held in ``st[0]`` and return its next 64-bit output."""
    s = st[0] + _GOLDEN
    st[0] = s
    z = (s ^ (s >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(**_JIT)
def uniform(st, lo, hi):
    """A float64 uniform on ``[lo, hi)`` (53 random bits)."""
    return lo + (hi - lo) * (np.float64(next_u64(st) >> _S11) * _TO_UNIT)


@njit(**_JIT)
def randint(st, lo, hi):
    """An integer uniform on ``lo .. hi - 1`` (``hi > lo``; bias below 2**-40 for our ranges)."""
    return lo + np.int64(np.floor(uniform(st, 0.0, 1.0) * (hi - lo)))


@njit(**_JIT)
def randperm4(st, order):
    """Fill ``order`` (4 ints) with a uniform random permutation of 0..3 (Fisher-Yates)."""
    for k in range(4):
        order[k] = k
    for k in range(3, 0, -1):
        j = randint(st, 0, k + 1)
        tmp = order[k]
        order[k] = order[j]
        order[j] = tmp


@njit(**_JIT)
def resized_crop_box(st, height, width, scale_lo, scale_hi, ratio_lo, ratio_hi):
    """torchvision's ``RandomResizedCrop.get_params``: ``(top, left, h, w)`` of the crop.

    Up to ten tries of an area fraction ``U[scale]`` and a log-uniform aspect ratio; the first box
    that fits is placed uniformly at random. If none fits, the centred crop of the whole image
    with its aspect ratio clamped to the ratio range. ``round`` is half to even, as Python's.
    """
    area = height * width
    log_ratio_lo, log_ratio_hi = np.log(ratio_lo), np.log(ratio_hi)
    for _ in range(10):
        target = area * uniform(st, scale_lo, scale_hi)
        aspect = np.exp(uniform(st, log_ratio_lo, log_ratio_hi))
        w = np.int64(np.rint(np.sqrt(target * aspect)))
        h = np.int64(np.rint(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = randint(st, 0, height - h + 1)
            left = randint(st, 0, width - w + 1)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio_lo:
        w = np.int64(width)
        h = np.int64(np.rint(w / ratio_lo))
    elif in_ratio > ratio_hi:
        h = np.int64(height)
        w = np.int64(np.rint(h * ratio_hi))
    else:
        w = np.int64(width)
        h = np.int64(height)
    return (height - h) // 2, (width - w) // 2, h, w
