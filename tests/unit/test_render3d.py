"""render3d (procedural 3DIEBench stand-in) and the 3DIEBench-layout reader."""

from __future__ import annotations

import colorsys
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from selfsup.data import catalog, iebench, render3d
from selfsup.data.iebench import IEBenchIndex, IEBenchSource, relative_quaternion
from selfsup.data.iebench_pairs import IEBenchPairs
from selfsup.data.render3d import render_dataset, render_view, sample_latents, sample_shape
from selfsup.data.render3d import writer as render3d_writer
from selfsup.errors import DataError

CLASSES, OBJECTS, VIEWS, SIZE = 10, 20, 4, 32


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    """10 classes x 20 objects x 4 views at 32 px (800 images, a few seconds)."""
    root = tmp_path_factory.mktemp("r3d") / "ds"
    stats = render_dataset(root, CLASSES, OBJECTS, VIEWS, SIZE, seed=0, progress=False)
    assert stats["images"] == CLASSES * OBJECTS * VIEWS and not stats["cached"]
    return root


def _tiny(path: Path, seed: int = 0, workers: int = 1, **kw) -> Path:
    args = dict(num_classes=2, objects_per_class=2, views_per_object=2, size=16)
    args.update(kw)
    render_dataset(path, seed=seed, workers=workers, progress=False, **args)
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hue_dist(a: float, b: float) -> float:
    return abs((a - b + 0.5) % 1.0 - 0.5)


# --------------------------------------------------------------------------------------------
# Layout, latents, splits, cache


def test_layout_and_latent_ranges(ds):
    classes = sorted(p.name for p in ds.iterdir() if p.is_dir())
    assert classes == sorted(render3d.CLASSES[:CLASSES])
    lat = []
    for c in classes:
        objs = sorted((ds / c).iterdir())
        assert len(objs) == OBJECTS
        for o in objs:
            names = {p.name for p in o.iterdir()}
            assert names == {f"image_{k}.jpg" for k in range(VIEWS)} | {
                f"latent_{k}.npy" for k in range(VIEWS)
            }
            for k in range(VIEWS):
                x = np.load(o / f"latent_{k}.npy")
                assert x.shape == (7,) and x.dtype == np.float64
                lat.append(x)
    from PIL import Image

    with Image.open(ds / classes[0] / "obj0000" / "image_0.jpg") as im:
        assert im.size == (SIZE, SIZE) and im.mode == "RGB"
    lat = np.stack(lat)
    half_pi = math.pi / 2
    lo = [-half_pi] * 3 + [0, 0, 0, 0]
    hi = [half_pi] * 3 + [1, math.pi / 4, 2 * math.pi, 1]
    assert (lat >= lo).all() and (lat <= hi).all()
    # Spread over the whole range (uniform draws), not a constant or a sub-range.
    assert (lat.min(0) < np.array(lo) + 0.1 * (np.array(hi) - lo)).all()
    assert (lat.max(0) > np.array(hi) - 0.1 * (np.array(hi) - lo)).all()


def test_split_files(ds):
    classes = sorted(p.name for p in ds.iterdir() if p.is_dir())
    seen = set()
    for split, n_per_class in (("train", 16), ("val", 4)):
        paths = np.load(ds / f"{split}_images.npy")
        labels = np.load(ds / f"{split}_labels.npy")
        assert labels.dtype == np.int64 and len(paths) == len(labels) == n_per_class * CLASSES
        for p, y in zip(paths, labels):
            assert p.startswith("/") and p.endswith("/")
            cls, obj = p.strip("/").split("/")
            assert classes.index(cls) == y and (ds / cls / obj).is_dir()
            assert p not in seen
            seen.add(p)
    assert len(seen) == CLASSES * OBJECTS


def test_render_is_deterministic_and_independent_of_workers(tmp_path):
    a = _files(_tiny(tmp_path / "a", seed=3))
    b = _files(_tiny(tmp_path / "b", seed=3, workers=2))
    c = _files(_tiny(tmp_path / "c", seed=4))
    assert a == b
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert all(a[k] != c[k] for k in jpgs)


def test_rerun_is_a_noop_and_other_params_are_refused(tmp_path):
    out = _tiny(tmp_path / "ds")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    stats = render_dataset(out, 2, 2, 2, 16, progress=False)
    assert stats["cached"] and stats["images"] == 8
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    with pytest.raises(DataError, match="other parameters.*delete"):
        render_dataset(out, 2, 2, 2, 32, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a render3d dataset"):
        render_dataset(tmp_path / "other", 2, 2, 2, 16, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "other"]  # no temp folders left


def test_interrupted_render_leaves_no_dataset(tmp_path, monkeypatch):
    calls = []

    def fail_on_third(task):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task)

    real = render3d_writer._render_object
    monkeypatch.setattr(render3d_writer, "_render_object", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(tmp_path / "ds", 2, 2, 2, 16, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_render_arguments():
    with pytest.raises(DataError, match="num_classes"):
        render_dataset("/nonexistent/x", num_classes=len(render3d.CLASSES) + 1)
    with pytest.raises(DataError, match="objects_per_class"):
        render_dataset("/nonexistent/x", objects_per_class=1)


# --------------------------------------------------------------------------------------------
# What the images encode


def _latent(rot=(0.3, -0.4, 0.5), floor=0.1, theta=0.3, phi=1.0, spot=0.6) -> np.ndarray:
    return np.array([*rot, floor, theta, phi, spot], dtype=np.float64)


def test_rotation_changes_the_image_and_identical_latents_do_not():
    shape = sample_shape("chair", np.random.default_rng(1))
    a = render_view(shape, _latent(), 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render_view(shape, _latent(), 64))
    for axis in range(3):
        rot = np.array([0.3, -0.4, 0.5])
        rot[axis] += 0.3
        b = render_view(shape, _latent(rot=rot), 64)
        changed = np.abs(a.astype(int) - b.astype(int)).max(2) > 20
        assert changed.mean() > 0.01, f"rotating about axis {axis} barely changes the image"


def test_light_direction_changes_the_image():
    shape = sample_shape("box", np.random.default_rng(2))
    a = render_view(shape, _latent(theta=0.6, phi=0.0), 48).astype(int)
    b = render_view(shape, _latent(theta=0.6, phi=math.pi), 48).astype(int)
    assert (np.abs(a - b).max(2) > 20).mean() > 0.05


def test_floor_hue_latent_sets_the_floor_colour():
    # With the spot overhead (theta = 0), the far floor corners are outside the spot cone, so their
    # colour is the floor albedo HSV(h, 0.6, 0.6) under white ambient light: the same hue.
    shape = sample_shape("mug", np.random.default_rng(3))
    for h in np.linspace(0.0, 0.95, 9):
        img = render_view(shape, _latent(floor=h, theta=0.0, spot=(h + 0.5) % 1), 32)
        for px in (img[0, 0], img[0, -1]):
            hue, sat, val = colorsys.rgb_to_hsv(*(px / 255.0))
            assert _hue_dist(hue, h) < 0.02, (h, hue)
            assert abs(sat - 0.6) < 0.05
            assert abs(val - 0.6 * render3d.AMBIENT) < 0.02


def test_spot_hue_tints_lit_pixels_only():
    shape = sample_shape("box", np.random.default_rng(4))
    a = render_view(shape, _latent(theta=0.0, spot=0.0), 32).astype(int)
    b = render_view(shape, _latent(theta=0.0, spot=0.5), 32).astype(int)
    diff = np.abs(a - b).max(2)
    assert diff[12:20, 12:20].mean() > 30  # the centre is in the spot
    assert diff[0, 0] == 0 and diff[0, -1] == 0  # the far corners are not
    # Under a red light (hue 0) the centre is redder than under a cyan one (hue 0.5).
    assert (a[12:20, 12:20, 0] - a[12:20, 12:20, 2]).mean() > (b[12:20, 12:20, 0] - b[12:20, 12:20, 2]).mean()


def _images(ds):
    xs, ys, groups = [], [], []
    for split in ("train", "val"):
        src = IEBenchSource(ds, split, view="all")
        for i in range(len(src)):
            img, y = src[i]
            xs.append(img)
            ys.append(y)
            groups.append(f"{split}/{i // VIEWS}")
    return np.stack(xs).astype(np.float32) / 255, np.array(ys), np.array(groups)


def test_class_is_not_given_away_by_mean_colour_but_shape_is_learnable(ds):
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, groups = _images(ds)
    cv = GroupKFold(5)  # views of one object never straddle train and test folds

    mean_rgb = x.mean((1, 2))
    acc_mean = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), mean_rgb, y, cv=cv, groups=groups
    ).mean()
    # Downsampled edge magnitudes (16 x 16) with a linear classifier: sees shape, ignores hue.
    gray = x.mean(3)
    gy, gx = np.gradient(gray, axis=(1, 2))
    edges = np.hypot(gx, gy).reshape(len(x), 16, 2, 16, 2).mean((2, 4)).reshape(len(x), -1)
    acc_pix = cross_val_score(
        make_pipeline(StandardScaler(), RidgeClassifier(alpha=1000.0)), edges, y, cv=cv, groups=groups
    ).mean()
    assert acc_mean < 0.25, f"mean colour predicts the class ({acc_mean:.2f}; chance 0.10)"
    assert acc_pix > acc_mean + 0.1 and acc_pix > 0.25, (acc_pix, acc_mean)


# --------------------------------------------------------------------------------------------
# Reader: pairs, sources, splits


def _euler_xyz_extrinsic(a: np.ndarray) -> np.ndarray:
    """Rotation matrix of extrinsic x, then y, then z rotations, written out by hand."""
    cx, sx = math.cos(a[0]), math.sin(a[0])
    cy, sy = math.cos(a[1]), math.sin(a[1])
    cz, sz = math.cos(a[2]), math.sin(a[2])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(x, y, z, w) of a rotation matrix, up to sign (Shepperd's case analysis)."""
    tr = np.trace(m)
    cands = [
        np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], 1 + tr]),
        np.array([1 + 2 * m[0, 0] - tr, m[0, 1] + m[1, 0], m[0, 2] + m[2, 0], m[2, 1] - m[1, 2]]),
        np.array([m[0, 1] + m[1, 0], 1 + 2 * m[1, 1] - tr, m[1, 2] + m[2, 1], m[0, 2] - m[2, 0]]),
        np.array([m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], 1 + 2 * m[2, 2] - tr, m[1, 0] - m[0, 1]]),
    ]
    # Each candidate is 4 q_k q, for the component k it is built on; use the best-conditioned one.
    own = [cands[0][3], cands[1][0], cands[2][1], cands[3][2]]
    q = cands[int(np.argmax(own))]
    return q / np.linalg.norm(q)


def test_pair_quaternion_matches_hand_computation(ds):
    pairs = IEBenchPairs(ds, "train", rng=np.random.default_rng(0))
    for i in range(0, len(pairs), 7):
        item = pairs[i]
        v1, v2 = item["views"]
        assert v1 != v2
        obj = ds / str(pairs.index.paths[i]).strip("/")
        l1, l2 = np.load(obj / f"latent_{v1}.npy"), np.load(obj / f"latent_{v2}.npy")
        np.testing.assert_array_equal(item["latent1"], l1)
        np.testing.assert_array_equal(item["latent2"], l2)
        rel = _euler_xyz_extrinsic(l1[:3]).T @ _euler_xyz_extrinsic(l2[:3])
        q_hand = _matrix_to_quat(rel)
        q = item["quat"]
        assert q.shape == (4,)
        assert min(np.abs(q - q_hand).max(), np.abs(q + q_hand).max()) < 1e-9
        # Exactly scipy's composition, sign included (no canonicalisation).
        r1, r2 = Rotation.from_euler("xyz", l1[:3]), Rotation.from_euler("xyz", l2[:3])
        np.testing.assert_allclose(q, (r1.inv() * r2).as_quat(), atol=1e-12)
        np.testing.assert_array_equal(item["color_delta"], [l2[3] - l1[3], l2[6] - l1[6]])
        assert item["label"] == pairs.index.labels[i] and item["index"] == i
        assert item["img1"].shape == (SIZE, SIZE, 3) and item["img1"].dtype == np.uint8


def test_relative_quaternion_is_not_sign_canonicalised():
    lat = sample_latents(np.random.default_rng(0), 400)
    q = relative_quaternion(lat[:200], lat[200:])
    ref = (
        Rotation.from_euler("xyz", lat[:200, :3]).inv() * Rotation.from_euler("xyz", lat[200:, :3])
    ).as_quat(canonical=False)
    np.testing.assert_allclose(q, ref, atol=1e-12)
    assert (q[:, 3] < 0).any(), "expected some w < 0 (scipy does not canonicalise by default)"


def test_colour_deltas_are_raw_differences():
    l1 = _latent(floor=0.95, spot=0.05)
    l2 = _latent(floor=0.05, spot=0.95)
    np.testing.assert_allclose(iebench.color_delta(l1, l2), [-0.9, 0.9])  # no circular wrap to +-0.1


def test_pairs_are_reproducible_with_a_seeded_generator(ds):
    a = IEBenchPairs(ds, "val", rng=np.random.default_rng(5))
    b = IEBenchPairs(ds, "val", rng=np.random.default_rng(5))
    va = [tuple(a[i]["views"]) for i in range(len(a))]
    assert va == [tuple(b[i]["views"]) for i in range(len(b))]
    assert all(x != y for x, y in va) and len(set(va)) > 1
    item = a.pair(0, 1, 3)
    assert list(item["views"]) == [1, 3]


def test_source_views_and_resizing(ds):
    n_train = CLASSES * 16
    fixed = IEBenchSource(ds, "train")
    assert len(fixed) == n_train and fixed.num_classes == CLASSES
    views = [fixed.locate(i)[1] for i in range(len(fixed))]
    assert views == [IEBenchSource(ds, "train").locate(i)[1] for i in range(len(fixed))]
    assert len(set(views)) > 1  # the fixed view varies across objects
    img, label = fixed[5]
    np.testing.assert_array_equal(img, fixed.index.load_image(5, views[5]))
    assert label == fixed.labels[5]

    every = IEBenchSource(ds, "train", image_size=16, view="all")
    assert len(every) == n_train * VIEWS
    np.testing.assert_array_equal(every.labels, np.repeat(fixed.labels, VIEWS))
    img, _ = every[VIEWS * 5 + 2]
    assert every.locate(VIEWS * 5 + 2) == (5, 2)
    assert every.path_of(VIEWS * 5 + 2) == ds / str(every.index.paths[5]).strip("/") / "image_2.jpg"
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8

    third = IEBenchSource(ds, "test", view=2)
    assert len(third) == CLASSES * 4 and third.locate(3) == (3, 2)
    np.testing.assert_array_equal(third.labels, np.load(ds / "val_labels.npy"))


def test_missing_split_files_give_a_deterministic_split(ds, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ds, copy)
    for name in ("train_images", "val_images", "train_labels", "val_labels"):
        (copy / f"{name}.npy").unlink()
    (copy / "render3d.json").unlink()  # now it looks like real 3DIEBench: views are counted
    a, b = IEBenchIndex(copy, "train"), IEBenchIndex(copy, "train")
    val = IEBenchIndex(copy, "val")
    np.testing.assert_array_equal(a.paths, b.paths)
    assert len(a) == CLASSES * 16 and len(val) == CLASSES * 4
    assert not set(a.paths) & set(val.paths)
    assert a.manifest is None and a.num_views == VIEWS
    for i in range(len(a)):
        assert a.paths[i].split("/")[1] == a.classes[a.labels[i]]
    # Split files in data/ (where the SIE repository keeps them) are found too, object arrays included.
    (copy / "data").mkdir()
    np.save(copy / "data" / "train_images.npy", a.paths[:5].astype(object), allow_pickle=True)
    np.save(copy / "data" / "train_labels.npy", a.labels[:5])
    np.save(copy / "data" / "val_images.npy", val.paths[:2])
    np.save(copy / "data" / "val_labels.npy", val.labels[:2])
    assert len(IEBenchIndex(copy, "train")) == 5 and IEBenchIndex(copy, "train").num_classes == CLASSES
    from selfsup.config import DataConfig

    src = catalog.build_source(DataConfig(source="3diebench", path=str(copy), image_size=8), "val")
    assert src.name == "3diebench" and len(src) == 2 and src[1][0].shape == (8, 8, 3)


def test_build_source(ds):
    from selfsup.config import DataConfig
    from selfsup.data.catalog import build_source

    train = build_source(DataConfig(source="render3d", path=str(ds), image_size=16), "train")
    val = build_source(DataConfig(source="render3d", path=str(ds), image_size=16), "val")
    assert len(train) == CLASSES * 16 * VIEWS and len(val) == CLASSES * 4
    assert train[0][0].shape == (16, 16, 3) and train.num_classes == CLASSES


def test_default_render3d_dataset_is_rendered_on_first_use(tmp_path, monkeypatch):
    from selfsup.config import DataConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        catalog,
        "DEFAULT_RENDER3D",
        {"num_classes": 2, "objects_per_class": 5, "views_per_object": 2, "size": 16, "seed": 0},
    )
    src = catalog.build_source(DataConfig(source="render3d", image_size=16), "train")
    assert (tmp_path / "datasets" / "render3d" / "render3d.json").is_file()
    assert len(src) == 2 * 4 * 2
    again = catalog.build_source(DataConfig(source="render3d", image_size=16), "val")  # cached
    assert len(again) == 2 * 1


def test_sample_grid(ds, tmp_path):
    from PIL import Image

    path = render3d.save_sample_grid(ds, tmp_path / "grid.png", views=3, cell=24)
    with Image.open(path) as im:
        assert im.size == (72 + 3 * 24, CLASSES * 24)


# --------------------------------------------------------------------------------------------
# Errors


def test_errors_on_missing_data(tmp_path):
    from selfsup.config import DataConfig

    with pytest.raises(DataError, match="not found"):
        IEBenchSource(tmp_path / "nope")
    with pytest.raises(DataError, match="dl.fbaipublicfiles.com/SIE"):
        catalog.build_source(DataConfig(source="3diebench", path=None), "train")
    with pytest.raises(DataError, match="dl.fbaipublicfiles.com/SIE"):
        catalog.build_source(DataConfig(source="3diebench", path=str(tmp_path / "nope")), "train")
    with pytest.raises(DataError, match="selfsup data render3d"):
        catalog.build_source(DataConfig(source="render3d", path=str(tmp_path / "nope")), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        IEBenchSource(tmp_path / "empty")


def test_errors_on_bad_arguments(tmp_path):
    root = _tiny(tmp_path / "ds")
    with pytest.raises(DataError, match="split"):
        IEBenchSource(root, "training")
    with pytest.raises(DataError, match="view"):
        IEBenchSource(root, view="middle")
    with pytest.raises(DataError, match="out of range"):
        IEBenchSource(root, view=2)


def test_errors_on_corrupt_files(tmp_path):
    root = _tiny(tmp_path / "ds")
    src = IEBenchSource(root, "train", view=0)
    pairs = IEBenchPairs(root, "train", rng=0)
    image = src.index.image_path(0, 0)
    image.write_bytes(image.read_bytes()[: len(image.read_bytes()) // 2])  # truncated JPEG
    with pytest.raises(DataError, match=f"cannot read image '{image}'"):
        src[0]
    image.unlink()
    with pytest.raises(DataError, match=f"image '{image}' is missing"):
        src[0]
    latent = pairs.index.latent_path(1, 1)
    latent.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"cannot read latent file '{latent}'"):
        pairs.pair(1, 0, 1)
    np.save(latent, np.zeros(3))
    with pytest.raises(DataError, match="expected 7"):
        pairs.pair(1, 0, 1)
    latent.unlink()
    with pytest.raises(DataError, match="is missing"):
        pairs.pair(1, 0, 1)
