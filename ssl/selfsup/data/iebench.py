"""Reader for 3DIEBench-layout folders: the real 3DIEBench and the procedural ``render3d`` datasets.

Layout (see ``datasets/3diebench.md``)::

    <root>/<class>/<object>/image_k.jpg, latent_k.npy    # 7 float64 latents per view
    <root>/{train,val}_{images,labels}.npy               # or in <root>/data/ (the SIE repository's place)

Split files hold object paths ``/<class>/<object>/`` and int64 labels (the index of the class in
the sorted list of class folder names). When they are missing, a deterministic per-class 80/20
object split is built (:func:`object_split`).

Three views of the data:

- :class:`IEBenchIndex`: the objects of one split and access to their files;
- :class:`IEBenchSource`: a :class:`~selfsup.data.sources.Source` of ``(image, label)`` for
  classification (one fixed view per object, a random one, a given one, or every view);
- :class:`~selfsup.data.iebench_pairs.IEBenchPairs` (its own module): two distinct views of one
  object with their relative rotation quaternion and colour deltas, SIE's training pairs.

Rotation convention (SIE, copied exactly): ``R_k = Rotation.from_euler("xyz", latent_k[:3])``
(lower-case = extrinsic) and the pair target is the scipy scalar-last quaternion of
``R_1^-1 R_2``, not sign-canonicalised. Colour deltas are raw differences of latents 3 and 6.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .sources import Source, to_rgb_uint8

NUM_LATENTS = 7
SPLIT_DIRS = (".", "data")  # where split files may live, relative to the root
DOWNLOAD_HINT = (
    "download 3DIEBench.tar.gz (about 17 GB, CC-BY-NC) from https://dl.fbaipublicfiles.com/SIE/, "
    "extract it and set data.path to the extracted 3DIEBench folder (see datasets/3diebench.md)"
)


def object_split(
    objects: dict[str, list[str]], val_fraction: float = 0.2, seed: int = 0
) -> dict[str, np.ndarray]:
    """A fixed per-class object split in 3DIEBench's split-file form.

    ``objects`` maps class folder name -> object folder names. Within each class, objects are
    sorted, shuffled by a generator keyed on (seed, class name), and ``round(val_fraction * n)``
    of them (at least one when the class has two or more) go to val. Returns arrays
    ``train_images``, ``train_labels``, ``val_images``, ``val_labels``; images are paths
    ``/<class>/<object>/`` and labels the class index in sorted class order.
    """
    out: dict[str, list] = {"train_images": [], "train_labels": [], "val_images": [], "val_labels": []}
    for label, cls in enumerate(sorted(objects)):
        objs = sorted(objects[cls])
        n = len(objs)
        n_val = min(max(int(round(val_fraction * n)), 1 if n >= 2 else 0), n - 1) if n else 0
        rng = np.random.default_rng([seed, zlib.crc32(cls.encode())])
        val = set(rng.permutation(n)[:n_val].tolist())
        for k, obj in enumerate(objs):
            part = "val" if k in val else "train"
            out[f"{part}_images"].append(f"/{cls}/{obj}/")
            out[f"{part}_labels"].append(label)
    return {
        k: (np.array(v, dtype=np.int64) if k.endswith("labels") else np.array(v, dtype=str))
        for k, v in out.items()
    }


def relative_quaternion(latent1: np.ndarray, latent2: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) of R1^-1 R2, R_k = Rotation.from_euler("xyz", latent_k[:3]).

    Works on single latents (7,) or stacks [N, 7]. Not sign-canonicalised (SIE's convention: about
    4% of random pairs have w < 0).
    """
    from scipy.spatial.transform import Rotation

    r1 = Rotation.from_euler("xyz", np.asarray(latent1, dtype=np.float64)[..., :3])
    r2 = Rotation.from_euler("xyz", np.asarray(latent2, dtype=np.float64)[..., :3])
    return (r1.inv() * r2).as_quat(canonical=False)


def color_delta(latent1: np.ndarray, latent2: np.ndarray) -> np.ndarray:
    """[floor_hue2 - floor_hue1, spot_hue2 - spot_hue1]: raw differences, no circular wrap (SIE)."""
    l1, l2 = np.asarray(latent1, dtype=np.float64), np.asarray(latent2, dtype=np.float64)
    return np.stack([l2[..., 3] - l1[..., 3], l2[..., 6] - l1[..., 6]], axis=-1)


def norm_split(split: str) -> str:
    if split == "train":
        return "train"
    if split in ("val", "test"):
        return "val"
    raise DataError(
        f"unknown split '{split}'; use train, val or test (test is val: 3DIEBench has no test split)"
    )


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError:
        # Split files saved as object arrays need pickle; they come with the dataset being read.
        try:
            return np.load(path, allow_pickle=True)
        except Exception as e:
            raise DataError(f"cannot read split file '{path}': {e}; restore or delete it") from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read split file '{path}': {e}; restore or delete it") from None


class IEBenchIndex:
    """The objects of one split of a 3DIEBench-layout folder, and access to their files.

    Attributes: ``root``, ``split`` (train or val), ``classes`` (sorted class folder names),
    ``paths`` (object paths ``/<class>/<object>/``), ``labels`` (int64), ``num_views``,
    ``manifest`` (the render3d parameters, or None for real 3DIEBench).
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        self.split = norm_split(split)
        if not self.root.is_dir():
            raise DataError(
                f"3DIEBench-layout folder '{self.root}' not found; render one with "
                f"`selfsup data render3d --out {self.root}`, or {DOWNLOAD_HINT}"
            )
        self.manifest = self._read_manifest()
        self.classes = sorted(
            d.name
            for d in os.scandir(self.root)
            if d.is_dir() and not d.name.startswith(".") and d.name != "data"
        )
        if not self.classes:
            raise DataError(
                f"'{self.root}' has no class folders; expected {self.root}/<class>/<object>/image_0.jpg "
                "(point data.path at the folder that holds the class folders)"
            )
        self.paths, self.labels = self._read_split()
        if len(self.paths) == 0:
            raise DataError(f"the {self.split} split of '{self.root}' is empty")
        self.num_views = self._count_views()

    # -- setup

    def _read_manifest(self) -> dict | None:
        path = self.root / "render3d.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise DataError(f"'{path}' is unreadable; delete '{self.root}' and render it again") from None

    def _read_split(self) -> tuple[np.ndarray, np.ndarray]:
        for sub in SPLIT_DIRS:
            folder = self.root / sub
            img_f, lab_f = folder / f"{self.split}_images.npy", folder / f"{self.split}_labels.npy"
            if img_f.is_file() or lab_f.is_file():
                if not (img_f.is_file() and lab_f.is_file()):
                    missing = lab_f if img_f.is_file() else img_f
                    raise DataError(
                        f"split file '{missing}' is missing; restore it, or delete both split files"
                    )
                paths = np.asarray(_load_array(img_f)).astype(str)
                labels = np.asarray(_load_array(lab_f)).astype(np.int64)
                if paths.ndim != 1 or labels.shape != paths.shape:
                    raise DataError(
                        f"split files '{img_f}' and '{lab_f}' disagree ({paths.shape} paths, "
                        f"{labels.shape} labels); restore them, or delete both to rebuild the split"
                    )
                if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
                    raise DataError(
                        f"'{lab_f}' has labels outside [0, {len(self.classes)}): the dataset under "
                        f"'{self.root}' is missing class folders"
                    )
                return paths, labels
        # No split files: a deterministic per-class 80/20 object split.
        objects = {
            c: [d.name for d in os.scandir(self.root / c) if d.is_dir() and not d.name.startswith(".")]
            for c in self.classes
        }
        split = object_split(objects)
        return split[f"{self.split}_images"], split[f"{self.split}_labels"]

    def _count_views(self) -> int:
        if self.manifest is not None and "views_per_object" in self.manifest:
            return int(self.manifest["views_per_object"])
        # Real 3DIEBench has 50 views for every object; count them once, in the first object.
        folder = self.object_dir(0)
        if not folder.is_dir():
            raise DataError(
                f"object folder '{folder}' is missing; the dataset under '{self.root}' is incomplete"
            )
        pattern = re.compile(r"image_(\d+)\.jpg$")
        ids = [int(m.group(1)) for name in os.listdir(folder) if (m := pattern.match(name))]
        if not ids:
            raise DataError(
                f"'{folder}' has no image_<k>.jpg files; the dataset under '{self.root}' is incomplete"
            )
        return max(ids) + 1

    # -- access

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def object_dir(self, i: int) -> Path:
        # Paths carry a leading "/" (3DIEBench's form); strip it so they join under the root.
        return self.root / str(self.paths[i]).strip("/")

    def image_path(self, i: int, view: int) -> Path:
        return self.object_dir(i) / f"image_{view}.jpg"

    def latent_path(self, i: int, view: int) -> Path:
        return self.object_dir(i) / f"latent_{view}.npy"

    def load_image(self, i: int, view: int, size: int | None = None) -> np.ndarray:
        """View ``view`` of object ``i`` as HWC uint8 RGB, resized to ``size`` x ``size`` if given."""
        from PIL import Image, UnidentifiedImageError

        path = self.image_path(i, view)
        try:
            with Image.open(path) as im:
                im.load()
                if size is not None and im.size != (size, size):
                    im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                return to_rgb_uint8(im)
        except FileNotFoundError:
            raise DataError(
                f"image '{path}' is missing; the dataset under '{self.root}' is incomplete"
            ) from None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise DataError(
                f"cannot read image '{path}' ({e}); the file is corrupt: re-extract or re-render the dataset"
            ) from None

    def load_latent(self, i: int, view: int) -> np.ndarray:
        """The latent vector (7,) float64 of view ``view`` of object ``i``."""
        path = self.latent_path(i, view)
        try:
            lat = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(
                f"latent file '{path}' is missing; the dataset under '{self.root}' is incomplete"
            ) from None
        except (OSError, ValueError, EOFError) as e:
            raise DataError(
                f"cannot read latent file '{path}' ({e}); the file is corrupt: re-extract or re-render the dataset"
            ) from None
        lat = np.asarray(lat).reshape(-1)
        if lat.size < NUM_LATENTS or not np.issubdtype(lat.dtype, np.floating):
            raise DataError(
                f"latent file '{path}' holds {lat.size} {lat.dtype} values, expected {NUM_LATENTS} floats; "
                "the file is corrupt: re-extract or re-render the dataset"
            )
        # Variants (e.g. 3DIEBench-T) append latents; the first 7 keep 3DIEBench's meaning.
        return lat[:NUM_LATENTS].astype(np.float64)


def check_size(image_size: int | None) -> int | None:
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 1):
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
    return None if image_size is None else int(image_size)


class IEBenchSource(Source):
    """``(image, label)`` items of a 3DIEBench-layout folder, for classification.

    ``view`` selects which render of each object an item shows:

    - ``"fixed"`` (default): one view per object, ``crc32(object path) % num_views``. Deterministic
      across runs, machines and processes (unlike Python's salted ``hash``), independent of the
      order of the split file, and spread evenly over views, so evaluations are reproducible;
    - ``"random"``: a fresh random view at every access, drawn from a generator seeded by ``seed``
      (SIE's classification protocol re-draws views every epoch);
    - an int ``k``: view ``k`` of every object;
    - ``"all"``: every view of every object is its own item (``len = objects x views``), for
      pretraining with image augmentations.

    Images are HWC uint8 RGB, resized to ``image_size`` if given. ``split="test"`` is val.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int | None = None,
        view: str | int = "fixed",
        seed: int = 0,
    ) -> None:
        self.index = IEBenchIndex(root, split)
        self.image_size = check_size(image_size)
        nv = self.index.num_views
        if isinstance(view, (int, np.integer)) and not isinstance(view, bool):
            if not 0 <= view < nv:
                raise DataError(f"view {view} out of range: '{root}' has {nv} views per object (0..{nv - 1})")
            view = int(view)
        elif view not in ("fixed", "random", "all"):
            raise DataError(f"unknown view '{view}'; use fixed, random, all or a view number")
        self.view = view
        self.rng = np.random.default_rng(seed)
        self.name = "render3d" if self.index.manifest is not None else "3diebench"
        self.num_classes = self.index.num_classes
        self.classes = self.index.classes
        self._fixed = np.array([zlib.crc32(str(p).encode()) % nv for p in self.index.paths], dtype=np.int64)

    def __len__(self) -> int:
        n = len(self.index)
        return n * self.index.num_views if self.view == "all" else n

    def locate(self, i: int) -> tuple[int, int]:
        """(object index, view) that item ``i`` shows (for ``"random"``, draws a view)."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self.view == "all":
            return divmod(int(i), self.index.num_views)
        if self.view == "fixed":
            return int(i), int(self._fixed[i])
        if self.view == "random":
            return int(i), int(self.rng.integers(self.index.num_views))
        return int(i), int(self.view)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        obj, view = self.locate(i)
        return self.index.load_image(obj, view, self.image_size), int(self.index.labels[obj])

    def path_of(self, i: int) -> Path:
        """The image file item ``i`` shows (for ``"random"``, of a freshly drawn view)."""
        return self.index.image_path(*self.locate(i))

    @property
    def labels(self) -> np.ndarray:
        if self.view == "all":
            return np.repeat(self.index.labels, self.index.num_views)
        return self.index.labels.copy()
