"""Compatible training end to end on tiny data: `selfsup compat train`, exports, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.compat.attach import attach_compat
from selfsup.compat.common import pseudo_classifier
from selfsup.errors import CheckpointError
from selfsup.methods import build_method
from selfsup.models.backbones import create_backbone
from selfsup.models.export import arch_dict, export_encoder, fingerprint, load_encoder
from selfsup.recipe import load_recipe
from selfsup.utils.checkpoint import read_checkpoint

from ..conftest import assert_user_error, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def _supervised(**over) -> dict:
    """Supervised tiny recipe: digits 16 px, ResNet-18 width 4 (32-d), one view, no colour aug."""
    base = {
        "method": {"name": "supervised", "label_smoothing": 0.1},
        "data.views": 1,
        "data.augment": {"preset": "none", "crop_scale": [0.7, 1.0]},
        "optim": {"name": "adamw", "lr": 1e-3, "lr_scaling": "none", "weight_decay": 0.0},
    }
    return tiny_recipe(**{**base, **over})


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """An old model trained for a few steps on classes 0-4; returns its encoder.pt."""
    from selfsup.workflow import pretrain_and_evaluate

    out = tmp_path_factory.mktemp("old") / "run"
    recipe = load_recipe(
        _supervised(**{"name": "old", "data.classes": [0, 1, 2, 3, 4], "train.max_steps": 3})
    )
    pretrain_and_evaluate(recipe, out, evaluate=False, quiet=True)
    return out / "encoder.pt"


def _cli_in_process(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def _assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_compat_train_bt2_end_to_end(tmp_path, old):
    recipe = write_recipe(tmp_path / "bt2.yaml", _supervised(**{"name": "bt2", "compat": {"name": "bt2"}}))
    out = tmp_path / "run"
    p = run_cli(
        "compat", "train", str(recipe), "--old", str(old), "--out", str(out),
        "--set", f"compat.teacher={old}", "--set", "train.max_steps=3",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    for metric in ("top1", "top5", "map"):
        for pair in ("old_old", "new_old", "new_new"):
            assert 0.0 <= m[f"compat/{metric}/{pair}"] <= 1.0
    assert m["compat/criterion"] in (0.0, 1.0)
    assert m["compat/old_dim"] == 32 and m["compat/new_dim"] == 40  # 32 + 32 // 4 extra dims
    assert "Compatibility (bt2)" in (out / "report.md").read_text()
    hist = json.loads((out / "history.json").read_text())
    assert {"train/bt2_ce", "train/bt2_pseudo_ce", "train/bt2_old_align", "train/bt2_distill"} <= set(hist[0])

    # the exported encoder is backbone + BT² head: phi, 40-d, norm sqrt(1 + C^2), compatible with old
    enc, info = load_encoder(out / "encoder.pt")
    _, old_info = load_encoder(old)
    assert info["dim"] == 40 and info["compatible_with"] == [old_info["fingerprint"]]
    with torch.no_grad():
        phi = enc(torch.randn(3, 3, 16, 16))
    assert phi.shape == (3, 40)
    assert torch.allclose(phi.norm(dim=1), torch.full((3,), math.sqrt(5.0)), atol=1e-4)

    # the frozen old model (weights and BatchNorm statistics) did not change during training
    sd = read_checkpoint(out / "checkpoints" / "last.pt")["model"]
    old_sd = read_checkpoint(old)["encoder"]
    prefix = "extra_terms.0.frozen.old."
    assert {k[len(prefix) :] for k in sd if k.startswith(prefix)} == set(old_sd)
    for k, v in old_sd.items():
        assert torch.equal(sd[prefix + k], v), k
    # last.pt lacks the head's architecture: loading it as an encoder is refused, not silently wrong
    with pytest.raises(CheckpointError, match="encoder.pt"):
        load_encoder(out / "checkpoints" / "last.pt")


def _export_like_trainer(method, recipe, path):
    """What Trainer.export does: encoder(), fingerprint, export_info(), export_encoder."""
    enc = method.encoder()
    info = {"model_id": "t", "fingerprint": fingerprint(enc), **method.export_info()}
    export_encoder(path, enc, arch_dict(recipe.model), info)
    return enc, info


def test_oca_export_reloads_with_head_dim_and_compatible_with(tmp_path, old):
    recipe = load_recipe(_supervised(compat={"name": "oca", "old": str(old), "extra_dims": 6}))
    torch.manual_seed(0)
    method = build_method(recipe)
    attach_compat(method, recipe)
    method.eval()
    enc, info = _export_like_trainer(method, recipe, tmp_path / "encoder.pt")
    loaded, linfo = load_encoder(tmp_path / "encoder.pt")
    _, old_info = load_encoder(old)
    assert linfo["dim"] == 32 + 6
    assert linfo["compatible_with"] == [old_info["fingerprint"]]
    assert linfo["fingerprint"] == info["fingerprint"]
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        h_train = method.extra_terms[0].head(method.backbone(x))
        h = loaded(x)
    assert torch.allclose(h, h_train, atol=1e-5)
    assert torch.allclose(h.norm(dim=1), torch.ones(4), atol=1e-5)  # OCA's h is normalised
    # the supervised classifier is off: its parameters are frozen and out of the loss
    assert not method.classifier_loss and not any(p.requires_grad for p in method.classifier.parameters())


def test_pseudo_classifier_equals_independent_class_means(old):
    from selfsup.data.catalog import build_source

    recipe = load_recipe(_supervised())
    enc, _ = load_encoder(old)
    P = pseudo_classifier(enc, recipe, 10).numpy()
    # independent: own preprocessing (16 px already: scale to [0, 1], normalise), own averaging
    src = build_source(recipe.data, "train")
    imgs = np.stack([src[i][0] for i in range(len(src))]).astype(np.float32) / 255.0
    labels = np.array([src[i][1] for i in range(len(src))])
    x = (imgs - np.array(recipe.data.mean, dtype=np.float32)) / np.array(recipe.data.std, dtype=np.float32)
    with torch.no_grad():
        feats = enc.eval()(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
    for c in range(10):
        rows = feats[labels == c]
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        np.testing.assert_allclose(P[c], rows.mean(0), atol=1e-4)


def test_bct_paper_form_uses_old_classifier_and_synthesises_new_classes(old):
    from selfsup.compat.common import training_features

    recipe = load_recipe(_supervised(compat={"name": "bct", "old": str(old), "classifier": "old"}))
    method = build_method(recipe)
    attach_compat(method, recipe)
    term = method.extra_terms[0]
    cls = read_checkpoint(old)["classifier"]
    assert cls["classes"] == [0, 1, 2, 3, 4] and term.lam == 1.0
    assert torch.allclose(term.weight[:5], cls["weight"][:5])
    assert torch.allclose(term.bias[:5], cls["bias"][:5])
    enc, _ = load_encoder(old)
    feats, labels = training_features(enc, recipe)
    for c in range(5, 10):  # classes the old model never saw: mean raw old feature, bias 0
        assert torch.allclose(term.weight[c], feats[labels == c].mean(0), atol=1e-5)
        assert term.bias[c] == 0


def test_hotrefresh_on_simclr_few_steps(tmp_path, old, capsys):
    recipe = write_recipe(
        tmp_path / "simclr.yaml",
        tiny_recipe(**{"model.width": 8, "train.max_steps": 2, "compat": {"name": "hotrefresh"}}),
    )
    rc, err = _cli_in_process(
        capsys, "compat", "train", str(recipe), "--old", str(old), "--out", str(tmp_path / "r")
    )
    assert rc == 0, err
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["compat/new_dim"] == 64 and m["compat/old_dim"] == 32 and 0 <= m["compat/top1/new_old"] <= 1
    hist = json.loads((tmp_path / "r" / "history.json").read_text())
    assert "train/hotrefresh_loss" in hist[0]
    _, info = load_encoder(tmp_path / "r" / "encoder.pt")
    assert len(info["compatible_with"]) == 1


def test_errors_missing_old_incomparable_dims_no_compat_no_teacher(tmp_path, old, capsys):
    new = write_recipe(tmp_path / "new.yaml", _supervised(compat={"name": "independent"}))
    rc, err = _cli_in_process(
        capsys, "compat", "train", str(new), "--old", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "a")
    )
    _assert_one_line_error(rc, err, "not found", "nope.pt")

    # an old model wider (64-d) than the new one (32-d): new/old retrieval is impossible
    wide = load_recipe(_supervised(**{"model.width": 8}))
    export_encoder(tmp_path / "wide.pt", create_backbone(wide.model), arch_dict(wide.model), {"recipe": {}})
    rc, err = _cli_in_process(
        capsys, "compat", "train", str(new), "--old", str(tmp_path / "wide.pt"), "--out", str(tmp_path / "b")
    )
    _assert_one_line_error(rc, err, "cannot be compared", "64", "32")

    plain = write_recipe(tmp_path / "plain.yaml", _supervised())
    rc, err = _cli_in_process(
        capsys, "compat", "train", str(plain), "--old", str(old), "--out", str(tmp_path / "c")
    )
    _assert_one_line_error(rc, err, "no compat section")

    bt2 = write_recipe(tmp_path / "bt2.yaml", _supervised(compat={"name": "bt2"}))
    rc, err = _cli_in_process(
        capsys, "compat", "train", str(bt2), "--old", str(old), "--out", str(tmp_path / "d")
    )
    _assert_one_line_error(rc, err, "compat.teacher")

    # the real CLI: exit code 2 and one line on stderr
    assert_user_error(
        run_cli(
            "compat", "train", str(new), "--old", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "e")
        ),
        "not found",
    )
