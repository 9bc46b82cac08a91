"""``selfsup compat replicate`` end to end on tiny recipes: runs, resume, report, pictures, errors."""

from __future__ import annotations

import json

import pytest

from ..conftest import assert_user_error, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def _recipes(folder):
    """The five replication recipes, shrunk: digits at 16 px, width 4 (32-d), one step per run."""
    base = {
        "method": {"name": "supervised", "label_smoothing": 0.1},
        "data.views": 1,
        "data.train_fraction": 0.1,
        "data.augment": {"preset": "none", "crop_scale": [0.8, 1.0], "flip_p": 0.0},
        "optim": {"name": "adamw", "lr": 1e-3, "lr_scaling": "none", "weight_decay": 0.0},
    }
    wide = lambda last: {"model.kwargs": {"channels": [4, 8, 16, last]}}  # noqa: E731
    specs = {
        "old": {"data.classes": [0, 1, 2, 3, 4]},
        "new_independent": {"compat": {"name": "independent"}},
        "new_bct": {"compat": {"name": "bct"}},
        "new_bt2": {"compat": {"name": "bt2"}, **wide(64)},  # f = 32 dims, u reads all 64
        "new_oca": {"compat": {"name": "oca"}, **wide(40)},  # h = 32 + 8
    }
    folder.mkdir()
    for name, over in specs.items():
        write_recipe(folder / f"{name}.yaml", tiny_recipe(**{**base, "name": name, **over}))
    return folder


def test_replicate_trains_reports_and_resumes(tmp_path):
    recipes = _recipes(tmp_path / "recipes")
    out, docs = tmp_path / "out", tmp_path / "docs"
    args = ["compat", "replicate", "--recipes", str(recipes), "--out", str(out), "--docs", str(docs),
            "--seeds", "0", "--no-sequence", "--max-steps", "1", "--jobs", "2"]  # fmt: skip
    p = run_cli(*args)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert set(s["table"]) == {"independent", "bct", "bt2", "oca"}
    assert s["dims"] == {"old": 32, "independent": 32, "bct": 32, "bt2": 40, "oca": 40}
    for cell in ("top1/old_old", "top1/new_old", "top1/new_new", "delta/top1", "delta/top1~se"):
        assert cell in s["table"]["bct"]
    assert len(s["timings_s"]) == 5 and all(t["cpu"] > 0 for t in s["timings_s"].values())
    doc = (docs / "results_compat.md").read_text()
    assert "| BT² | 32, 40 |" in doc and "Independent fails" in doc and "## 3-step sequences" not in doc
    assert (docs / "compat_table.png").stat().st_size > 1000
    # a second call finds every run finished: no training, the same numbers
    p = run_cli(*args)
    assert p.returncode == 0 and "5 of 5 runs already finished" in p.stdout, p.stdout + p.stderr
    assert json.loads((out / "summary.json").read_text())["table"] == s["table"]


def test_replicate_errors(tmp_path):
    assert_user_error(run_cli("compat", "replicate", "--recipes", str(tmp_path)), "lacks", "old.yaml")
    recipes = _recipes(tmp_path / "recipes")
    assert_user_error(
        run_cli("compat", "replicate", "--recipes", str(recipes), "--step-classes", "0-x"), "--step-classes"
    )
    assert_user_error(
        run_cli(
            "compat", "replicate", "--recipes", str(recipes), "--out", str(tmp_path / "none"), "--report-only"
        ),
        "not finished",
    )
