"""The positives recipes and commands end to end through the CLI (in-process: imports are paid once).

Each shipped recipe trains 2 steps on the embedded digits with sizes reduced through ``--set``;
a tiny MoCo run writes score statistics, which ``selfsup plot scores`` draws; ``selfsup bench
step`` writes its flat JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from selfsup.cli import main

from ..conftest import ROOT, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow

SMALL = [
    "data.source=digits",
    "data.image_size=16",
    "data.num_workers=0",
    "data.loader=torchvision",  # no numba compilation of FFCV pipelines in a 2-step test
    "data.batch_size=16",
    "model.width=4",
    "method.queue_size=64",
    "method.bn_group=8",  # the shuffle-BN group of the shrunk batch (the recipes' 32-64 would not divide 16)
    "train.max_steps=2",
    "train.progress=false",
    "eval.run=[]",
]
# (baseline, with generator): each pair must differ only in ``positives``.
PAIRS = [
    ("cifar10/mocov2.yaml", "cifar10/mocov2_hallucinator.yaml"),
    ("cifar100/mocov2.yaml", "cifar100/mocov2_hallucinator.yaml"),
    ("imagenet100/mocov2.yaml", "imagenet100/mocov2_ft.yaml"),
]
RECIPES = [r for pair in PAIRS for r in pair]


def cli(*args: str) -> int:
    return main([str(a) for a in args])


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


@pytest.mark.parametrize("base,variant", PAIRS)
def test_recipe_pairs_toggle_only_the_generator(base, variant):
    from selfsup.config import to_dict
    from selfsup.recipe import load_recipe

    a, b = (to_dict(load_recipe(ROOT / "recipes" / n, ["data.path=/data"])) for n in (base, variant))
    assert a.pop("positives") == [] and len(b.pop("positives")) == 1
    for key in ("name", "reference"):  # provenance differs: the variant cites the generator's claim
        a.pop(key), b.pop(key)
    assert a == b


# The generator recipes run end to end; their baselines are the same files minus ``positives``
# (previous test), which the one baseline run here covers.
@pytest.mark.parametrize("name", [p[1] for p in PAIRS] + ["cifar10/mocov2.yaml"])
def test_recipe_runs_two_steps_on_cpu(name, tmp_path):
    out = tmp_path / "run"
    assert cli("pretrain", ROOT / "recipes" / name, *sets(SMALL), "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train/steps"] == 2.0
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    state = ck["model"]
    has_hal = any(k.startswith("hallucinator.") for k in state)
    has_ft = "feature_transform.epoch" in state
    assert has_hal == ("hallucinator" in name) and has_ft == name.endswith("_ft.yaml")
    # The generators were attached before the optimizer was built: it holds their parameters too.
    n_opt = sum(len(g["params"]) for g in ck["optimizer"]["param_groups"])
    from selfsup.methods import build_method
    from selfsup.positives.attach import attach_positives
    from selfsup.recipe import load_recipe

    r = load_recipe(ROOT / "recipes" / name, SMALL)
    m = build_method(r)
    attach_positives(m, r)
    assert n_opt == sum(1 for p in m.parameters() if p.requires_grad)
    hist = json.loads((out / "history.json").read_text())
    assert any("train/score/neg_mean" in h for h in hist)  # logged to TensorBoard and history


@pytest.mark.parametrize(
    "name,needle", [("cifar10/mocov2.yaml", "data.path"), ("imagenet100/mocov2_ft.yaml", "data.path")]
)
def test_real_data_recipes_require_data_path(name, needle, tmp_path, capsys):
    over = [s for s in SMALL if not s.startswith("data.source")]
    assert cli("pretrain", ROOT / "recipes" / name, *sets(over), "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and needle in err[-1]


def test_score_statistics_and_plot_scores(tmp_path, capsys):
    runs = {}
    for tag, positives in (("base", []), ("hal", ["hallucinator"])):
        rec = tiny_recipe(
            **{
                "name": f"scores_{tag}",
                "method": {"name": "moco", "queue_size": 64, "dim": 16, "bn_group": 8},
                "positives": positives,
                "data.loader": "torchvision",
                "data.train_fraction": 0.05,  # 67 images: 4 steps of 16
            }
        )
        path = write_recipe(tmp_path / f"{tag}.yaml", rec)
        runs[tag] = tmp_path / tag
        assert cli("pretrain", path, "--out", runs[tag], "--no-eval") == 0
    data = json.loads((runs["hal"] / "scores.json").read_text())
    (ep,) = data["epochs"]
    assert ep["epoch"] == 1 and ep["steps"] == 67 // 16 and data["generators"] == ["hallucinator"]
    # One histogram count per query row (2N with the Hallucinator) per step.
    assert sum(ep["hist_pos"]) == ep["steps"] * 2 * 16
    assert -1 <= ep["neg_mean"] <= 1 and ep["neg_var"] >= 0 and ep["pos_exp"] > 0
    # The last epoch drew scores.png before the report was written: the report shows it.
    assert (runs["hal"] / "scores.png").exists()
    assert "scores.png" in (runs["hal"] / "report.md").read_text()

    (runs["base"] / "scores.png").unlink()
    assert cli("plot", "scores", runs["base"]) == 0
    assert (runs["base"] / "scores.png").stat().st_size > 10_000
    cmp = tmp_path / "cmp.png"
    assert cli("plot", "scores", runs["base"], runs["hal"], "--epochs", "1", "--out", cmp) == 0
    assert cmp.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert cli("plot", "scores", runs["base"], "--epochs", "7") == 2
    assert "epoch 7" in capsys.readouterr().err


def test_bench_step_writes_flat_json(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--batch", "4", "--size", "16", "--width", "4", "--steps", "1", "--warmup", "0", "--queue", "32"]
    assert cli("bench", "step", *args, "--json", out) == 0
    res = json.loads(Path(out).read_text())
    for m in ("mocov2", "simclr"):
        for v in ("", "+hallucinator", "+ft"):
            assert res[f"step/{m}{v}/img_per_s"] > 0
        assert f"step/{m}+ft/overhead" in res and f"step/{m}+hallucinator/overhead" in res
