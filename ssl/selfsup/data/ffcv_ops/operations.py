"""The FFCV ``Operation`` wrappers of the batch kernels (need ffcv at run time)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from .batch import blur_batch, flip_batch, gray_batch, jitter_batch, normalize_batch, solarize_batch
from .kernels import jitter_ranges, normalize_lut

try:  # ffcv is optional: the kernels work (and are tested) without it.
    from ffcv.pipeline.allocation_query import AllocationQuery
    from ffcv.pipeline.operation import Operation
    from ffcv.pipeline.state import State

    HAVE_FFCV = True
except ImportError:  # pragma: no cover - exercised when ffcv is absent
    HAVE_FFCV = False
    Operation = object  # type: ignore[misc,assignment]

# ---------------------------------------------------------------------------------------------
# FFCV operations
#
# They declare ``jit_mode=False``: FFCV then calls them from Python, once per batch, instead of
# compiling a fresh closure for every operation instance (seconds each, per view, at the start of
# every run). The work still happens in the compiled, GIL-free batch kernels above, which numba
# caches on disk. A non-jitted op must not be followed by a jitted one (#396): these ops come
# after the decoder and end with NormalizeCHW + ToTensor, so nothing jitted follows them.


def _python_stage(previous_state):
    # Same shape and dtype, no new buffer (the op edits its input in place).
    return replace(previous_state, jit_mode=False), None


class RandomHorizontalFlip(Operation):
    """``RandomHorizontalFlip(p)``, per sample. Edits in place."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)

    def generate_code(self) -> Callable:
        p = self.p

        def flip(images, _dst):
            flip_batch(images, p)
            return images

        return flip

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return _python_stage(previous_state)


class RandomColorJitter(Operation):
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` per sample.

    Random order of the four adjustments, as torchvision. Edits the batch in place.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p: float = 0.8,
    ) -> None:
        super().__init__()
        self.p = float(p)
        self.ranges = jitter_ranges((brightness, contrast, saturation, hue))
        self.use = np.array([brightness > 0, contrast > 0, saturation > 0, hue > 0], dtype=np.bool_)

    def generate_code(self) -> Callable:
        p, use = self.p, self.use
        (b_lo, b_hi), (c_lo, c_hi), (s_lo, s_hi), (h_lo, h_hi) = self.ranges

        def color_jitter(images, _dst):
            jitter_batch(images, p, b_lo, b_hi, c_lo, c_hi, s_lo, s_hi, h_lo, h_hi, use)
            return images

        return color_jitter

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return _python_stage(previous_state)


class RandomGrayscale(Operation):
    """``RandomGrayscale(p)``: luma replicated to three channels, per sample. Edits in place."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.p = float(p)

    def generate_code(self) -> Callable:
        p = self.p

        def grayscale(images, _dst):
            gray_batch(images, p)
            return images

        return grayscale

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return _python_stage(previous_state)


class RandomSolarize(Operation):
    """``RandomSolarize(threshold, p)``, per sample. Edits in place."""

    def __init__(self, threshold: int = 128, p: float = 0.2) -> None:
        super().__init__()
        if not 0 <= threshold <= 255:
            raise ValueError(f"threshold must be in 0..255, got {threshold}")
        self.threshold = int(threshold)
        self.p = float(p)

    def generate_code(self) -> Callable:
        p, threshold = self.p, np.uint8(self.threshold)

        def solarize(images, _dst):
            solarize_batch(images, p, threshold)
            return images

        return solarize

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return _python_stage(previous_state)


class RandomGaussianBlur(Operation):
    """``RandomApply([GaussianBlur(kernel_size, sigma=(lo, hi))], p)``, per sample. Edits in place."""

    def __init__(self, kernel_size: int, sigma: Sequence[float] = (0.1, 2.0), p: float = 0.5) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        lo, hi = (float(s) for s in sigma)
        if not 0 < lo <= hi:
            raise ValueError(f"sigma must satisfy 0 < min <= max, got {sigma}")
        self.kernel_size, self.sigma, self.p = int(kernel_size), (lo, hi), float(p)

    def generate_code(self) -> Callable:
        p, ksize = self.p, self.kernel_size
        lo, hi = self.sigma

        def gaussian_blur(images, _dst):
            blur_batch(images, p, ksize, lo, hi)
            return images

        return gaussian_blur

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return _python_stage(previous_state)


class NormalizeCHW(Operation):
    """uint8 HWC -> normalised float32 CHW (torchvision's ``ToDtype`` + ``Normalize`` + transpose)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.lut = normalize_lut(mean, std)

    def generate_code(self) -> Callable:
        lut = self.lut

        def normalize(images, dst):
            out = dst[: images.shape[0]]
            normalize_batch(images, lut, out)
            return out

        return normalize

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        h, w, c = previous_state.shape
        shape = (c, h, w)
        dtype = np.dtype("<f4")
        return replace(previous_state, jit_mode=False, shape=shape, dtype=dtype), AllocationQuery(
            shape, dtype
        )
