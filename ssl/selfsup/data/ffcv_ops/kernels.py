"""Per-image numba kernels (HWC uint8, in place) reproducing torchvision v2's uint8 arithmetic.

The kernels reproduce torch's float32 arithmetic, including its fused multiply-adds, so every
adjustment matches torchvision bit for bit for the same parameters (the tests check it on fixed
inputs). They work without ffcv installed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

# torch computes ``r*0.2989 + g*0.587 + b*0.114`` as one float32 multiply then two fused
# multiply-adds; a float32 x float32 product is exact in float64, so adding in float64 and rounding
# once reproduces each FMA exactly (checked over all 2^24 RGB triples).
_CR = np.float32(0.2989)
_CG = np.float64(np.float32(0.587))
_CB = np.float64(np.float32(0.114))
_INV255 = np.float32(1.0 / 255.0)
_TO_U8 = np.float32(255.0 + 1.0 - 1e-3)  # torchvision's float -> uint8 scale (no rounding step)

_JIT = dict(cache=True, nogil=True)  # no fastmath: the float32 arithmetic must match torch's


# ---------------------------------------------------------------------------------------------
# Per-image kernels: img is an HWC uint8 array, modified in place.


@njit(**_JIT)
def _luma(r, g, b):
    """torchvision's float32 luma of one pixel (before any rounding)."""
    lum = np.float32(r) * _CR
    lum = np.float32(np.float64(lum) + _CG * np.float64(g))
    return np.float32(np.float64(lum) + _CB * np.float64(b))


@njit(**_JIT)
def _fma32(a, b, c):
    """float32 ``a + b * c`` rounded once (torch's ``add_(x, alpha=...)`` on CPU)."""
    return np.float32(np.float64(a) + np.float64(b) * np.float64(c))


@njit(**_JIT)
def _to_u8(v):
    """Clamp to [0, 255] and truncate, as ``tensor.clamp_(0, 255).to(torch.uint8)``."""
    if v <= 0:
        return np.uint8(0)
    if v >= 255:
        return np.uint8(255)
    return np.uint8(v)


@njit(**_JIT)
def gray_(img):
    """Grayscale in place: all three channels set to the truncated luma."""
    h, w = img.shape[0], img.shape[1]
    for y in range(h):
        for x in range(w):
            v = np.uint8(_luma(img[y, x, 0], img[y, x, 1], img[y, x, 2]))
            img[y, x, 0] = v
            img[y, x, 1] = v
            img[y, x, 2] = v


@njit(**_JIT)
def solarize_(img, threshold):
    """Invert every value >= threshold (per channel)."""
    flat = img.reshape(-1)
    for k in range(flat.shape[0]):
        if flat[k] >= threshold:
            flat[k] = 255 - flat[k]


@njit(**_JIT)
def brightness_(img, factor):
    """``adjust_brightness``: scale by ``factor``, clamp, truncate."""
    f = np.float32(factor)
    flat = img.reshape(-1)
    for k in range(flat.shape[0]):
        flat[k] = _to_u8(np.float32(flat[k]) * f)


@njit(**_JIT)
def contrast_(img, factor):
    """``adjust_contrast``: blend with the mean of the floored luma."""
    h, w = img.shape[0], img.shape[1]
    total = 0.0
    for y in range(h):
        for x in range(w):
            total += np.floor(_luma(img[y, x, 0], img[y, x, 1], img[y, x, 2]))
    mean = np.float32(total) / np.float32(h * w)
    f = np.float32(factor)
    alpha = np.float32(1.0 - factor)
    flat = img.reshape(-1)
    for k in range(flat.shape[0]):
        flat[k] = _to_u8(_fma32(np.float32(flat[k]) * f, alpha, mean))


@njit(**_JIT)
def saturation_(img, factor):
    """``adjust_saturation``: blend each pixel with its floored luma."""
    h, w = img.shape[0], img.shape[1]
    f = np.float32(factor)
    alpha = np.float32(1.0 - factor)
    for y in range(h):
        for x in range(w):
            g = np.float32(np.floor(_luma(img[y, x, 0], img[y, x, 1], img[y, x, 2])))
            for c in range(3):
                img[y, x, c] = _to_u8(_fma32(np.float32(img[y, x, c]) * f, alpha, g))


@njit(**_JIT)
def hue_(img, hue_factor):
    """``adjust_hue``: rotate the hue by ``hue_factor`` turns (float32 HSV round trip).

    The same float32 operations as torchvision's ``_rgb_to_hsv`` / ``_hsv_to_rgb``, minus work
    whose result is discarded there (the unused one of rc, gc, bc; masked-out terms).
    """
    hf = np.float32(hue_factor)
    sixth = np.float32(1.0 / 6.0)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    six = np.float32(6.0)
    h_, w_ = img.shape[0], img.shape[1]
    for y in range(h_):
        for x in range(w_):
            r = np.float32(img[y, x, 0]) * _INV255
            g = np.float32(img[y, x, 1]) * _INV255
            b = np.float32(img[y, x, 2]) * _INV255
            maxc = max(r, max(g, b))
            minc = min(r, min(g, b))
            cr = maxc - minc
            if cr == 0:
                s = zero
                hue = zero
            else:
                s = cr / maxc
                if maxc == r:
                    hue = (maxc - b) / cr - (maxc - g) / cr
                elif maxc == g:
                    hue = ((maxc - r) / cr + np.float32(2.0)) - (maxc - b) / cr
                else:
                    hue = ((maxc - g) / cr + np.float32(4.0)) - (maxc - r) / cr
            # (h / 6 + 1) fmod 1; the sum lies in [5/6, 2), so fmod is one exact subtraction
            hue = hue * sixth + one
            if hue >= one:
                hue = hue - one
            # h.add_(factor).remainder_(1.0): a - floor(a)
            hue = hue + hf
            hue = hue - np.float32(np.floor(hue))
            v = maxc
            h6 = hue * six
            i = np.float32(np.floor(h6))
            f = h6 - i
            sector = int(i)
            if sector >= 6:
                sector -= 6
            sxf = s * f
            oms = one - s
            q = min(max((one - sxf) * v, zero), one)
            t = min(max((sxf + oms) * v, zero), one)
            p = min(max(oms * v, zero), one)
            if sector == 0:
                ro, go, bo = v, t, p
            elif sector == 1:
                ro, go, bo = q, v, p
            elif sector == 2:
                ro, go, bo = p, v, t
            elif sector == 3:
                ro, go, bo = p, q, v
            elif sector == 4:
                ro, go, bo = t, p, v
            else:
                ro, go, bo = v, p, q
            img[y, x, 0] = np.uint8(ro * _TO_U8)
            img[y, x, 1] = np.uint8(go * _TO_U8)
            img[y, x, 2] = np.uint8(bo * _TO_U8)


@njit(**_JIT)
def gaussian_kernel1d(ksize, sigma):
    """torchvision's kernel: ``softmax(-(x / sigma)^2)`` on ``linspace(-lim, lim)``, lim = (k-1)/(2 sqrt 2)."""
    lim = (ksize - 1) / (2.0 * np.sqrt(2.0))
    out = np.empty(ksize, dtype=np.float32)
    total = 0.0
    for k in range(ksize):
        x = -lim + (2.0 * lim * k / (ksize - 1) if ksize > 1 else 0.0)
        out[k] = np.exp(-((x / sigma) ** 2))
        total += out[k]
    for k in range(ksize):
        out[k] = np.float32(out[k] / total)
    return out


@njit(**_JIT)
def _reflect(i, n):
    """torch's ``reflect`` padding index (edge not repeated)."""
    if n == 1:
        return 0
    while i < 0 or i >= n:
        if i < 0:
            i = -i
        if i >= n:
            i = 2 * (n - 1) - i
    return i


@njit(**_JIT)
def blur_(img, ksize, sigma):
    """Separable Gaussian blur with reflect padding, rounded half to even like ``torch.round``."""
    h, w = img.shape[0], img.shape[1]
    kern = gaussian_kernel1d(ksize, sigma)
    half = ksize // 2
    # Source index of every tap, reflect-padded, precomputed once per image side.
    xs = np.empty((w, ksize), dtype=np.int64)
    for x in range(w):
        for k in range(ksize):
            xs[x, k] = _reflect(x + k - half, w)
    ys = np.empty((h, ksize), dtype=np.int64)
    for y in range(h):
        for k in range(ksize):
            ys[y, k] = _reflect(y + k - half, h)
    tmp = np.empty((h, w, 3), dtype=np.float32)
    for y in range(h):  # horizontal pass
        for x in range(w):
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            for k in range(ksize):
                sx = xs[x, k]
                kk = kern[k]
                a0 += kk * np.float32(img[y, sx, 0])
                a1 += kk * np.float32(img[y, sx, 1])
                a2 += kk * np.float32(img[y, sx, 2])
            tmp[y, x, 0] = a0
            tmp[y, x, 1] = a1
            tmp[y, x, 2] = a2
    for y in range(h):  # vertical pass
        for x in range(w):
            for c in range(3):
                acc = np.float32(0.0)
                for k in range(ksize):
                    acc += kern[k] * tmp[ys[y, k], x, c]
                v = np.rint(acc)
                img[y, x, c] = np.uint8(min(max(v, 0.0), 255.0))


@njit(**_JIT)
def jitter_(img, b, c, s, h, order):
    """Apply brightness/contrast/saturation/hue (factor 1 or hue 0 = skip) in ``order`` (0..3)."""
    for k in range(4):
        op = order[k]
        if op == 0 and b != 1.0:
            brightness_(img, b)
        elif op == 1 and c != 1.0:
            contrast_(img, c)
        elif op == 2 and s != 1.0:
            saturation_(img, s)
        elif op == 3 and h != 0.0:
            hue_(img, h)


@njit(**_JIT)
def random_jitter_(img, p, b_lo, b_hi, c_lo, c_hi, s_lo, s_hi, h_lo, h_hi, use):
    """With probability p: draw factors and a random order as ``ColorJitter`` does, then apply.

    ``use[k]`` says whether adjustment k was configured (torchvision skips a zero jitter).
    """
    if np.random.random() >= p:
        return
    order = np.arange(4)
    for k in range(3, 0, -1):  # Fisher-Yates: randperm(4)
        j = np.random.randint(0, k + 1)
        tmp = order[k]
        order[k] = order[j]
        order[j] = tmp
    bf = np.random.uniform(b_lo, b_hi) if use[0] else 1.0
    cf = np.random.uniform(c_lo, c_hi) if use[1] else 1.0
    sf = np.random.uniform(s_lo, s_hi) if use[2] else 1.0
    hf = np.random.uniform(h_lo, h_hi) if use[3] else 0.0
    jitter_(img, bf, cf, sf, hf, order)


@njit(**_JIT)
def normalize_chw(img, lut, out):
    """uint8 HWC -> float32 CHW through a (256, 3) lookup table of normalised values."""
    h, w = img.shape[0], img.shape[1]
    for c in range(3):
        for y in range(h):
            for x in range(w):
                out[c, y, x] = lut[img[y, x, c], c]


def normalize_lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(256, 3) float32 table equal to torchvision's ``ToDtype(float32, scale=True)`` + ``Normalize``."""
    import torch
    from torchvision.transforms.v2 import functional as F

    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 256).expand(3, 1, 256)
    vals = F.normalize(F.to_dtype(levels, torch.float32, scale=True), list(mean), list(std))
    return np.ascontiguousarray(vals[:, 0, :].T.numpy().astype(np.float32))


def jitter_ranges(jitter: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """torchvision's factor ranges for ``ColorJitter(b, c, s, h)``."""
    b, c, s, h = (float(v) for v in jitter)
    if not 0 <= h <= 0.5:
        raise ValueError(f"hue jitter must be in [0, 0.5], got {h}")
    return ((max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-h, h))
