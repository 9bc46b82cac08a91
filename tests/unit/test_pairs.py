"""View pairs (data.pairs): the draws, both loaders, sharding, and SIE/VICReg learning on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data.loaders import build_train_loader, ffcv_available
from selfsup.data.pairs import pair_views
from selfsup.data.render3d import render_dataset
from selfsup.recipe import load_recipe


def render_tiny(root: Path) -> Path:
    """3 classes x 6 objects x 4 views at 32 px (about a second)."""
    render_dataset(root, 3, 6, 4, 32, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return render_tiny(tmp_path_factory.mktemp("render") / "ds")


def pair_recipe(root: Path, method: dict | None = None, **data) -> dict:
    return {
        "seed": 3,
        "data": {
            "source": "render3d",
            "path": str(root),
            "pairs": True,
            "image_size": 32,
            "batch_size": 4,
            "loader": "torchvision",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.2, 0.2, 0.2],
            **data,
        },
        "model": {"backbone": "resnet18_vicreg", "width": 4},
        "method": method or {"name": "sie", "equi_dims": 16, "mlp": [32, 32, 32]},
        "optim": {"name": "adam", "lr": 1e-3, "lr_scaling": "none", "schedule": "constant"},
        "train": {"epochs": 1, "progress": False},
        "eval": {"run": []},
    }


def test_pair_views_are_distinct_uniform_and_deterministic():
    pos = np.arange(20000)
    v1, v2 = pair_views(0, 1, pos, 5)
    assert (v1 != v2).all() and v1.min() >= 0 and max(v1.max(), v2.max()) < 5
    counts = np.bincount(v1 * 5 + v2, minlength=25).reshape(5, 5)
    assert np.diag(counts).sum() == 0
    off = counts[~np.eye(5, dtype=bool)]
    assert (
        abs(off.mean() - 1000) < 1e-9 and off.min() > 850 and off.max() < 1150
    )  # 20 ordered pairs, 1000 each
    again = pair_views(0, 1, pos[::-1], 5)
    assert np.array_equal(again[0], v1[::-1]) and np.array_equal(again[1], v2[::-1])
    other = pair_views(0, 2, pos, 5)
    assert (other[0] != v1).mean() > 0.7  # a new epoch draws new views


def _epoch(loader, epoch: int) -> list[dict]:
    loader.set_epoch(epoch)
    return list(loader)


def test_pair_batches_carry_relative_rotation_and_colour(tiny):
    from selfsup.data.iebench import IEBenchIndex, color_delta, relative_quaternion

    recipe = load_recipe(pair_recipe(tiny))
    batches = _epoch(build_train_loader(recipe), 0)
    index = IEBenchIndex(tiny, "train")
    assert len(batches) == len(index) // 4
    seen = []
    for b in batches:
        assert [tuple(v.shape) for v in b["views"]] == [(4, 3, 32, 32)] * 2
        assert b["quat"].shape == (4, 4) and b["color_delta"].shape == (4, 2)
        for i in range(4):
            obj, (v1, v2) = int(b["index"][i]), b["view_ids"][i].tolist()
            assert v1 != v2 and int(b["label"][i]) == index.labels[obj]
            lat1, lat2 = index.load_latent(obj, v1), index.load_latent(obj, v2)
            assert np.allclose(b["quat"][i].numpy(), relative_quaternion(lat1, lat2), atol=1e-6)
            assert np.allclose(b["color_delta"][i].numpy(), color_delta(lat1, lat2), atol=1e-6)
            seen.append(obj)
    assert len(set(seen)) == len(seen)  # one pair per object per epoch
    # No augmentation: the first view is the stored render, resized and normalised.
    b = batches[0]
    obj, v1 = int(b["index"][0]), int(b["view_ids"][0, 0])
    img = torch.from_numpy(index.load_image(obj, v1, 32)).permute(2, 0, 1).float() / 255
    assert torch.allclose(b["views"][0][0], (img - 0.5) / 0.2, atol=1e-5)


def test_two_ranks_see_what_one_rank_sees(tiny):
    recipe = load_recipe(pair_recipe(tiny, batch_size=4))  # the global batch: 2 per rank on two
    one = _epoch(build_train_loader(recipe), 2)
    r0, r1 = (_epoch(build_train_loader(recipe, rank, 2), 2) for rank in (0, 1))
    assert len(r0[0]["index"]) == 2
    for a, b0, b1 in zip(one, r0, r1):
        for key in ("index", "view_ids", "quat"):
            assert torch.equal(a[key], torch.cat([b0[key], b1[key]])), key
        assert torch.equal(a["views"][1], torch.cat([b0["views"][1], b1["views"][1]]))


@pytest.mark.skipif(not ffcv_available(), reason="ffcv not installed")
def test_ffcv_pairs_equal_torchvision_pairs(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA_CACHE", str(tmp_path / "cache"))
    tv = _epoch(build_train_loader(load_recipe(pair_recipe(tiny, loader="torchvision"))), 1)
    ff = _epoch(build_train_loader(load_recipe(pair_recipe(tiny, loader="ffcv"))), 1)
    assert len(tv) == len(ff) > 0
    for a, b in zip(tv, ff):
        for key in ("index", "label", "view_ids"):
            assert torch.equal(a[key], b[key]), key
        assert torch.allclose(a["quat"], b["quat"], atol=1e-6) and torch.allclose(
            a["color_delta"], b["color_delta"]
        )
        # Stored at 32 px already: both decode the same JPEG without resizing.
        assert torch.allclose(a["views"][0], b["views"][0], atol=1e-4)


@pytest.mark.parametrize(
    "method",
    [
        {"name": "sie", "equi_dims": 16, "mlp": [32, 32, 32]},
        {
            "name": "sie",
            "equi_dims": 16,
            "mlp": [32, 32, 32],
            "transform": "rotation_color",
            "hypernetwork": "deep",
        },
        {"name": "sie", "only_equi": True, "mlp": [32, 32, 32], "pred_variance": False},
        {"name": "vicreg", "mlp": [32, 32, 32], "sim_coeff": 10.0, "std_coeff": 10.0},
    ],
    ids=["sie", "sie_rotcolor_deep", "sie_onlyequi_novar", "vicreg"],
)
def test_a_few_steps_on_tiny_renders_lower_the_loss(tiny, method):
    from selfsup.methods import build_method

    torch.manual_seed(0)
    recipe = load_recipe(pair_recipe(tiny, method, batch_size=8))
    batch = next(iter(build_train_loader(recipe)))
    model = build_method(recipe)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
