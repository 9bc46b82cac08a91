"""Decode once, crop many: every view of a sample cut from one decoded image, in one parallel kernel.

:func:`augment_views_batch` takes a batch of decoded images and, for each sample and each view,
draws the view's parameters from its own seeded generator (:mod:`.rng`), cuts and resizes the
crop, and runs the view's augmentations on planes (:mod:`.planar`) before writing the normalised
float32 view. The ops and their order are the torchvision loader's
(:func:`selfsup.data.augment.view_transform`):

1. random resized crop: torchvision's box sampling (scale, log-uniform ratio, ten tries, centred
   fallback), resized by the very function FFCV's crop decoder calls (``libffcv``'s OpenCV
   ``INTER_AREA``: area averaging when both sides shrink, bilinear otherwise; torchvision uses
   antialiased bilinear, so pixels differ slightly, not the crop geometry);
2. horizontal flip with probability ``flip_p`` (folded into the HWC -> planes copy);
3. with probability ``jitter_p``: brightness, contrast, saturation, hue in a random order, factors
   drawn as ``ColorJitter`` does;
4. grayscale (``grayscale_p``), Gaussian blur (``blur_p``, sigma ``U[lo, hi]``), solarize
   (``solarize_p``);
5. ``ToDtype(float32, scale=True)`` + ``Normalize(mean, std)`` into the view's output, CHW.

A thread works through its samples one at a time with one set of scratch buffers, so a view's
pixels stay in the core's cache from the resize to the normalised output.

One view's random draws, in order: the crop (2 per try, 2 more for the placement), flip, jitter
apply, the jitter order (3), the four jitter factors, grayscale, blur apply, sigma, solarize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import planar as P
from .kernels import gaussian_kernel1d, jitter_ranges
from .native import call_resize
from .rng import randperm4, resized_crop_box, uniform

# Columns of the per-view parameter table (float64, one row per view).
SIZE, SC_LO, SC_HI, R_LO, R_HI, FLIP = 0, 1, 2, 3, 4, 5
JIT_P, B_LO, B_HI, C_LO, C_HI, S_LO, S_HI, H_LO, H_HI = 6, 7, 8, 9, 10, 11, 12, 13, 14
USE_B, USE_C, USE_S, USE_H = 15, 16, 17, 18
GRAY_P, BLUR_P, BLUR_K, SIG_LO, SIG_HI, SOL_P, SOL_T = 19, 20, 21, 22, 23, 24, 25
CENTRE = 26
N_PARAMS = 27


@dataclass(frozen=True)
class ViewAug:
    """One view's augmentation, torchvision semantics (see the module docstring).

    A probability of 0 turns an op off; ``jitter`` is ``(brightness, contrast, saturation, hue)``
    strengths as ``ColorJitter`` takes them; ``blur_kernel`` is the odd kernel side. ``centre``
    > 0 replaces the random crop by the centre square of ``centre`` x the short side (a plain
    view, :func:`selfsup.data.augment.plain_transform`).
    """

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.0
    jitter_p: float = 0.0
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: int = 128
    centre: float = 0.0

    def row(self) -> np.ndarray:
        """This view's row of the parameter table."""
        if self.size < 1:
            raise ValueError(f"view size must be positive, got {self.size}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"crop scale must satisfy 0 < min <= max, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {self.ratio}")
        if self.blur_p > 0 and (self.blur_kernel < 1 or self.blur_kernel % 2 == 0):
            raise ValueError(f"blur kernel must be odd and positive, got {self.blur_kernel}")
        if self.blur_p > 0 and not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur sigma must satisfy 0 < min <= max, got {self.blur_sigma}")
        r = np.zeros(N_PARAMS, np.float64)
        r[SIZE], (r[SC_LO], r[SC_HI]), (r[R_LO], r[R_HI]) = self.size, self.scale, self.ratio
        r[FLIP], r[JIT_P] = self.flip_p, self.jitter_p if any(self.jitter) else 0.0
        (r[B_LO], r[B_HI]), (r[C_LO], r[C_HI]), (r[S_LO], r[S_HI]), (r[H_LO], r[H_HI]) = jitter_ranges(
            self.jitter
        )
        r[USE_B : USE_H + 1] = [float(v > 0) for v in self.jitter]
        r[GRAY_P], r[BLUR_P], r[BLUR_K] = self.grayscale_p, self.blur_p, self.blur_kernel
        (r[SIG_LO], r[SIG_HI]), r[SOL_P], r[SOL_T] = self.blur_sigma, self.solarize_p, self.solarize_threshold
        if not 0 <= self.centre <= 1:
            raise ValueError(f"centre crop ratio must be in [0, 1], got {self.centre}")
        r[CENTRE] = self.centre
        return r


def param_table(views: Sequence[ViewAug]) -> np.ndarray:
    """``(V, N_PARAMS)`` float64: the rows of every view, in output order."""
    return np.stack([v.row() for v in views])


@njit(cache=True, nogil=True, error_model="numpy")
def augment_view(img, st, prm, resize_fn, rs, flat, tmp, row, ftmp, order, mean, std, out):
    """One view of ``img`` (HWC uint8) into ``out`` (``(3, S*S)`` float32); see the module docstring.

    ``st``: the view's generator state; ``prm``: its parameter row; ``resize_fn``: the address of
    ``libffcv``'s resize (:func:`.native.resize_address`); the rest is scratch: ``rs`` (>= S*S*3
    uint8), ``flat`` (>= 3*S*S uint8), ``tmp`` (>= S*S int32), ``row`` (>= S + kernel + 4
    float32), ``ftmp`` (>= S*S float32), ``order`` (4 int64).
    """
    s = np.int64(prm[SIZE])
    n = s * s
    if prm[CENTRE] > 0:  # plain view: no crop draws
        ch = max(np.int64(1), np.int64(prm[CENTRE] * min(img.shape[0], img.shape[1])))
        cw = ch
        top, left = (img.shape[0] - ch) // 2, (img.shape[1] - cw) // 2
    else:
        top, left, ch, cw = resized_crop_box(
            st, img.shape[0], img.shape[1], prm[SC_LO], prm[SC_HI], prm[R_LO], prm[R_HI]
        )
    flip = uniform(st, 0.0, 1.0) < prm[FLIP]
    jitter = uniform(st, 0.0, 1.0) < prm[JIT_P]
    randperm4(st, order)
    bf = uniform(st, prm[B_LO], prm[B_HI])
    cf = uniform(st, prm[C_LO], prm[C_HI])
    sf = uniform(st, prm[S_LO], prm[S_HI])
    hf = uniform(st, prm[H_LO], prm[H_HI])
    gray = uniform(st, 0.0, 1.0) < prm[GRAY_P]
    blur = uniform(st, 0.0, 1.0) < prm[BLUR_P]
    sigma = uniform(st, prm[SIG_LO], prm[SIG_HI])
    solarize = uniform(st, 0.0, 1.0) < prm[SOL_P]

    hwc = rs[: n * 3].reshape((s, s, 3))
    call_resize(resize_fn, img, top, left, ch, cw, hwc)
    planes = flat[: 3 * n].reshape((3, n))
    P.to_planes_(hwc, planes, flip)
    if jitter:
        for k in range(4):
            op = order[k]
            if op == 0 and prm[USE_B] > 0:
                P.brightness_(planes, bf)
            elif op == 1 and prm[USE_C] > 0:
                P.contrast_(planes, cf, tmp[:n])
            elif op == 2 and prm[USE_S] > 0:
                P.saturation_(planes, sf, tmp[:n])
            elif op == 3 and prm[USE_H] > 0 and hf != 0.0:
                P.hue_(planes, hf)
    if gray:
        P.gray_(planes, tmp[:n])
    if blur:
        kern = gaussian_kernel1d(np.int64(prm[BLUR_K]), sigma)
        first, stop = P.blur_taps(kern)
        P.blur_(flat[: 3 * n].reshape((3, s, s)), kern, first, stop, row, ftmp)
    if solarize:
        P.solarize_(planes, np.int64(prm[SOL_T]))
    P.normalize_(planes, mean, std, out)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def augment_views_batch(decoded, heights, widths, seeds, params, offsets, mean, std, resize_fn, threads, out):
    """All views of a batch: ``out[offsets[v] + b*3*S*S ...]`` = view ``v`` of sample ``b``.

    ``decoded``: ``(B, L)`` uint8, sample ``b``'s image in the first ``heights[b]*widths[b]*3``
    bytes (HWC); ``seeds``: ``(B, V)`` uint64 generator seeds; ``params``: ``(V, N_PARAMS)``;
    ``resize_fn``: :func:`.native.resize_address`; ``threads``: ``numba.get_num_threads()`` of the
    caller (an argument: calling it in here would stop numba from caching this function);
    ``out``: flat float32, view-major (all of view 0's ``(B, 3, S, S)``, then view 1's ...).
    Samples are split over that many chunks; each allocates its scratch once.
    """
    nb, nv = seeds.shape
    smax = 1
    kmax = 1
    for v in range(nv):
        smax = max(smax, np.int64(params[v, SIZE]))
        kmax = max(kmax, np.int64(params[v, BLUR_K]))
    nt = max(1, min(threads, nb))
    for t in prange(nt):
        rs = np.empty(smax * smax * 3, np.uint8)
        flat = np.empty(smax * smax * 3, np.uint8)
        tmp = np.empty(smax * smax, np.int32)
        row = np.empty(smax + kmax + 8, np.float32)
        ftmp = np.empty(smax * smax, np.float32)
        order = np.empty(4, np.int64)
        st = np.empty(1, np.uint64)
        for b in range(t, nb, nt):
            h, w = np.int64(heights[b]), np.int64(widths[b])
            img = decoded[b, : h * w * 3].reshape((h, w, 3))
            for v in range(nv):
                s = np.int64(params[v, SIZE])
                size = 3 * s * s
                start = offsets[v] + b * size
                st[0] = seeds[b, v]
                augment_view(
                    img,
                    st,
                    params[v],
                    resize_fn,
                    rs,
                    flat,
                    tmp,
                    row,
                    ftmp,
                    order,
                    mean,
                    std,
                    out[start : start + size].reshape((3, s * s)),
                )
