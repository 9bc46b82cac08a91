"""SSL augmentations that upstream FFCV lacks, as FFCV ``Operation``s running numba kernels.

Each operation works on a batch of HWC ``uint8`` images between the decoder and ``ToTensor`` and
draws its random parameters per sample from numba's generator, so every image in a batch gets its
own augmentation.

Semantics follow torchvision's ``transforms.v2`` on ``uint8`` tensors, which is what the
torchvision loader (:mod:`selfsup.data.augment`) runs:

============================  =================================================================
operation                     torchvision counterpart
============================  =================================================================
:class:`RandomHorizontalFlip` ``RandomHorizontalFlip(p)``.
:class:`RandomColorJitter`    ``RandomApply([ColorJitter(b, c, s, h)], p)``: factors drawn as
                              torchvision does (``U[max(0, 1-x), 1+x]``, hue ``U[-h, h]``) and
                              the four adjustments applied in a random order per sample, as
                              ``ColorJitter`` does with ``randperm(4)``.
:class:`RandomGrayscale`      ``RandomGrayscale(p)``: ITU-R 601-2 luma
                              ``0.2989 R + 0.587 G + 0.114 B``, truncated to ``uint8``.
:class:`RandomGaussianBlur`   ``RandomApply([GaussianBlur(k, (lo, hi))], p)``: sigma
                              ``U[lo, hi]``, reflect padding, rounded to ``uint8``.
:class:`RandomSolarize`       ``RandomSolarize(threshold=128, p)``: ``v >= 128 -> 255 - v``.
:class:`NormalizeCHW`         ``ToDtype(float32, scale=True)`` + ``Normalize(mean, std)`` and the
                              HWC -> CHW transpose, in one pass (float32 ``(3, H, W)`` out).
============================  =================================================================

The per-image kernels (``gray_``, ``brightness_``, ...) reproduce torch's float32 arithmetic,
including its fused multiply-adds, so every adjustment matches torchvision bit for bit for the same
parameters (the tests check it on fixed inputs).

Compilation: FFCV compiles a fresh numba closure for every jitted operation instance, per view,
at the start of every run (seconds each). These operations instead declare themselves non-jitted:
FFCV calls them from Python once per batch, and they hand the whole batch to module-level kernels
that are compiled once and cached on disk (``__pycache__``), run without the GIL and spread the
samples over numba's threads. Issue #396 (the graph builder hangs when a *jitted* op follows a
non-jitted one) does not arise as long as only these ops and ``ToTensor`` follow them.

Randomness of these per-op operations comes from numba's per-thread generator, like FFCV's own
crop: it is not seeded, so they are used only by the previous per-view pipeline (kept for
benchmarks). The loader's default decode-once pipeline (:mod:`.decode_once`, :mod:`.multiview`,
:mod:`.planar`, :mod:`.rng`) draws every view's parameters from a generator seeded by (seed,
epoch, sample, view) and is bit-reproducible.

All operations but :class:`NormalizeCHW` modify their input batch in place (no extra buffer): use
each instance in exactly one pipeline, after a decoder that owns its output.

Modules: :mod:`.kernels` (per-image kernels), :mod:`.batch` (per-batch parallel kernels),
:mod:`.operations` (the FFCV operations); decode once, crop many: :mod:`.rng` (seeded draws),
:mod:`.planar` (vectorised planar kernels), :mod:`.native` (OpenCV resize from cached code),
:mod:`.multiview` (the per-batch kernel), :mod:`.decode_once` (its FFCV operations).
"""

from .batch import blur_batch, flip_batch, gray_batch, jitter_batch, normalize_batch, solarize_batch
from .kernels import (
    blur_,
    brightness_,
    contrast_,
    gaussian_kernel1d,
    gray_,
    hue_,
    jitter_,
    jitter_ranges,
    normalize_chw,
    normalize_lut,
    random_jitter_,
    saturation_,
    solarize_,
)
from .operations import (
    HAVE_FFCV,
    NormalizeCHW,
    RandomColorJitter,
    RandomGaussianBlur,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomSolarize,
)

__all__ = [
    "HAVE_FFCV",
    "NormalizeCHW",
    "RandomColorJitter",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomSolarize",
    "blur_",
    "blur_batch",
    "brightness_",
    "contrast_",
    "flip_batch",
    "gaussian_kernel1d",
    "gray_",
    "gray_batch",
    "hue_",
    "jitter_",
    "jitter_batch",
    "jitter_ranges",
    "normalize_batch",
    "normalize_chw",
    "normalize_lut",
    "random_jitter_",
    "saturation_",
    "solarize_",
    "solarize_batch",
]
