"""The shipped recipes: every file loads, cites where its settings come from, and the generated
recipe table and key reference are current; the paper-setting recipes train on CPU with sizes shrunk."""

from __future__ import annotations

import json

import pytest

from selfsup import docs
from selfsup.cli import main

from ..conftest import ROOT

RECIPES = sorted(p.relative_to(ROOT / "recipes").as_posix() for p in (ROOT / "recipes").rglob("*.yaml"))
# Recipes at a paper's settings (not the small embedded-data ones) must say which paper and result.
PAPER_RECIPES = [
    r for r in RECIPES if r.split("/")[0] in ("cifar10", "cifar100", "imagenet100", "imagenet1k", "3diebench")
]


def test_every_recipe_key_has_a_description():
    assert docs.missing_descriptions() == []


def test_generated_docs_are_current():
    stale = docs.write(ROOT, check=True)
    assert not stale, f"regenerate with: python -m selfsup.docs ({[p.name for p in stale]})"


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_recipe_names_its_source(name):
    rows = {r["recipe"]: r for r in docs.recipe_rows(ROOT)}
    row = rows[f"recipes/{name}"]
    assert row["source"] != "-", f"{name}: add reference.paper"


def test_lr_rule_and_schedule_come_from_the_recipe():
    rows = {r["recipe"]: r for r in docs.recipe_rows(ROOT)}
    assert rows["recipes/imagenet1k/simclr.yaml"]["lr"].startswith("LARS 0.3 x B/256 = 4.8")
    assert "step 120/160" in rows["recipes/imagenet1k/mocov1.yaml"]["lr"]


SMALL = [
    "data.source=digits",
    "data.path=null",
    "data.image_size=16",
    "data.num_workers=0",
    "data.loader=torchvision",
    "data.batch_size=16",
    "model.width=4",
    "train.max_steps=2",
    "train.progress=false",
    "eval.run=[]",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,extra",
    [
        ("imagenet1k/simclr.yaml", []),  # LARS, warm-up
        ("imagenet1k/mocov1.yaml", ["method.queue_size=64", "method.bn_group=8"]),  # step schedule
        ("cifar10/simsiam.yaml", []),  # fixed predictor lr
    ],
)
def test_paper_recipe_trains_two_steps_on_cpu(name, extra, tmp_path):
    out = tmp_path / "run"
    args = [x for s in SMALL + extra for x in ("--set", s)]
    assert main(["pretrain", str(ROOT / "recipes" / name), *args, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train/steps"] == 2.0 and metrics["train/final_loss"] == metrics["train/final_loss"]
