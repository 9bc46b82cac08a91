"""Decode once, crop many: seeded draws, crop statistics, planar kernels, the multi-view kernel."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
ffcv = pytest.importorskip("ffcv")
torch = pytest.importorskip("torch")
from torchvision.transforms import v2 as T  # noqa: E402

from selfsup.data import ffcv_ops as O  # noqa: E402
from selfsup.data.augment import view_seed  # noqa: E402
from selfsup.data.ffcv_ops import planar as P  # noqa: E402
from selfsup.data.ffcv_ops import rng as R  # noqa: E402
from selfsup.data.ffcv_ops.multiview import ViewAug, augment_views_batch, param_table  # noqa: E402
from selfsup.data.ffcv_ops.native import call_resize, resize_address  # noqa: E402

pytestmark = [pytest.mark.ffcv, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def _images(n=4, h=24, w=20, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    imgs[:, : h // 3] = rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8)  # flat band
    imgs[:, :, :2] = np.array([255, 0, 0], np.uint8)  # saturated edge
    return imgs


def _planes(hwc):
    return np.ascontiguousarray(hwc.transpose(2, 0, 1)).reshape(3, -1)


def _hwc(planes, h, w):
    return planes.reshape(3, h, w).transpose(1, 2, 0)


def test_view_seeds_equal_augment_view_seed():
    pos = np.array([0, 1, 7, 123456789, 2**40])
    for seed, epoch in ((0, 0), (3, 11), (-5, 2), (2**62, 7)):
        got = R.view_seeds(seed, epoch, pos, 3)
        want = [[view_seed(seed, epoch, int(i), v) for v in range(3)] for i in pos]
        assert got.tolist() == want


def test_generator_is_deterministic_and_uniform():
    st = np.array([12345], np.uint64)
    a = [R.uniform(st, 0.0, 1.0) for _ in range(20000)]
    st[0] = 12345
    assert [R.uniform(st, 0.0, 1.0) for _ in range(5)] == a[:5]
    a = np.array(a)
    assert a.min() >= 0 and a.max() < 1 and abs(a.mean() - 0.5) < 0.01 and abs(a.var() - 1 / 12) < 0.003
    ints = np.array([R.randint(st, 3, 8) for _ in range(6000)])
    assert set(ints.tolist()) == {3, 4, 5, 6, 7} and np.abs(np.bincount(ints)[3:] / 6000 - 0.2).max() < 0.03
    order = np.empty(4, np.int64)
    perms = set()
    for _ in range(400):
        R.randperm4(st, order)
        perms.add(tuple(order))
    assert len(perms) == 24


def _box_stats(boxes, h, w):
    boxes = np.asarray(boxes, np.float64)
    return boxes[:, 2] * boxes[:, 3] / (h * w), np.log(boxes[:, 3] / boxes[:, 2])


def test_crop_scale_and_ratio_match_torchvision_and_ffcv():
    """Same distributions as torchvision's RandomResizedCrop and FFCV's crop (the per-view pipeline)."""
    from ffcv.fields.rgb_image import get_random_crop
    from scipy.stats import ks_2samp

    h, w, n = 64, 80, 3000
    scale, ratio = (0.2, 1.0), (3 / 4, 4 / 3)
    st = np.array([7], np.uint64)
    ours = [R.resized_crop_box(st, h, w, *scale, *ratio) for _ in range(n)]
    torch.manual_seed(0)
    rrc = T.RandomResizedCrop(32, scale=scale, ratio=ratio)
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    tv = [rrc.make_params([img]) for _ in range(n)]
    tv = [(p["top"], p["left"], p["height"], p["width"]) for p in tv]
    np.random.seed(0)
    ff = [get_random_crop(h, w, np.array(scale), np.array(ratio)) for _ in range(n)]
    a_s, a_r = _box_stats(ours, h, w)
    for other in (tv, ff):
        b_s, b_r = _box_stats(other, h, w)
        assert ks_2samp(a_s, b_s).pvalue > 1e-3
        assert ks_2samp(a_r, b_r).pvalue > 1e-3
    boxes = np.array(ours)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= h).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= w).all()
    # placement: the crop's centre is spread over the image (left edge uniform given the width)
    assert (
        ks_2samp(
            boxes[:, 1] / np.maximum(1, w - boxes[:, 3]), np.random.default_rng(0).uniform(0, 1, n)
        ).pvalue
        > 1e-4
    )


def test_crop_fallback_is_torchvision_centre_crop():
    st = np.array([1], np.uint64)
    assert R.resized_crop_box(st, 10, 100, 0.9, 1.0, 3 / 4, 4 / 3) == (0, 43, 10, 13)  # too wide: ten misses
    assert R.resized_crop_box(st, 100, 10, 0.9, 1.0, 3 / 4, 4 / 3) == (43, 0, 13, 10)


@pytest.mark.parametrize("factor", [0.0, 0.55, 1.0, 1.45, 1.8])
def test_planar_colour_ops_bit_identical_to_hwc_kernels(factor):
    tmp = np.empty(24 * 20, np.int32)
    for img in _images():
        for hwc_fn, planar_fn in (
            (lambda a: O.brightness_(a, factor), lambda p: P.brightness_(p, factor)),
            (lambda a: O.contrast_(a, factor), lambda p: P.contrast_(p, factor, tmp)),
            (lambda a: O.saturation_(a, factor), lambda p: P.saturation_(p, factor, tmp)),
            (lambda a: O.hue_(a, (factor - 0.9) / 2), lambda p: P.hue_(p, (factor - 0.9) / 2)),
        ):
            a = img.copy()
            hwc_fn(a)
            p = _planes(img)
            planar_fn(p)
            np.testing.assert_array_equal(_hwc(p, 24, 20), a)
    a = img.copy()
    O.gray_(a)
    p = _planes(img)
    P.gray_(p, tmp)
    np.testing.assert_array_equal(_hwc(p, 24, 20), a)
    a = img.copy()
    O.solarize_(a, np.uint8(128))
    p = _planes(img)
    P.solarize_(p, 128)
    np.testing.assert_array_equal(_hwc(p, 24, 20), a)


def test_normalize_equals_torchvision_on_all_levels():
    lv = np.stack([np.arange(256, dtype=np.uint8)] * 3)
    out = np.empty((3, 256), np.float32)
    for mean, std in (([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), ([0.1, 0.9, 0.33], [0.7, 0.12, 1.3])):
        P.normalize_(lv, np.array(mean), np.array(std), out)
        np.testing.assert_array_equal(out.T, O.normalize_lut(mean, std))


@pytest.mark.parametrize("sigma", [0.1, 0.6, 1.3, 2.0])
def test_planar_blur_close_to_torchvision(sigma):
    from torchvision.transforms.v2 import functional as F

    k = 9
    kern = O.gaussian_kernel1d(k, sigma)
    first, stop = P.blur_taps(kern)
    assert stop - first == k or kern[first - 1] * 255 < 2**-20  # only negligible taps dropped
    row, tmp = np.empty(64, np.float32), np.empty(24 * 20, np.float32)
    diffs = []
    for img in _images(3):
        p = _planes(img)
        P.blur_(p.reshape(3, 24, 20), kern, first, stop, row, tmp)
        ref = F.gaussian_blur(torch.from_numpy(img).permute(2, 0, 1), [k, k], [sigma, sigma]).permute(1, 2, 0)
        diffs.append(np.abs(_hwc(p, 24, 20).astype(int) - ref.numpy()))
    d = np.stack(diffs)
    assert d.max() <= 1 and (d > 0).mean() <= 0.005


def test_to_planes_and_flip():
    img = _images(1, 5, 7)[0]
    p = np.empty((3, 35), np.uint8)
    P.to_planes_(img, p, False)
    np.testing.assert_array_equal(_hwc(p, 5, 7), img)
    P.to_planes_(img, p, True)
    np.testing.assert_array_equal(_hwc(p, 5, 7), img[:, ::-1])


def test_resize_is_ffcv_decoders_opencv_area():
    import cv2

    img = _images(1, 40, 50)[0]
    dst = np.empty((16, 16, 3), np.uint8)
    for top, left, h, w in ((0, 0, 40, 50), (3, 5, 20, 31), (10, 10, 8, 9)):
        call_resize(resize_address(), img, top, left, h, w, dst)
        ref = cv2.resize(img[top : top + h, left : left + w], (16, 16), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(dst, ref)


def _one_view_reference(img, seed, v: ViewAug, mean, std):
    """The view recomputed step by step with the HWC kernels and OpenCV, same draws in the same order."""
    import cv2

    st = np.array([seed], np.uint64)
    if v.centre > 0:  # a plain view: the centre square, no crop draws
        h = w = max(1, int(v.centre * min(img.shape[:2])))
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    else:
        top, left, h, w = R.resized_crop_box(st, img.shape[0], img.shape[1], *v.scale, *v.ratio)
    u = lambda lo=0.0, hi=1.0: R.uniform(st, lo, hi)  # noqa: E731
    flip, jitter = u() < v.flip_p, u() < v.jitter_p
    order = np.empty(4, np.int64)
    R.randperm4(st, order)
    (b0, b1), (c0, c1), (s0, s1), (h0, h1) = O.jitter_ranges(v.jitter)
    bf, cf, sf, hf = u(b0, b1), u(c0, c1), u(s0, s1), u(h0, h1)
    gray, blur = u() < v.grayscale_p, u() < v.blur_p
    sigma = u(*v.blur_sigma)
    solarize = u() < v.solarize_p
    out = cv2.resize(img[top : top + h, left : left + w], (v.size, v.size), interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(out[:, ::-1] if flip else out)
    if jitter:
        O.jitter_(out, bf, cf, sf, hf, order)
    if gray:
        O.gray_(out)
    if blur:
        O.blur_(out, v.blur_kernel, sigma)
    if solarize:
        O.solarize_(out, np.uint8(v.solarize_threshold))
    lut = O.normalize_lut(mean, std)
    return np.stack([lut[out[..., c], c] for c in range(3)]), blur


def test_multiview_kernel_equals_step_by_step_reference_and_ignores_threads():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (hh, ww, 3), dtype=np.uint8) for hh, ww in ((30, 40), (36, 28), (33, 33))]
    dec = np.zeros((3, 40 * 40 * 3), np.uint8)
    for b, im in enumerate(imgs):
        dec[b, : im.size] = im.reshape(-1)
    hs = np.array([im.shape[0] for im in imgs], np.int64)
    ws = np.array([im.shape[1] for im in imgs], np.int64)
    views = [
        ViewAug(16, (0.2, 1.0), flip_p=0.5, jitter_p=0.8, jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.3,
                blur_p=0.5, blur_kernel=3, solarize_p=0.3),
        ViewAug(8, (0.05, 0.3), flip_p=0.5, jitter_p=1.0, jitter=(0.4, 0.4, 0.0, 0.2)),
        ViewAug(12, flip_p=0.5, centre=0.75),  # a plain view (OBoW's teacher input)
    ]  # fmt: skip
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    params = param_table(views)
    seeds = R.view_seeds(3, 1, np.array([10, 11, 12]), 3)
    offsets = np.array([0, 3 * 3 * 16 * 16, 3 * 3 * (16 * 16 + 8 * 8)], np.int64)
    outs = []
    for threads in (1, 2, 3):
        out = np.full(3 * 3 * (16 * 16 + 8 * 8 + 12 * 12), np.nan, np.float32)
        augment_views_batch(dec, hs, ws, seeds, params, offsets, mean, std, resize_address(), threads, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    out = outs[0]
    for b, im in enumerate(imgs):
        for v, spec in enumerate(views):
            n = 3 * spec.size**2
            got = out[offsets[v] + b * n : offsets[v] + (b + 1) * n].reshape(3, spec.size, spec.size)
            want, blurred = _one_view_reference(im, int(seeds[b, v]), spec, mean, std)
            if blurred:  # the planar blur groups its sums differently: at most one level apart
                assert np.abs(got - want).max() <= 1.01 / 255 / min(std) and np.mean(got != want) < 0.01
            else:
                np.testing.assert_array_equal(got, want)
