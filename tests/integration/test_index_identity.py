"""The index knows its data: the old/new-data upgrade of issue 11, through the CLI.

An old model's recipe trained on digits 0-4; a newer, compatible model's recipe on all digits.
``index build --ckpt old`` embeds the old recipe's test data (226 items). ``index upgrade --ckpt new``
must embed the *index's* items (not the new recipe's 450), so every upgraded slot holds the new
model's embedding of the very item it held before. The encoders are untrained (export_encoder of a
fresh backbone): which items get embedded does not depend on training.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ..conftest import tiny_recipe

pytestmark = pytest.mark.slow


def _encoder(path, classes, seed, compatible_with=()):
    from selfsup.config import to_dict
    from selfsup.models.backbones import create_backbone
    from selfsup.models.export import arch_dict, export_encoder, fingerprint
    from selfsup.recipe import load_recipe

    recipe = load_recipe(tiny_recipe(**{"data.classes": classes}))
    torch.manual_seed(seed)
    enc = create_backbone(recipe.model).eval()
    fp = fingerprint(enc)
    info = {"model_id": path.stem, "fingerprint": fp, "recipe": to_dict(recipe)}
    if compatible_with:
        info["compatible_with"] = list(compatible_with)
    export_encoder(path, enc, arch_dict(recipe.model), info)
    return fp


def _stored(index_dir) -> tuple[dict, np.ndarray]:
    import faiss

    meta = json.loads((index_dir / "index.json").read_text())
    idx = faiss.read_index(str(index_dir / meta["index_file"]))
    return meta, faiss.rev_swig_ptr(idx.get_xb(), idx.ntotal * idx.d).reshape(idx.ntotal, idx.d).copy()


def _normalised_features(ckpt, classes):
    from selfsup.config import DataConfig
    from selfsup.data.catalog import build_source
    from selfsup.data.embed import extract_features
    from selfsup.models.export import load_encoder

    enc, info = load_encoder(ckpt)
    cfg = DataConfig(**{**info["recipe"]["data"], "augment": DataConfig().augment, "classes": classes})
    f, y = extract_features(enc, build_source(cfg, "test"), cfg, progress=False)
    return f / np.linalg.norm(f, axis=1, keepdims=True), y


def test_upgrade_embeds_the_index_items_not_the_new_recipe_data(tmp_path, capsys):
    from selfsup.cli import main

    old_fp = _encoder(tmp_path / "old.pt", [0, 1, 2, 3, 4], seed=0)
    new_fp = _encoder(tmp_path / "new.pt", None, seed=1, compatible_with=[old_fp])
    idx = tmp_path / "idx"
    assert main(["index", "build", "--index", str(idx), "--ckpt", str(tmp_path / "old.pt")]) == 0
    meta, _ = _stored(idx)
    data = meta["data"]
    assert (data["source"], data["split"], data["classes"], data["count"]) == (
        "digits",
        "test",
        [0, 1, 2, 3, 4],
        226,
    )

    # the new recipe's data (all digits: 450 items) is refused, naming what the index holds
    capsys.readouterr()
    rc = main(
        ["index", "upgrade", "--index", str(idx), "--ckpt", str(tmp_path / "new.pt"), "--data", "digits"]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("error:") == 1
    assert "holds digits (test split, classes [0, 1, 2, 3, 4], 226 items" in err and "450 items" in err
    assert _stored(idx)[0]["index_sha256"] == meta["index_sha256"]  # nothing written

    # by default the index's own items are embedded: every upgraded slot is its own item
    rc = main(
        ["index", "upgrade", "--index", str(idx), "--ckpt", str(tmp_path / "new.pt"), "--budget", "0.5"]
    )
    assert rc == 0
    meta2, stored = _stored(idx)
    upgraded = np.flatnonzero(np.asarray(meta2["item_versions"]) == 1)
    assert len(upgraded) == 113  # ceil(0.5 * 226)
    right, y_right = _normalised_features(tmp_path / "new.pt", [0, 1, 2, 3, 4])
    wrong, y_wrong = _normalised_features(tmp_path / "new.pt", None)
    np.testing.assert_allclose(stored[upgraded], right[upgraded], atol=1e-5)
    assert (y_right[upgraded] == np.asarray(meta2["labels"])[upgraded]).all()
    # what the old code wrote by position: the new recipe's items 0-112, mostly other digits
    assert (y_wrong[upgraded] == np.asarray(meta2["labels"])[upgraded]).mean() < 0.5

    # queries default to the index's items too; --exclude-self then drops each query's own slot
    out = tmp_path / "q"
    argv = ["index", "query", "--index", str(idx), "--ckpt", str(tmp_path / "new.pt"), "--exclude-self"]
    assert main([*argv, "-k", "5", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["index/fraction_upgraded"] == pytest.approx(113 / 226)
    assert 0.0 <= m["index/top1"] <= m["index/top5"] <= 1.0

    # features files: the row count (and labels, when given) must be the index's
    f = tmp_path / "f.npy"
    np.save(f, np.random.default_rng(0).normal(size=(450, right.shape[1])).astype(np.float32))
    feats = ["--feats", str(f), "--fingerprint", "x", "--compatible-with", old_fp, new_fp]
    capsys.readouterr()
    assert main(["index", "upgrade", "--index", str(idx), *feats]) == 2
    assert "has 450 items" in capsys.readouterr().err
    np.save(f, right.astype(np.float32))
    np.save(tmp_path / "y.npy", np.asarray(meta2["labels"]))
    assert main(["index", "upgrade", "--index", str(idx), *feats, "--labels", str(tmp_path / "y.npy")]) == 0
