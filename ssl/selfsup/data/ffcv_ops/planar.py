"""Planar (CHW uint8) versions of the per-image kernels, written so that LLVM vectorises them.

Same arithmetic as :mod:`.kernels` (which reproduce torchvision v2 on uint8), value for value, so
every op gives bit-identical results to its HWC twin for the same parameters (the tests check it);
only the memory layout and the loop shapes differ. Why a second set: at 224 px the HWC kernels
spend their time on stride-3 pixel access and per-pixel branches (the hue conversion alone took
~1 ms per view, the 23-tap blur ~6 ms); on planes each op is a handful of branch-free loops over
contiguous rows that run 16 lanes wide.

Images are ``(3, n)`` views of one view's planes (``n = H*W``; pointwise ops) or ``(3, H, W)``
(blur). Scratch buffers are passed in so that a thread reuses one set for all its images.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# No fastmath: float ops must round as torch's do. error_model="numpy": no zero-division checks,
# whose branches stop LLVM from vectorising a loop.
_JIT = dict(cache=True, nogil=True, error_model="numpy")

_CR = np.float32(0.2989)
_CG = np.float64(np.float32(0.587))
_CB = np.float64(np.float32(0.114))
_INV255 = np.float32(1.0 / 255.0)
_TO_U8 = np.float32(255.0 + 1.0 - 1e-3)
_F0 = np.float32(0.0)
_F255 = np.float32(255.0)


@njit(**_JIT)
def luma_int_(planes, out):
    """``out[k]`` = the truncated luma of pixel k (torchvision's float32 luma, as :func:`.kernels._luma`)."""
    r, g, b = planes[0], planes[1], planes[2]
    for k in range(out.shape[0]):
        lum = np.float32(r[k]) * _CR
        lum = np.float32(np.float64(lum) + _CG * np.float64(g[k]))
        lum = np.float32(np.float64(lum) + _CB * np.float64(b[k]))
        out[k] = np.int32(lum)


@njit(**_JIT)
def gray_(planes, tmp):
    """Grayscale in place: all three planes set to the truncated luma."""
    luma_int_(planes, tmp)
    for c in range(3):
        p = planes[c]
        for k in range(p.shape[0]):
            p[k] = np.uint8(tmp[k])


@njit(**_JIT)
def brightness_(planes, factor):
    f = np.float32(factor)
    for c in range(3):
        p = planes[c]
        for k in range(p.shape[0]):
            v = np.float32(p[k]) * f
            p[k] = np.uint8(min(max(v, _F0), _F255))


@njit(**_JIT)
def contrast_(planes, factor, tmp):
    """Blend with the mean of the floored luma (an exact integer sum, then float32 as torch)."""
    luma_int_(planes, tmp)
    n = tmp.shape[0]
    total = 0
    for k in range(n):
        total += tmp[k]
    mean = np.float64(np.float32(total) / np.float32(n))
    f = np.float32(factor)
    alpha = np.float64(np.float32(1.0 - factor))
    for c in range(3):
        p = planes[c]
        for k in range(n):
            v = np.float32(np.float64(np.float32(p[k]) * f) + alpha * mean)
            p[k] = np.uint8(min(max(v, _F0), _F255))


@njit(**_JIT)
def saturation_(planes, factor, tmp):
    """Blend each pixel with its floored luma."""
    luma_int_(planes, tmp)
    f = np.float32(factor)
    alpha = np.float64(np.float32(1.0 - factor))
    for c in range(3):
        p = planes[c]
        for k in range(p.shape[0]):
            v = np.float32(np.float64(np.float32(p[k]) * f) + alpha * np.float64(np.float32(tmp[k])))
            p[k] = np.uint8(min(max(v, _F0), _F255))


@njit(**_JIT)
def hue_(planes, hue_factor):
    """Rotate the hue by ``hue_factor`` turns: :func:`.kernels.hue_` with selects for branches.

    Each candidate value is computed with the same float32 operations in the same order as
    there (and as torchvision's ``_rgb_to_hsv``/``_hsv_to_rgb``), then the right one is
    selected, so the results are the same bits; a zero chroma gets a dummy divisor.
    """
    hf = np.float32(hue_factor)
    sixth = np.float32(1.0 / 6.0)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    six = np.float32(6.0)
    two = np.float32(2.0)
    four = np.float32(4.0)
    pr, pg, pb = planes[0], planes[1], planes[2]
    for k in range(pr.shape[0]):
        r = np.float32(pr[k]) * _INV255
        g = np.float32(pg[k]) * _INV255
        b = np.float32(pb[k]) * _INV255
        maxc = max(r, max(g, b))
        minc = min(r, min(g, b))
        cr = maxc - minc
        flat = cr == zero
        crd = one if flat else cr
        mxd = one if flat else maxc
        rc = (maxc - r) / crd
        gc = (maxc - g) / crd
        bc = (maxc - b) / crd
        h_r = bc - gc
        h_g = (rc + two) - bc
        h_b = (gc + four) - rc
        hue = h_r if maxc == r else (h_g if maxc == g else h_b)
        s = zero if flat else cr / mxd
        hue = zero if flat else hue
        hue = hue * sixth + one
        hue = hue - one if hue >= one else hue
        hue = hue + hf
        hue = hue - np.float32(np.floor(hue))
        h6 = hue * six
        i = np.float32(np.floor(h6))
        fr = h6 - i
        sector = np.int32(i)
        sector = sector - 6 if sector >= 6 else sector
        sxf = s * fr
        oms = one - s
        q = min(max((one - sxf) * maxc, zero), one)
        t = min(max((sxf + oms) * maxc, zero), one)
        p = min(max(oms * maxc, zero), one)
        # sector -> (r, g, b): 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q)
        ro = maxc if (sector == 0 or sector == 5) else (q if sector == 1 else (p if sector <= 3 else t))
        go = t if sector == 0 else (maxc if sector <= 2 else (q if sector == 3 else p))
        bo = p if sector <= 1 else (t if sector == 2 else (maxc if sector <= 4 else q))
        pr[k] = np.uint8(ro * _TO_U8)
        pg[k] = np.uint8(go * _TO_U8)
        pb[k] = np.uint8(bo * _TO_U8)


@njit(**_JIT)
def solarize_(planes, threshold):
    t = np.uint8(threshold)
    for c in range(3):
        p = planes[c]
        for k in range(p.shape[0]):
            v = p[k]
            p[k] = np.uint8(255) - v if v >= t else v


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
def blur_taps(kern):
    """``(first, stop)``: the taps of ``kern`` that can change a uint8 result.

    Leaves out, from both ends, taps whose weight times 255 is below 2**-20 (a sixteenth of the
    float32 spacing at 255): with sigma in [0.1, 2] a 224 px view's 23-tap kernel keeps all 23
    taps at sigma 2, 13 at sigma 1 and 3 at sigma 0.1.
    """
    ks = kern.shape[0]
    limit = np.float32(2.0**-20 / 255.0)
    first = 0
    while first < ks // 2 and kern[first] < limit:
        first += 1
    return first, ks - first


@njit(**_JIT)
def _add_taps_(dst, d0, src, o0, o1, o2, o3, k0, k1, k2, k3, n):
    """``dst[d0:d0+n] += (k0 src[o0:] + k1 src[o1:]) + (k2 src[o2:] + k3 src[o3:])``, four taps a pass.

    Offsets, not slices: a numba slice inside a per-row loop costs two atomic reference-count
    updates, which took more time than the arithmetic. Unsigned: with signed indices numba adds
    negative-index wraparound, which stops LLVM from vectorising (measured 18x slower).
    """
    d0, o0, o1, o2, o3 = np.uint64(d0), np.uint64(o0), np.uint64(o1), np.uint64(o2), np.uint64(o3)
    for x in range(np.uint64(n)):
        dst[d0 + x] += (k0 * src[o0 + x] + k1 * src[o1 + x]) + (k2 * src[o2 + x] + k3 * src[o3 + x])


@njit(**_JIT)
def _set_taps_(dst, d0, src, o0, o1, o2, o3, k0, k1, k2, k3, n):
    """``dst[d0:d0+n] = (k0 src[o0:] + ...)``: the first group of taps (same bits as 0 + group)."""
    d0, o0, o1, o2, o3 = np.uint64(d0), np.uint64(o0), np.uint64(o1), np.uint64(o2), np.uint64(o3)
    for x in range(np.uint64(n)):
        dst[d0 + x] = (k0 * src[o0 + x] + k1 * src[o1 + x]) + (k2 * src[o2 + x] + k3 * src[o3 + x])


@njit(**_JIT)
def blur_(img, kern, first, stop, row, tmp):
    """Separable Gaussian blur of ``(3, H, W)`` uint8 in place, reflect padding, round half to even.

    ``kern``: the float32 taps (:func:`.kernels.gaussian_kernel1d`), of which ``first:stop`` are
    used (:func:`blur_taps`); ``row``: float32 scratch of at least ``max(H, W) + len(kern) + 4``;
    ``tmp``: float32 scratch of at least ``H*W``. The loops run over whole rows, four taps at a
    time; the sums are grouped differently from :func:`.kernels.blur_` (and from torch's
    convolution), so a pixel can land one level apart (the tests bound how often).
    """
    h, w = img.shape[1], img.shape[2]
    ks = kern.shape[0]
    half = ks // 2
    kz = np.zeros(ks + 4, np.float32)  # zero-padded taps: the last group of four may run past stop
    kz[first:stop] = kern[first:stop]
    rx = np.empty(w + 2 * half, np.int64)
    for x in range(w + 2 * half):
        rx[x] = _reflect(x - half, w)
    ry = np.empty(h + 2 * half + 4, np.int64)  # row offsets into tmp of each vertical tap
    for y in range(h + 2 * half + 4):
        ry[y] = _reflect(min(y - half, h + half - 1), h) * w
    flat = img.reshape(-1)
    wu = np.uint64(w)
    for x in range(w + 2 * half, w + 2 * half + 4):
        row[x] = _F0
    for c in range(3):
        base = c * h * w
        for y in range(h):  # horizontal pass into tmp, through a reflect-padded float row
            sb = np.uint64(base + y * w)
            hu = np.uint64(half)
            for x in range(wu):  # the row itself: contiguous, vectorised
                row[hu + x] = np.float32(flat[sb + x])
            for x in range(half):  # the reflected edges
                row[x] = np.float32(flat[sb + np.uint64(rx[x])])
                row[w + half + x] = np.float32(flat[sb + np.uint64(rx[w + half + x])])
            db = y * w
            k = first
            _set_taps_(tmp, db, row, k, k + 1, k + 2, k + 3, kz[k], kz[k + 1], kz[k + 2], kz[k + 3], w)
            for k in range(first + 4, stop, 4):
                _add_taps_(tmp, db, row, k, k + 1, k + 2, k + 3, kz[k], kz[k + 1], kz[k + 2], kz[k + 3], w)
        for y in range(h):  # vertical pass: whole rows at a time, accumulated in row[:w]
            k = first
            _set_taps_(
                row, 0, tmp, ry[y + k], ry[y + k + 1], ry[y + k + 2], ry[y + k + 3],
                kz[k], kz[k + 1], kz[k + 2], kz[k + 3], w,
            )  # fmt: skip
            for k in range(first + 4, stop, 4):
                _add_taps_(
                    row, 0, tmp, ry[y + k], ry[y + k + 1], ry[y + k + 2], ry[y + k + 3],
                    kz[k], kz[k + 1], kz[k + 2], kz[k + 3], w,
                )  # fmt: skip
            ob = np.uint64(base + y * w)
            for x in range(wu):
                flat[ob + x] = np.uint8(min(max(np.rint(row[x]), _F0), _F255))
        for x in range(w + 2 * half, w + 2 * half + 4):  # the vertical pass used row[:w] only
            row[x] = _F0


@njit(**_JIT)
def normalize_(planes, mean, std, out):
    """uint8 planes -> float32 ``(v / 255 - mean) / std`` with torch's float32 ops.

    ``ToDtype(float32, scale=True)`` multiplies by ``float32(1/255)`` and ``Normalize`` subtracts
    then divides; the op-level test compares all 256 levels with torchvision.
    """
    for c in range(3):
        p = planes[c]
        o = out[c]
        m = np.float32(mean[c])
        s = np.float32(std[c])
        for k in range(p.shape[0]):
            o[k] = (np.float32(p[k]) * _INV255 - m) / s


@njit(**_JIT)
def to_planes_(hwc, planes, flip):
    """``(H, W, 3)`` -> ``(3, H*W)``, mirrored left-right when ``flip``.

    Flat unsigned offsets, no per-row slices (see :func:`_add_taps_` for why).
    """
    h, w = hwc.shape[0], hwc.shape[1]
    src = hwc.reshape(-1)
    pr, pg, pb = planes[0], planes[1], planes[2]
    wu = np.uint64(w)
    three = np.uint64(3)
    last = np.uint64(3 * (w - 1))
    for y in range(h):
        sb = np.uint64(3 * y * w)
        db = np.uint64(y * w)
        if flip:
            for x in range(wu):
                j = sb + last - three * x
                pr[db + x] = src[j]
                pg[db + x] = src[j + np.uint64(1)]
                pb[db + x] = src[j + np.uint64(2)]
        else:
            for x in range(wu):
                j = sb + three * x
                pr[db + x] = src[j]
                pg[db + x] = src[j + np.uint64(1)]
                pb[db + x] = src[j + np.uint64(2)]
