"""The numba augmentations of selfsup.data.ffcv_ops against torchvision's transforms.v2 on uint8."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
ffcv = pytest.importorskip("ffcv")
torch = pytest.importorskip("torch")
from torchvision.transforms import v2 as T  # noqa: E402
from torchvision.transforms.v2 import functional as F  # noqa: E402

from selfsup.data import ffcv_ops as O  # noqa: E402

# numba's dispatcher finalizer may raise a harmless KeyError when FFCV's compiled code is
# garbage-collected (a known upstream FFCV quirk); it is not a failure.
pytestmark = [pytest.mark.ffcv, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


def _images(n: int = 8, h: int = 24, w: int = 20, seed: int = 0) -> np.ndarray:
    """Colourful test images with flat areas, edges and saturated pixels (HWC uint8)."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    imgs[:, : h // 3] = rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8)  # flat band
    imgs[:, :, :2] = np.array([255, 0, 0], np.uint8)  # saturated red edge
    imgs[:, -2:, :] = 0
    return imgs


def _tv(img: np.ndarray, fn, *args) -> np.ndarray:
    return fn(torch.from_numpy(img).permute(2, 0, 1).contiguous(), *args).permute(1, 2, 0).numpy()


def _mine(img: np.ndarray, fn, *args) -> np.ndarray:
    out = img.copy()
    fn(out, *args)
    return out


def _assert_close_u8(a: np.ndarray, b: np.ndarray, max_diff: int = 1, max_frac: float = 0.005) -> None:
    """Equal but for rare one-level differences (floating-point rounding on another CPU)."""
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    assert d.max() <= max_diff, d.max()
    assert (d > 0).mean() <= max_frac, (d > 0).mean()


def test_grayscale_is_torchvision_luma_exactly():
    imgs = _images()
    for img in imgs:
        out = _mine(img, O.gray_)
        np.testing.assert_array_equal(out, _tv(img, F.rgb_to_grayscale, 3))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    # The formula itself, independently: trunc(0.2989 R + 0.587 G + 0.114 B), off by at most one.
    f = imgs.astype(np.float64)
    ref = np.floor(0.2989 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2])
    got = np.stack([_mine(i, O.gray_)[..., 0] for i in imgs])
    assert np.abs(got - ref).max() <= 1


def test_solarize_exact():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    out = _mine(img, O.solarize_, np.uint8(128))
    np.testing.assert_array_equal(out, _tv(img, F.solarize, 128))
    v = img[..., 0].astype(int)
    np.testing.assert_array_equal(out[..., 0], np.where(v >= 128, 255 - v, v))


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4])
def test_brightness_contrast_saturation_match_torchvision(factor):
    for img in _images(4):
        _assert_close_u8(_mine(img, O.brightness_, factor), _tv(img, F.adjust_brightness, factor))
        _assert_close_u8(_mine(img, O.contrast_, factor), _tv(img, F.adjust_contrast, factor))
        _assert_close_u8(_mine(img, O.saturation_, factor), _tv(img, F.adjust_saturation, factor))


@pytest.mark.parametrize("hue", [-0.5, -0.1, 0.0, 0.05, 0.5])
def test_hue_matches_torchvision(hue):
    for img in _images(4):
        _assert_close_u8(_mine(img, O.hue_, hue), _tv(img, F.adjust_hue, hue))


def test_hue_leaves_grey_pixels_alone():
    grey = np.repeat(np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8, 1), 3, axis=2)
    np.testing.assert_array_equal(_mine(grey, O.hue_, 0.3), grey)


@pytest.mark.parametrize("ksize,sigma", [(3, 0.3), (3, 2.0), (5, 1.0), (9, 0.7)])
def test_blur_matches_torchvision_gaussian_blur(ksize, sigma):
    for img in _images(3):
        _assert_close_u8(
            _mine(img, O.blur_, ksize, sigma), _tv(img, F.gaussian_blur, [ksize, ksize], [sigma, sigma])
        )
    k = O.gaussian_kernel1d(ksize, sigma)
    assert abs(k.sum() - 1) < 1e-6 and np.allclose(k, k[::-1]) and k.argmax() == ksize // 2


def test_blur_smooths():
    img = _images(1)[0]
    out = _mine(img, O.blur_, 5, 2.0)
    assert (
        np.abs(np.diff(out.astype(int), axis=1)).mean()
        < 0.6 * np.abs(np.diff(img.astype(int), axis=1)).mean()
    )


def test_jitter_order_matters_and_is_applied_as_given():
    img = _images(1)[0]
    a = _mine(img, O.jitter_, 1.3, 0.7, 1.0, 0.0, np.array([0, 1, 2, 3]))
    b = _mine(img, O.jitter_, 1.3, 0.7, 1.0, 0.0, np.array([1, 0, 2, 3]))
    ref_a = _tv(_tv(img, F.adjust_brightness, 1.3), F.adjust_contrast, 0.7)
    ref_b = _tv(_tv(img, F.adjust_contrast, 0.7), F.adjust_brightness, 1.3)
    _assert_close_u8(a, ref_a)
    _assert_close_u8(b, ref_b)
    assert not np.array_equal(a, b)


def test_normalize_lut_equals_torchvision():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    img = _images(1)[0]
    out = np.empty((3,) + img.shape[:2], np.float32)
    O.normalize_chw(img, O.normalize_lut(mean, std), out)
    ref = F.normalize(
        F.to_dtype(torch.from_numpy(img).permute(2, 0, 1), torch.float32, scale=True), mean, std
    )
    np.testing.assert_array_equal(out, ref.numpy())


def test_flip_and_probabilities():
    imgs = _images(400, 6, 7)
    flipped = imgs.copy()
    O.flip_batch(flipped, 1.0)
    np.testing.assert_array_equal(flipped, imgs[:, :, ::-1])
    some = imgs.copy()
    O.gray_batch(some, 0.3)
    frac = np.mean([(s[..., 0] == s[..., 1]).all() and (s[..., 1] == s[..., 2]).all() for s in some])
    assert 0.22 < frac < 0.38, frac
    none = imgs.copy()
    O.solarize_batch(none, 0.0, np.uint8(128))
    O.blur_batch(none, 0.0, 3, 0.1, 2.0)
    O.jitter_batch(none, 0.0, 0.6, 1.4, 0.6, 1.4, 0.6, 1.4, -0.1, 0.1, np.ones(4, np.bool_))
    np.testing.assert_array_equal(none, imgs)


def test_jitter_statistics_match_torchvision_color_jitter():
    """Per-sample factors: same spread of outputs as torchvision's ColorJitter on the same inputs."""
    n = 600
    rng = np.random.default_rng(1)
    base = np.zeros((n, 8, 8, 3), np.uint8)
    base[:] = rng.integers(40, 200, (n, 1, 1, 3), dtype=np.uint8)
    base[:, :4] = (base[:, :4].astype(int) // 2).astype(np.uint8)  # some contrast inside each image

    ours = base.copy()
    O.jitter_batch(ours, 1.0, *sum(O.jitter_ranges([0.4, 0.4, 0.4, 0.1]), ()), np.ones(4, np.bool_))
    torch.manual_seed(0)
    jit = T.ColorJitter(0.4, 0.4, 0.4, 0.1)
    theirs = np.stack([_tv(b, jit) for b in base])

    for stat in (lambda x: x.mean(axis=(1, 2, 3)), lambda x: x.std(axis=(1, 2, 3))):
        a, b = stat(ours.astype(np.float64)), stat(theirs.astype(np.float64))
        assert abs(a.mean() - b.mean()) < 0.06 * b.mean() + 1, (a.mean(), b.mean())
        assert abs(a.std() - b.std()) < 0.15 * b.std() + 1, (a.std(), b.std())
    assert (ours != base).mean() > 0.9  # p=1: (almost) every image changed


def test_jitter_ranges_are_torchvision_ranges():
    assert O.jitter_ranges([0.4, 1.5, 0.0, 0.1]) == ((0.6, 1.4), (0.0, 2.5), (1.0, 1.0), (-0.1, 0.1))
    with pytest.raises(ValueError):
        O.jitter_ranges([0.4, 0.4, 0.4, 0.6])


def test_operations_run_as_ffcv_stages():
    """The FFCV operations: non-jitted stages (no per-instance compile), in place, normalise last."""
    from ffcv.pipeline.state import State

    imgs = _images(16, 12, 10)
    state = State(jit_mode=True, device=torch.device("cpu"), shape=(12, 10, 3), dtype=np.dtype("u1"))
    ops = [
        O.RandomHorizontalFlip(0.5),
        O.RandomColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        O.RandomGrayscale(1.0),
        O.RandomGaussianBlur(3, (0.1, 2.0), 0.5),
        O.RandomSolarize(128, 0.0),
    ]
    x = imgs.copy()
    for op in ops:
        new_state, alloc = op.declare_state_and_memory(state)
        assert alloc is None and new_state.jit_mode is False and new_state.shape == state.shape
        x = op.generate_code()(x, None)
    assert (x[..., 0] == x[..., 2]).all()  # grayscale with p=1 came after the jitter
    norm = O.NormalizeCHW([0.5] * 3, [0.25] * 3)
    new_state, alloc = norm.declare_state_and_memory(state)
    assert new_state.shape == (3, 12, 10) and alloc.dtype == np.float32
    out = norm.generate_code()(x, np.empty((16, 3, 12, 10), np.float32))
    np.testing.assert_allclose(out, (x.transpose(0, 3, 1, 2) / 255 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError):
        O.RandomGaussianBlur(4)
