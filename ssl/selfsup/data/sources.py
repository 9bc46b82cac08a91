"""Image sources: each yields ``(image, label)`` with ``image`` an HWC uint8 RGB numpy array.

Sources are plain map-style datasets so that one writer (``.beton``) and one torchvision loader
serve them all. Nothing is downloaded: a missing dataset raises :class:`DataError` saying how to
obtain it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

IMG_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


class Source:
    """A map-style dataset of ``(HWC uint8 RGB array, int label)`` pairs."""

    num_classes: int = 0
    name: str = "source"

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def labels(self) -> np.ndarray:
        return np.array([self[i][1] for i in range(len(self))], dtype=np.int64)


class InMemorySource(Source):
    """A source held as arrays: ``images`` ``[N, H, W, 3]`` uint8 and ``_labels`` ``[N]`` int64."""

    images: np.ndarray
    _labels: np.ndarray

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self._labels[i])

    @property
    def labels(self) -> np.ndarray:
        return self._labels


def to_rgb_uint8(img) -> np.ndarray:
    """Convert a PIL image (any mode) or an array to an HWC uint8 RGB array."""
    from PIL import Image

    if isinstance(img, Image.Image):
        if img.mode != "RGB":
            img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "LA") else img.convert("RGB")
        return np.asarray(img, dtype=np.uint8).copy()
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


class DigitsSource(InMemorySource):
    """scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes), upscaled to RGB.

    The split is fixed (stratified, seed 0): 1,347 train / 450 test images. Embedded in
    scikit-learn, so it needs no download: the demo's default data.
    """

    name = "digits"
    num_classes = 10

    def __init__(self, split: str = "train", image_size: int = 32) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        idx = np.arange(len(digits.target))
        tr, te = train_test_split(idx, test_size=450, random_state=0, stratify=digits.target)
        keep = np.sort(tr if split == "train" else te)
        imgs = digits.images[keep] / 16.0  # [N, 8, 8] in [0, 1]
        self._labels = digits.target[keep].astype(np.int64)
        self.images = _upscale(imgs, image_size)


def _upscale(imgs: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upscale of grayscale [N, h, w] in [0, 1] to RGB uint8 [N, size, size, 3]."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(imgs).float()[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    arr = (t.clamp(0, 1) * 255).round().byte()[:, 0].numpy()
    return np.repeat(arr[..., None], 3, axis=3)


class ImageFolderSource(Source):
    """``root/<split>/<class>/<image>``, with ``split`` = train, and val or test for evaluation."""

    name = "imagefolder"

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"image folder '{root}' not found; point data.path at a folder holding train/<class>/*.jpg "
                "and val/<class>/*.jpg"
            )
        names = ["train"] if split == "train" else ["val", "test"]
        split_dir = next((root / n for n in names if (root / n).is_dir()), None)
        if split_dir is None:
            raise DataError(
                f"'{root}' has no {' or '.join(names)}/ folder; expected {root}/{names[0]}/<class>/*.jpg"
            )
        classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
        if not classes:
            raise DataError(f"'{split_dir}' has no class folders; expected {split_dir}/<class>/<image>.jpg")
        self.classes = classes
        self.num_classes = len(classes)
        self.samples: list[tuple[Path, int]] = []
        for c, name in enumerate(classes):
            for p in sorted((split_dir / name).rglob("*")):
                if p.suffix.lower() in IMG_EXTS:
                    self.samples.append((p, c))
        if not self.samples:
            raise DataError(f"'{split_dir}' contains no images ({', '.join(sorted(IMG_EXTS))})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                im.load()
                return to_rgb_uint8(im), label
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read image '{path}': {e}; remove or replace the file") from None

    @property
    def labels(self) -> np.ndarray:
        return np.array([c for _, c in self.samples], dtype=np.int64)


class CIFARSource(InMemorySource):
    """CIFAR-10/100 from the python pickles in a local folder (no download)."""

    def __init__(self, root: str | Path | None, split: str = "train", num_classes: int = 10) -> None:
        import torchvision

        self.name = f"cifar{num_classes}"
        self.num_classes = num_classes
        folder = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
        archive = "cifar-10-python.tar.gz" if num_classes == 10 else "cifar-100-python.tar.gz"
        if root is None or not (Path(root) / folder).is_dir():
            raise DataError(
                f"CIFAR-{num_classes} not found: expected '{Path(root or '<data.path>') / folder}'. "
                f"Download {archive} from https://www.cs.toronto.edu/~kriz/cifar.html, extract it into "
                "that folder and set data.path (see datasets/cifar.md)"
            )
        cls = torchvision.datasets.CIFAR10 if num_classes == 10 else torchvision.datasets.CIFAR100
        try:
            ds = cls(str(root), train=(split == "train"), download=False)
        except RuntimeError as e:
            raise DataError(f"CIFAR-{num_classes} under '{root}' is incomplete or corrupt: {e}") from None
        self.images = ds.data  # [N, 32, 32, 3] uint8
        self._labels = np.asarray(ds.targets, dtype=np.int64)


class Subset(Source):
    """A subset of another source, by indices (class filtering, fractions)."""

    def __init__(self, base: Source, indices: np.ndarray) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_classes = base.num_classes
        self.name = base.name

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[int(self.indices[i])]

    @property
    def labels(self) -> np.ndarray:
        return self.base.labels[self.indices]
