"""OBoW through the CLI (in-process): shipped recipes run, the report shows the vocabulary, bad input.

The ImageNet recipes train 2 steps on the embedded digits with their sizes reduced through
``--set``; a one-epoch run on 67 digits draws ``vocabulary.png`` and lists it in ``report.md``;
a ViT backbone, a vocabulary not divisible by the global batch and ``local_views: 0`` each end in
one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import json

import pytest
import torch

from selfsup.cli import main

from ..conftest import ROOT, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow

SMALL = [
    "data.source=digits",
    "data.path=null",
    "data.image_size=16",
    "data.num_workers=0",
    "data.loader=torchvision",
    "data.batch_size=16",
    "data.train_fraction=0.1",
    "data.augment.local_size=8",
    "data.augment.plain_size=24",
    "model.width=4",
    "model.cifar_stem=true",
    "method.num_words=64",
    "method.border=0",
    "train.max_steps=2",
    "train.progress=false",
    "eval.run=[]",
]


def cli(*args) -> int:
    return main([str(a) for a in args])


def sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


@pytest.mark.parametrize(
    "name", ["imagenet1k/obow_resnet50.yaml", "imagenet1k/obow_resnet18_in20.yaml", "digits/obow.yaml"]
)
def test_obow_recipes_run_two_steps_on_cpu(name, tmp_path):
    over = SMALL + (["model.backbone=resnet18"] if "resnet50" in name else [])
    out = tmp_path / "run"
    assert cli("pretrain", ROOT / "recipes" / name, *sets(over), "--out", out) == 0
    assert json.loads((out / "metrics.json").read_text())["train/steps"] == 2.0
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert state["vocab.0.words"].shape[0] == 64 and int(state["vocab.1.ptr"]) == 32


def test_one_epoch_draws_the_vocabulary_into_the_report(tmp_path):
    rec = tiny_recipe(
        **{
            "name": "obow_picture",
            "method": {"name": "obow", "num_words": 64, "border": 0, "inv_delta": 10.0, "kappa": 5.0},
            "data.train_fraction": 0.05,  # 67 images: one epoch = 4 steps of 16
            "data.augment.local_views": 2,
            "data.augment.local_size": 8,
            "data.augment.plain_views": 1,
            "data.augment.plain_size": 24,
        }
    )
    path = write_recipe(tmp_path / "r.yaml", rec)
    out = tmp_path / "run"
    assert cli("pretrain", path, "--out", out, "--no-eval") == 0
    png = out / "vocabulary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "vocabulary.png" in (out / "report.md").read_text()
    hist = json.loads((out / "history.json").read_text())
    assert any("train/perp_batch_l1" in h and "train/teacher_momentum" in h for h in hist)


@pytest.mark.parametrize(
    "over,needle",
    [
        (["model.backbone=vit_tiny_patch16_224", "model.cifar_stem=false", "model.width=null"], "ResNet"),
        (["method.num_words=100"], "multiple of the global batch"),
        (["data.augment.local_views=0"], "local_views"),
    ],
)
def test_bad_obow_input_is_one_error_line_exit_2(over, needle, tmp_path, capsys):
    args = sets(SMALL + over)
    assert cli("pretrain", ROOT / "recipes" / "digits" / "obow.yaml", *args, "--out", tmp_path / "r") == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
