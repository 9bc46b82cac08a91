"""``.beton`` writing, validation, caching, the beton source, and the FFCV multi-view loader."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

ffcv = pytest.importorskip("ffcv")
torch = pytest.importorskip("torch")

from selfsup.config import DataConfig, Recipe  # noqa: E402
from selfsup.data.beton import BetonSource, beton_info, sidecar_path, write_beton  # noqa: E402
from selfsup.data.beton_cache import ensure_beton  # noqa: E402
from selfsup.data.catalog import build_source  # noqa: E402
from selfsup.data.sources import Source  # noqa: E402
from selfsup.errors import DataError  # noqa: E402

from ..conftest import assert_user_error, run_cli  # noqa: E402

# numba's dispatcher finalizer may raise a harmless KeyError when FFCV's compiled code is
# garbage-collected (a known upstream quirk); it is not a failure.
pytestmark = [pytest.mark.ffcv, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


class ArraySource(Source):
    """In-memory images with a strong per-channel colour bias (a channel swap would show)."""

    name = "arrays"
    num_classes = 5

    def __init__(self, n: int = 96, size: int = 32, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size] / size
        imgs = np.empty((n, size, size, 3), np.float64)
        for i in range(n):
            a, b = rng.uniform(0.3, 1, 2)
            imgs[i, ..., 0] = 0.55 + 0.4 * a * np.sin(6 * xx + i)
            imgs[i, ..., 1] = 0.35 + 0.3 * b * np.cos(5 * yy + i)
            imgs[i, ..., 2] = 0.15 + 0.1 * (xx > 0.5)
        imgs += rng.normal(0, 0.03, imgs.shape)
        self.images = (np.clip(imgs, 0, 1) * 255).astype(np.uint8)
        self._labels = (np.arange(n) % self.num_classes).astype(np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self._labels[i])

    @property
    def labels(self) -> np.ndarray:
        return self._labels


class MixedSource(Source):
    """Different sizes and kinds: grey 2-D arrays, RGBA, a CMYK PIL image, float arrays."""

    name = "mixed"
    num_classes = 2

    def __init__(self) -> None:
        from PIL import Image

        rng = np.random.default_rng(3)
        self.items = [
            rng.integers(0, 256, (20, 30), dtype=np.uint8),  # greyscale
            rng.integers(0, 256, (17, 11, 4), dtype=np.uint8),  # RGBA
            Image.fromarray(rng.integers(0, 256, (9, 13, 4), dtype=np.uint8), mode="CMYK"),
            rng.uniform(0, 255, (12, 12, 3)),  # float
            rng.integers(0, 256, (40, 8, 3), dtype=np.uint8),
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i], i % 2


class LatentSource(ArraySource):
    """A source with 3DIEBench-style extras: latents(i), object_ids, view_ids."""

    def __init__(self) -> None:
        super().__init__(n=12, size=16)
        self.object_ids = np.arange(12) // 3
        self.view_ids = np.arange(12) % 3

    def latents(self, i: int) -> np.ndarray:
        return np.arange(7, dtype=np.float64) + i / 10


@pytest.fixture(scope="module")
def arrays() -> ArraySource:
    return ArraySource()


@pytest.fixture(scope="module")
def raw_beton(tmp_path_factory, arrays) -> str:
    out = tmp_path_factory.mktemp("beton") / "arrays-train.beton"
    write_beton(arrays, out, image_mode="raw", workers=1, split="train")
    return str(out)


def test_raw_round_trip(raw_beton, arrays):
    src = BetonSource(raw_beton)
    assert len(src) == len(arrays) and src.num_classes == 5 and src.name == "arrays"
    for i in range(len(arrays)):
        img, label = src[i]
        np.testing.assert_array_equal(img, arrays.images[i])
        assert label == arrays.labels[i]
    np.testing.assert_array_equal(src.labels, arrays.labels)
    np.testing.assert_array_equal(src.source_indices, np.arange(len(arrays)))
    info = beton_info(raw_beton)
    assert info["count"] == len(arrays) and info["schema"] == 1
    assert list(info["fields"]) == ["image", "label", "index"]
    assert info["sizes"]["min_hw"] == [32, 32] and info["sizes"]["raw"] == len(arrays)
    assert json.loads(sidecar_path(raw_beton).read_text())["fingerprint"] == info["fingerprint"]


def test_jpeg_mode_is_close(tmp_path, arrays):
    out = tmp_path / "a.beton"
    info = write_beton(arrays, out, image_mode="jpg", jpeg_quality=95, workers=1)
    assert info["sizes"]["jpeg"] == len(arrays)
    src = BetonSource(out)
    diff = np.abs(src[3][0].astype(int) - arrays.images[3].astype(int)).mean()
    other = np.abs(src[3][0].astype(int) - arrays.images[4].astype(int)).mean()
    assert diff < 8 and diff < other / 3, (diff, other)  # lossy (noise, 4:2:0 chroma) but the same image


def test_mixed_sizes_and_modes(tmp_path):
    source = MixedSource()
    info = write_beton(source, tmp_path / "m.beton", image_mode="raw", max_side=32, workers=1)
    src = BetonSource(tmp_path / "m.beton")
    assert info["count"] == 5 and info["sizes"]["max_hw"] == [32, 30]  # 40x8 shrunk to 32x6
    shapes = [src[i][0].shape for i in range(5)]
    assert shapes == [(20, 30, 3), (17, 11, 3), (9, 13, 3), (12, 12, 3), (32, 6, 3)]
    grey = src[0][0]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 0] == source.items[0]).all()
    np.testing.assert_array_equal(src[1][0], source.items[1][..., :3])  # alpha dropped


def _image_folder(root, corrupt: bool = True):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        d = root / "train" / c
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (10 + k, 12, 3), dtype=np.uint8)).save(d / f"{k}.png")
    bad = root / "train" / "dog" / "1_broken.jpg"
    if corrupt:
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return bad


def test_corrupt_image_fatal_or_skipped(tmp_path):
    from selfsup.data.sources import ImageFolderSource

    bad = _image_folder(tmp_path / "folder")
    src = ImageFolderSource(tmp_path / "folder", "train")
    out = tmp_path / "f.beton"
    with pytest.raises(DataError, match="1_broken.jpg"):
        write_beton(src, out, image_mode="jpg", workers=1, on_error="fatal")
    assert not out.exists() and not sidecar_path(out).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".f.beton")]  # no temp left

    info = write_beton(src, out, image_mode="raw", workers=2, on_error="skip")
    bad_index = [str(p) for p, _ in src.samples].index(str(bad))
    assert info["count"] == len(src) - 1
    assert [s["path"] for s in info["skipped"]] == [str(bad)] and info["skipped"][0]["index"] == bad_index
    b = BetonSource(out)
    assert bad_index not in set(b.source_indices.tolist())
    for row, i in enumerate(b.source_indices):
        np.testing.assert_array_equal(b[row][0], src[int(i)][0])
    assert json.loads(sidecar_path(out).read_text())["skipped"][0]["path"] == str(bad)


def test_truncated_old_schema_and_missing_sidecar_are_refused(tmp_path, raw_beton):
    import shutil

    trunc = tmp_path / "t.beton"
    shutil.copy(raw_beton, trunc)
    shutil.copy(sidecar_path(raw_beton), sidecar_path(trunc))
    beton_info(trunc)
    with open(trunc, "r+b") as f:
        f.truncate(os.path.getsize(trunc) - 1000)
    with pytest.raises(DataError, match="truncated"):
        beton_info(trunc)
    with pytest.raises(DataError, match="truncated"):
        BetonSource(trunc)
    proc = run_cli("data", "info", str(trunc))
    assert_user_error(proc, "truncated")

    old = tmp_path / "old.beton"
    shutil.copy(raw_beton, old)
    meta = json.loads(sidecar_path(raw_beton).read_text())
    sidecar_path(old).write_text(json.dumps({**meta, "schema": 0}))
    with pytest.raises(DataError, match="schema 0"):
        beton_info(old)

    lone = tmp_path / "lone.beton"
    shutil.copy(raw_beton, lone)
    with pytest.raises(DataError, match="no sidecar"):
        beton_info(lone)


def test_extras_latents_and_ids(tmp_path):
    source = LatentSource()
    info = write_beton(source, tmp_path / "l.beton", image_mode="raw", workers=1)
    assert info["fields"]["latent"] == {"type": "ndarray", "dtype": "<f8", "shape": [7]}
    src = BetonSource(tmp_path / "l.beton")
    np.testing.assert_allclose(src.latents(5), source.latents(5))
    np.testing.assert_array_equal(src.object_ids, source.object_ids)
    np.testing.assert_array_equal(src.view_ids, source.view_ids)


def test_ensure_beton_caches_and_beton_source_config(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA_CACHE", str(tmp_path / "cache"))
    cfg = DataConfig(source="digits", image_size=16, classes=[0, 1])
    path = ensure_beton(cfg, "test", image_mode="raw")
    assert path.parent == tmp_path / "cache" and path.name.startswith("digits-test-")
    mtime = path.stat().st_mtime_ns
    assert ensure_beton(cfg, "test", image_mode="raw") == path and path.stat().st_mtime_ns == mtime
    with open(path, "r+b") as f:  # damage it: rewritten on the next call
        f.truncate(100)
    assert ensure_beton(cfg, "test", image_mode="raw") == path and beton_info(path)["count"] > 0
    from selfsup.data.catalog import build_source as build_any

    ref = build_any(cfg, "test")
    src = build_source(DataConfig(source="beton", path=str(path)), "val")  # val and test are one split
    assert len(src) == len(ref) and set(np.unique(src.labels)) == {0, 1}
    np.testing.assert_array_equal(src[7][0], ref[7][0])
    with pytest.raises(DataError, match="split"):
        build_source(DataConfig(source="beton", path=str(path)), "train")
    pattern = str(path).replace("-test-", "-{split}-")
    assert len(build_any(DataConfig(source="beton", path=pattern), "test")) == len(ref)


def test_cli_write_and_info(tmp_path, capsys):
    from selfsup.cli import main

    out = tmp_path / "digits.beton"
    argv = ["data", "write", "--source", "digits", "--split", "test", "--out", str(out), "--mode", "raw"]
    assert main([*argv, "--image-size", "16", "--workers", "1", "--quiet"]) == 0
    assert "wrote 450 images" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "count:    450 images" in text and "16x16" in text and "index" in text
    assert (
        main(
            ["data", "write", "--source", "imagefolder", "--path", str(tmp_path / "none"), "--out", str(out)]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    assert_user_error(run_cli("data", "info", str(tmp_path / "missing.beton")), "not found")


# ---------------------------------------------------------------------------------------------
# The FFCV loader


def _recipe(path: str, batch: int = 16, local_views: int = 0) -> Recipe:
    from selfsup.data.bench import bench_recipe

    r = bench_recipe(size=32, batch_size=batch, workers=1, seed=3)
    r.data.source, r.data.path = "beton", path
    r.data.augment.solarize_p = 0.2
    r.data.augment.local_views, r.data.augment.local_size = local_views, 16
    return r


@pytest.fixture(scope="module")
def ffcv_loader(raw_beton):
    from selfsup.data.ffcv_loader import FFCVTrainLoader

    return FFCVTrainLoader(_recipe(raw_beton, local_views=1))


def _channel_stats(loader, batches: int = 4) -> tuple[np.ndarray, np.ndarray]:
    xs = []
    for k, b in enumerate(loader):
        xs.append(b["views"][0])
        if k + 1 == batches:
            break
    x = torch.cat(xs)
    return x.mean(dim=(0, 2, 3)).numpy(), x.std(dim=(0, 2, 3)).numpy()


@pytest.mark.timeout(180)
def test_ffcv_loader_batches_match_torchvision_loader(ffcv_loader, raw_beton, arrays):
    """Every pipeline builds (crop, flip, jitter, grayscale, blur, solarize, multi-crop) and the two
    loaders give the same samples, shapes, dtypes and comparable augmentation statistics."""
    from selfsup.data.torchvision_loader import TorchvisionTrainLoader

    recipe = _recipe(raw_beton, local_views=1)
    recipe.data.num_workers = 0  # in-process: no worker start-up per epoch
    tv = TorchvisionTrainLoader(recipe)
    assert len(ffcv_loader) == len(tv) == len(arrays) // 16
    ffcv_loader.set_epoch(0)
    tv.set_epoch(0)
    fb, tb = next(iter(ffcv_loader)), next(iter(tv))
    assert [tuple(v.shape) for v in fb["views"]] == [tuple(v.shape) for v in tb["views"]]
    assert [tuple(v.shape) for v in fb["views"]] == [(16, 3, 32, 32)] * 2 + [(16, 3, 16, 16)]
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in fb["views"])
    assert fb["label"].dtype == fb["index"].dtype == torch.long
    torch.testing.assert_close(fb["index"], tb["index"])  # same sharding, same samples
    torch.testing.assert_close(fb["label"], torch.from_numpy(arrays.labels[fb["index"].numpy()]))
    lo, hi = (0 - 0.485) / 0.229, (1 - 0.406) / 0.225
    assert fb["views"][0].min() >= lo - 1e-4 and fb["views"][0].max() <= hi + 1e-4
    assert not torch.equal(fb["views"][0], fb["views"][1])  # views differ

    fm, fs = _channel_stats(ffcv_loader)
    tm, ts = _channel_stats(tv)
    assert np.abs(fm - tm).max() < 0.25, (fm, tm)
    assert np.abs(fs - ts).max() < 0.25, (fs, ts)
    assert fm[0] > fm[1] > fm[2]  # the red-biased images stay red-biased: channels not swapped


@pytest.mark.timeout(180)
def test_ffcv_loader_epochs_resume_and_early_stop(ffcv_loader):
    n = len(ffcv_loader)
    ffcv_loader.set_epoch(2)
    full = [b["index"].clone() for b in ffcv_loader]
    assert len(full) == n
    ffcv_loader.set_epoch(2, skip_batches=3)
    tail = [b["index"] for b in ffcv_loader]
    assert len(tail) == n - 3 and all(torch.equal(a, b) for a, b in zip(full[3:], tail))
    for k, _ in enumerate(ffcv_loader):  # epoch 3 now; stop early without hanging
        if k == 1:
            break
    ffcv_loader.set_epoch(4)
    e4 = [b["index"] for b in ffcv_loader]
    assert len(e4) == n and not torch.equal(torch.cat(e4), torch.cat(full))


@pytest.mark.timeout(180)
def test_two_ranks_get_disjoint_shards_with_equal_steps(raw_beton, arrays):
    from selfsup.data.ffcv_loader import FFCVTrainLoader
    from selfsup.data.sharding import shard_positions

    recipe = _recipe(raw_beton, batch=20)  # the global batch: 10 per rank
    recipe.data.augment.jitter_p = recipe.data.augment.blur_p = recipe.data.augment.solarize_p = 0.0
    ranks = [FFCVTrainLoader(recipe, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(arrays) // 20
    seen = []
    for loader in ranks:
        loader.set_epoch(1)
        idx = torch.cat([b["index"] for b in loader]).numpy()
        assert len(idx) == len(loader) * 10 and len(set(idx)) == len(idx)
        seen.append(set(idx.tolist()))
    assert not seen[0] & seen[1]
    one = shard_positions(len(arrays), 20, 0, 1, recipe.seed, 1)  # one process, global batch
    assert seen[0] | seen[1] == set(one.tolist())


@pytest.mark.timeout(180)
def test_ffcv_plain_view_matches_torchvision(raw_beton, arrays):
    """The plain view (OBoW's teacher input): same centre crop in both loaders, after the others."""
    from selfsup.data.ffcv_loader import FFCVTrainLoader
    from selfsup.data.torchvision_loader import TorchvisionTrainLoader

    r = _recipe(raw_beton, batch=16)
    a = r.data.augment
    a.flip_p, a.jitter_p, a.grayscale_p, a.blur_p, a.solarize_p = 0.0, 0.0, 0.0, 0.0, 0.0
    r.data.views, a.plain_views, a.plain_size, a.plain_crop = 1, 1, 24, 0.75
    fbs = [next(iter(FFCVTrainLoader(r, pipeline=p))) for p in ("decode-once", "per-view")]
    r.data.num_workers = 0
    tb = next(iter(TorchvisionTrainLoader(r)))
    for fb in fbs:
        assert [tuple(v.shape) for v in fb["views"]] == [(16, 3, 32, 32), (16, 3, 24, 24)]
        torch.testing.assert_close(fb["index"], tb["index"])
        # Deterministic in all; only the resize filters differ (OpenCV area vs antialiased bilinear).
        diff = (fb["views"][1] - tb["views"][1]).abs()
        assert diff.mean() < 0.05 and diff.max() < 0.6, (diff.mean(), diff.max())


@pytest.mark.timeout(300)
def test_corrupt_record_is_refused_by_the_ffcv_loader_and_verify(tmp_path, raw_beton, capsys):
    """A record damaged in the middle of the file (where the sidecar's fingerprint of the file's
    ends cannot see it) is a one-line DataError in the FFCV loader and in ``data info --verify``."""
    import shutil

    from selfsup.cli import main
    from selfsup.data.beton import RowChecker
    from selfsup.data.ffcv_loader import FFCVTrainLoader

    bad = tmp_path / "bad-train.beton"
    shutil.copy(raw_beton, bad)
    shutil.copy(sidecar_path(raw_beton), sidecar_path(bad))
    checker = RowChecker(bad, beton_info(bad))
    assert checker.crcs is not None  # the writer recorded a checksum per row
    size, row = bad.stat().st_size, 40
    ptr = int(checker.meta[checker._image_field][row]["data_ptr"])
    assert 1 << 16 < ptr < size - (1 << 16)  # outside the fingerprinted ends
    data = bytearray(bad.read_bytes())
    data[ptr + 100] ^= 0xFF  # one pixel byte of row 40: a raw image decodes regardless
    bad.write_bytes(bytes(data))
    beton_info(bad)  # size and fingerprint still match: only the row checksums can tell

    loader = FFCVTrainLoader(_recipe(str(bad)))
    loader.set_epoch(0)
    with pytest.raises(DataError, match=f"row {row} is corrupt") as e:
        for _ in loader:
            pass
    assert "\n" not in str(e.value) and "--verify" in str(e.value)

    capsys.readouterr()
    assert main(["data", "info", "--verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"1 of 96 rows are corrupt (first: row {row}" in err
    assert main(["data", "info", "--verify", raw_beton]) == 0
    assert "96 rows (checksums and JPEG decoding): all rows intact" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_decode_once_is_seeded_and_thread_count_independent(raw_beton, capfd):
    """Two loaders, 1 and 2 threads: identical views (seeded per view); another epoch differs."""
    from selfsup.data.ffcv_loader import FFCVTrainLoader

    def views(workers: int, epoch: int) -> list:
        recipe = _recipe(raw_beton, local_views=1)
        recipe.data.num_workers = workers
        loader = FFCVTrainLoader(recipe)
        loader.set_epoch(epoch, skip_batches=1)
        return [torch.cat([v.reshape(len(v), -1) for v in b["views"]], 1) for b in loader]

    a, b = views(1, 2), views(2, 2)
    assert len(a) == len(b) == 96 // 16 - 1
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], views(1, 3)[0])
    # stored images smaller than the views: a clear warning, and the loader still works
    r = _recipe(raw_beton)
    r.data.image_size = 48
    loader = FFCVTrainLoader(r)
    assert "warning:" in capfd.readouterr().err
    assert next(iter(loader))["views"][0].shape == (16, 3, 48, 48)


@pytest.mark.timeout(300)
def test_per_view_pipeline_still_builds(raw_beton):
    """The previous pipeline (kept for `selfsup bench loader`): same batch format."""
    from selfsup.data.ffcv_loader import FFCVTrainLoader

    loader = FFCVTrainLoader(_recipe(raw_beton, local_views=1), pipeline="per-view")
    b = next(iter(loader))
    assert [tuple(v.shape) for v in b["views"]] == [(16, 3, 32, 32)] * 2 + [(16, 3, 16, 16)]
    with pytest.raises(Exception, match="pipeline"):
        FFCVTrainLoader(_recipe(raw_beton), pipeline="nope")
