"""Torchvision view augmentations built from :class:`~selfsup.config.AugmentConfig`.

Each view is drawn with its own random parameters. To make runs reproducible and independent of
the number of processes and loader workers, the randomness of one view is seeded from
``(seed, epoch, sample index, view number)`` (see :func:`view_seed`).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torchvision.transforms import v2 as T


def view_seed(seed: int, epoch: int, index: int, view: int) -> int:
    """A 63-bit seed unique to one view of one sample in one epoch (splitmix64 mixing)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB + view) & (
        (1 << 64) - 1
    )
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 27
    return x & ((1 << 63) - 1)


def blur_kernel(size: int) -> int:
    """About 10% of the image side, odd, at least 3 (SimCLR App. A)."""
    k = max(3, int(round(0.1 * size)))
    return k if k % 2 == 1 else k + 1


def view_transform(aug, size: int, mean, std, scale=None) -> T.Compose:
    """One view's pipeline on a uint8 CHW tensor -> normalised float32 CHW tensor."""
    scale = tuple(scale or aug.crop_scale)
    ops: list = [T.RandomResizedCrop(size, scale=scale, antialias=True)]
    if aug.flip_p > 0:
        ops.append(T.RandomHorizontalFlip(aug.flip_p))
    if aug.jitter_p > 0 and any(aug.jitter):
        ops.append(T.RandomApply([T.ColorJitter(*aug.jitter)], p=aug.jitter_p))
    if aug.grayscale_p > 0:
        ops.append(T.RandomGrayscale(aug.grayscale_p))
    if aug.blur_p > 0:
        ops.append(T.RandomApply([T.GaussianBlur(blur_kernel(size), tuple(aug.blur_sigma))], p=aug.blur_p))
    if aug.solarize_p > 0:
        ops.append(T.RandomSolarize(128, p=aug.solarize_p))
    ops += [T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std))]
    return T.Compose(ops)


class CenterSquare:
    """Crop the centre square of side ``int(ratio * short side)`` (FFCV's centre-crop geometry)."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        c = max(1, int(self.ratio * min(h, w)))
        top, left = (h - c) // 2, (w - c) // 2
        return img[..., top : top + c, left : left + c]


def plain_transform(aug, size: int, mean, std, flip: bool = True) -> T.Compose:
    """A plain view: centre square, resized to ``size``, flipped (``aug.flip_p``), normalised.

    With ``plain_crop = 224 / 256`` this is "Resize(256), CenterCrop(224)" at any image size.
    """
    ops: list = [CenterSquare(aug.plain_crop), T.Resize((size, size), antialias=True)]
    if flip and aug.flip_p > 0:
        ops.append(T.RandomHorizontalFlip(aug.flip_p))
    ops += [T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std))]
    return T.Compose(ops)


def eval_transform(size: int, mean, std) -> T.Compose:
    """Resize (when needed) and normalise; no randomness."""
    return T.Compose(
        [
            T.Resize(size, antialias=True),
            T.CenterCrop(size),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(mean), list(std)),
        ]
    )


class MultiView:
    """Global views (``data.views``), local multi-crop views, then plain views; seeded per sample."""

    def __init__(self, data_cfg, seed: int) -> None:
        aug = data_cfg.augment
        self.seed = seed
        self.transforms = [
            view_transform(aug, data_cfg.image_size, data_cfg.mean, data_cfg.std)
            for _ in range(data_cfg.views)
        ]
        self.transforms += [
            view_transform(aug, aug.local_size, data_cfg.mean, data_cfg.std, aug.local_scale)
            for _ in range(aug.local_views)
        ]
        plain = aug.plain_size or data_cfg.image_size
        self.transforms += [
            plain_transform(aug, plain, data_cfg.mean, data_cfg.std) for _ in range(aug.plain_views)
        ]

    def __call__(self, img: torch.Tensor, index: int, epoch: int) -> list[torch.Tensor]:
        from torch.utils.data import get_worker_info

        # A loader worker owns its RNG; only the main process must keep its stream untouched
        # (fork_rng costs ~40% of a small image's augmentation time).
        ctx = nullcontext() if get_worker_info() is not None else torch.random.fork_rng(devices=[])
        out = []
        with ctx:
            for v, t in enumerate(self.transforms):
                torch.manual_seed(view_seed(self.seed, epoch, index, v))
                out.append(t(img))
        return out
