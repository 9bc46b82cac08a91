"""Batch kernels: one call per batch, samples in parallel over numba's threads."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import blur_, gray_, normalize_chw, random_jitter_, solarize_

# ---------------------------------------------------------------------------------------------
# Batch kernels: one call per batch, samples in parallel (numba threads; FFCV sets their number
# in its loader thread). Random parameters are drawn per sample inside the loop.

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_PJIT)
def flip_batch(images, p):
    """In place: mirror each image left-right with probability p."""
    for i in prange(images.shape[0]):
        if np.random.random() < p:
            img = images[i]
            w = img.shape[1]
            for y in range(img.shape[0]):
                for x in range(w // 2):
                    for c in range(3):
                        t = img[y, x, c]
                        img[y, x, c] = img[y, w - 1 - x, c]
                        img[y, w - 1 - x, c] = t


@njit(**_PJIT)
def jitter_batch(images, p, b_lo, b_hi, c_lo, c_hi, s_lo, s_hi, h_lo, h_hi, use):
    for i in prange(images.shape[0]):
        random_jitter_(images[i], p, b_lo, b_hi, c_lo, c_hi, s_lo, s_hi, h_lo, h_hi, use)


@njit(**_PJIT)
def gray_batch(images, p):
    for i in prange(images.shape[0]):
        if np.random.random() < p:
            gray_(images[i])


@njit(**_PJIT)
def solarize_batch(images, p, threshold):
    for i in prange(images.shape[0]):
        if np.random.random() < p:
            solarize_(images[i], threshold)


@njit(**_PJIT)
def blur_batch(images, p, ksize, lo, hi):
    for i in prange(images.shape[0]):
        if np.random.random() < p:
            blur_(images[i], ksize, np.random.uniform(lo, hi))


@njit(**_PJIT)
def normalize_batch(images, lut, out):
    for i in prange(images.shape[0]):
        normalize_chw(images[i], lut, out[i])
