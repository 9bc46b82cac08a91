"""SIE and the equivariance evaluations through the CLI on a tiny render; bad input exits 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ..conftest import run_cli, write_recipe
from ..unit.test_pairs import pair_recipe, render_tiny

pytestmark = pytest.mark.slow

EQUI = {"epochs": 3, "hidden": 16, "val_pairs": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return render_tiny(tmp_path_factory.mktemp("render") / "ds")


def _main(capsys, *args: str):
    """The CLI in this process (fast): (exit code, stderr)."""
    from selfsup.cli import main

    rc = main(list(args))
    return rc, capsys.readouterr().err


def _assert_one_error_line(rc: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2 and lines and lines[-1].startswith("error: "), (rc, err[-2000:])
    for n in needles:
        assert n in lines[-1], (n, lines[-1])


@pytest.mark.timeout(600)
def test_sie_pretrain_reports_every_equivariance_metric_and_eval_command_agrees(tiny, tmp_path, capsys):
    r = pair_recipe(tiny)
    r["train"]["epochs"] = 2
    r["eval"] = {"run": ["equivariance"], "equivariance": EQUI}
    run = tmp_path / "run"
    p = run_cli("pretrain", str(write_recipe(tmp_path / "sie.yaml", r)), "--out", str(run))
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    for part in ("", "_inv", "_equi"):
        assert 0.0 <= m[f"linear/top1{part}"] <= m[f"linear/top5{part}"] <= 1.0
        assert m[f"equi/rotation_r2{part}"] <= 1.0 and m[f"equi/color_r2{part}"] <= 1.0
    hits = [m[f"equi/hit@{k}"] for k in (1, 2, 5, 10)]
    assert hits == sorted(hits) and hits[-2] == hits[-1] == 1.0  # 4 views: every rank is <= 4
    assert hits[0] <= m["equi/mrr"] <= 1.0 and m["equi/mrr"] > 0.0
    for key in ("equi/pre", "equi/train/pre", "equi/pre_all"):
        assert 0.0 <= m[key] <= 1.0
    assert (run / "equivariance_retrieval.png").stat().st_size > 1000
    report = (run / "report.md").read_text()
    assert "equi/mrr" in report and "equivariance_retrieval.png" in report

    # The eval command on the exported encoder and on the training checkpoint: same protocol,
    # same seeds, same numbers (features recomputed in other folders).
    for ckpt, out in (
        (run / "encoder.pt", tmp_path / "e1"),
        (run / "checkpoints" / "last.pt", tmp_path / "e2"),
    ):
        rc, err = _main(
            capsys,
            "eval",
            "equivariance",
            "--ckpt",
            str(ckpt),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--hidden",
            "16",
            "--val-pairs",
            "2",
        )
        assert rc == 0, err[-3000:]
        again = json.loads((out / "metrics.json").read_text())
        for key in ("linear/top1_equi", "equi/rotation_r2", "equi/mrr", "equi/hit@1", "equi/pre"):
            assert again[key] == pytest.approx(m[key], abs=1e-6), key


@pytest.mark.timeout(600)
def test_equivariance_eval_of_an_encoder_without_split_skips_predictor_metrics(tiny, tmp_path, capsys):
    r = pair_recipe(tiny, {"name": "vicreg", "mlp": [32, 32, 32]})
    run = tmp_path / "vicreg"
    rc, err = _main(
        capsys, "pretrain", str(write_recipe(tmp_path / "v.yaml", r)), "--out", str(run), "--no-eval"
    )
    assert rc == 0, err[-2000:]
    rc, err = _main(
        capsys, "eval", "equivariance", "--ckpt", str(run / "encoder.pt"), "--epochs", "2", "--hidden", "8"
    )
    assert rc == 0, err[-2000:]
    assert "note: MRR, Hit@k and PRE need an SIE predictor" in err
    m = json.loads((run / "metrics.json").read_text())
    assert (
        "equi/rotation_r2" in m and "linear/top1" in m and "equi/mrr" not in m and "linear/top1_inv" not in m
    )
    # --equi-dims splits any encoder; a split larger than the features is a user error.
    rc, err = _main(
        capsys,
        "eval",
        "equivariance",
        "--ckpt",
        str(run / "encoder.pt"),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--equi-dims",
        "8",
        "--no-retrieval",
    )
    assert rc == 0 and "linear/top1_inv" in json.loads((run / "metrics.json").read_text())
    rc, err = _main(capsys, "eval", "equivariance", "--ckpt", str(run / "encoder.pt"), "--equi-dims", "999")
    _assert_one_error_line(rc, err, "larger than the backbone's 32 features")
    # Data without latents.
    rc, err = _main(capsys, "eval", "equivariance", "--ckpt", str(run / "encoder.pt"), "--data", "digits")
    _assert_one_error_line(rc, err, "per-view rotation latents", "render3d or 3diebench")


def test_bad_recipes_exit_2_with_one_line(tiny, tmp_path, capsys):
    def pretrain(recipe: dict, name: str):
        return _main(
            capsys,
            "pretrain",
            str(write_recipe(tmp_path / f"{name}.yaml", recipe)),
            "--out",
            str(tmp_path / name),
            "--no-eval",
        )

    # SIE on a dataset without latents.
    r = pair_recipe(tiny)
    r["data"] = {"source": "digits", "pairs": True, "image_size": 32}
    _assert_one_error_line(*pretrain(r, "digits"), "data.pairs", "render3d or 3diebench")
    r["data"]["pairs"] = False
    _assert_one_error_line(*pretrain(r, "digits_nopairs"), "method sie", "data.pairs: true")
    # A split larger than the backbone's features (width 4: 32 features).
    _assert_one_error_line(
        *pretrain(pair_recipe(tiny, {"name": "sie", "equi_dims": 64}), "split"),
        "method.equi_dims=64",
        "32 features",
    )
    # equivariance in eval.run on data without latents.
    r = pair_recipe(tiny, {"name": "vicreg"})
    r["data"] = {"source": "digits"}
    r["eval"] = {"run": ["equivariance"]}
    _assert_one_error_line(*pretrain(r, "eval_digits"), "eval.run: equivariance", "render3d or 3diebench")


def test_latent_file_of_the_wrong_length_exits_2(tiny, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    for f in bad.glob("*/*/latent_*.npy"):
        np.save(f, np.zeros(5))
    recipe = write_recipe(tmp_path / "bad.yaml", pair_recipe(bad))
    rc, err = _main(capsys, "pretrain", str(recipe), "--out", str(tmp_path / "run"), "--no-eval")
    _assert_one_error_line(rc, err, "holds 5 float64 values, expected 7")
