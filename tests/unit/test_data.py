"""Sources, augmentations and sharding of the torchvision loader."""

import numpy as np
import pytest
import torch

from selfsup.data.augment import MultiView, view_seed
from selfsup.data.catalog import build_source
from selfsup.data.sharding import ShardedBatchSampler, epoch_permutation
from selfsup.data.sources import DigitsSource, ImageFolderSource, to_rgb_uint8
from selfsup.data.torchvision_loader import TorchvisionTrainLoader
from selfsup.errors import DataError
from selfsup.recipe import load_recipe


def test_digits_fixed_split_and_format():
    tr, te = DigitsSource("train", 24), DigitsSource("test", 24)
    assert len(tr) == 1347 and len(te) == 450
    img, label = tr[0]
    assert img.shape == (24, 24, 3) and img.dtype == np.uint8 and 0 <= label < 10
    assert set(np.unique(tr.labels)) == set(range(10))
    assert np.array_equal(DigitsSource("train", 24).labels, tr.labels)  # deterministic split


def test_class_filter_and_fraction():
    r = load_recipe({"data": {"classes": [0, 1, 2], "train_fraction": 0.5}})
    src = build_source(r.data, "train")
    assert set(np.unique(src.labels)) <= {0, 1, 2}
    full = build_source(load_recipe({"data": {"classes": [0, 1, 2]}}).data, "train")
    assert abs(len(src) - len(full) / 2) <= 1


def test_views_shapes_ranges_and_determinism():
    r = load_recipe(
        {
            "data": {
                "image_size": 16,
                "views": 2,
                "augment": {"preset": "mocov2", "local_views": 2, "local_size": 8},
            }
        }
    )
    mv = MultiView(r.data, seed=0)
    img = torch.from_numpy(DigitsSource("train", 32)[3][0]).permute(2, 0, 1)
    views = mv(img, index=3, epoch=0)
    assert [tuple(v.shape) for v in views] == [(3, 16, 16)] * 2 + [(3, 8, 8)] * 2
    assert all(v.dtype == torch.float32 for v in views)
    mean, std = torch.tensor(r.data.mean), torch.tensor(r.data.std)
    lo, hi = (-mean / std).min().item(), ((1 - mean) / std).max().item()
    assert all(v.min() >= lo - 1e-4 and v.max() <= hi + 1e-4 for v in views)
    again = mv(img, index=3, epoch=0)
    assert all(torch.equal(a, b) for a, b in zip(views, again))  # seeded per (seed, epoch, index, view)
    assert not torch.equal(views[0], views[1])
    assert not torch.equal(mv(img, index=3, epoch=1)[0], views[0])
    # the global RNG is left untouched
    torch.manual_seed(0)
    a = torch.rand(1)
    torch.manual_seed(0)
    mv(img, 0, 0)
    assert torch.equal(torch.rand(1), a)


def test_view_seed_distinct():
    seeds = {view_seed(0, e, i, v) for e in range(3) for i in range(50) for v in range(3)}
    assert len(seeds) == 450


def test_sharding_two_ranks_concatenate_to_one():
    n, b = 103, 5
    one = list(ShardedBatchSampler(n, 2 * b, 0, 1, seed=7))
    r0 = list(ShardedBatchSampler(n, b, 0, 2, seed=7))
    r1 = list(ShardedBatchSampler(n, b, 1, 2, seed=7))
    assert len(one) == len(r0) == len(r1) == n // (2 * b)
    for g in range(len(one)):
        assert one[g] == r0[g] + r1[g]
    flat0 = {i for batch in r0 for i, _ in batch}
    flat1 = {i for batch in r1 for i, _ in batch}
    assert not flat0 & flat1
    s = ShardedBatchSampler(n, b, 0, 2, seed=7)
    s.set_epoch(1, skip_batches=3)
    later = list(s)
    assert len(later) == len(r0) - 3
    perm = epoch_permutation(n, 7, 1)
    assert [i for i, _ in later[0]] == list(perm[3 * 10 : 3 * 10 + 5])


def test_torchvision_loader_batch_format():
    r = load_recipe({"data": {"image_size": 16, "batch_size": 8, "train_fraction": 0.05}})
    loader = TorchvisionTrainLoader(r, 0, 1)
    batch = next(iter(loader))
    assert len(batch["views"]) == 2 and batch["views"][0].shape == (8, 3, 16, 16)
    assert batch["label"].dtype == torch.long and batch["index"].shape == (8,)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageFolderSource(tmp_path / "missing")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        ImageFolderSource(tmp_path)
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolderSource(tmp_path)
    from PIL import Image

    Image.new("L", (10, 12), 128).save(tmp_path / "train" / "cat" / "gray.png")
    Image.new("RGBA", (9, 9), (1, 2, 3, 4)).save(tmp_path / "train" / "cat" / "rgba.png")
    Image.new("CMYK", (8, 8)).save(tmp_path / "train" / "cat" / "cmyk.jpg")
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    src = ImageFolderSource(tmp_path)
    shapes = {}
    for i, (p, _) in enumerate(src.samples):
        if p.name == "broken.jpg":
            with pytest.raises(DataError, match="broken.jpg"):
                src[i]
        else:
            img, _ = src[i]
            shapes[p.name] = img.shape
    assert shapes == {"gray.png": (12, 10, 3), "rgba.png": (9, 9, 3), "cmyk.jpg": (8, 8, 3)}


def test_cifar_missing_explains_how_to_get_it(tmp_path):
    r = load_recipe({"data": {"source": "cifar10", "path": str(tmp_path)}})
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        build_source(r.data, "train")


def test_to_rgb_uint8_from_arrays():
    assert to_rgb_uint8(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_rgb_uint8(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    assert to_rgb_uint8(np.full((2, 2, 3), 300.0)).max() == 255


def test_unreadable_image_in_a_worker_is_one_clean_error(tmp_path):
    from PIL import Image

    (tmp_path / "train" / "a").mkdir(parents=True)
    for i in range(7):
        Image.new("RGB", (20, 20), (i, 0, 0)).save(tmp_path / "train" / "a" / f"{i}.png")
    (tmp_path / "train" / "a" / "bad.png").write_bytes(b"junk")
    r = load_recipe(
        {
            "data": {
                "source": "imagefolder",
                "path": str(tmp_path),
                "num_workers": 1,
                "batch_size": 8,
                "image_size": 16,
                "loader": "torchvision",
            }
        }
    )
    with pytest.raises(DataError) as e:
        for _ in TorchvisionTrainLoader(r):
            pass
    assert "bad.png" in str(e.value) and "Traceback" not in str(e.value)


def test_plain_view_is_a_centre_crop_resized_and_comes_last():
    r = load_recipe(
        {
            "data": {
                "image_size": 16,
                "augment": {
                    "preset": "mocov2",
                    "flip_p": 0.0,
                    "local_views": 1,
                    "local_size": 8,
                    "plain_views": 1,
                    "plain_size": 24,
                    "plain_crop": 0.75,
                },
            }
        }
    )
    mv = MultiView(r.data, seed=0)
    img = torch.from_numpy(DigitsSource("train", 32)[5][0]).permute(2, 0, 1)
    views = mv(img, index=5, epoch=0)
    assert [tuple(v.shape) for v in views] == [(3, 16, 16)] * 2 + [(3, 8, 8), (3, 24, 24)]
    from torchvision.transforms import v2 as T

    centre = img[:, 4:28, 4:28]  # 0.75 x 32 = 24 px square in the middle
    ref = T.Normalize(r.data.mean, r.data.std)(
        T.Resize((24, 24), antialias=True)(centre).to(torch.float32) / 255
    )
    torch.testing.assert_close(views[-1], ref, atol=1e-5, rtol=0)
    assert torch.equal(mv(img, index=5, epoch=3)[-1], views[-1])  # no randomness without flip
