"""One truthful run record: what a run writes about itself, and what later commands may change.

In process, one tiny run (MoCo v1 on digits 0-4, 3 steps planned out of 5 epochs) under umask 002:
the effective config, the run facts in metrics.json and the report, the schedule planned over
max_steps, eval metrics in TensorBoard, an evaluation on other data kept apart from the run's
metrics, and resuming with an allowed change.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from ..conftest import tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def _tb_scalars(run) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (run / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


def test_run_record_is_complete_and_consistent(tmp_path, capsys):
    from selfsup.cli import main

    recipe = tiny_recipe(
        **{
            "method": {"name": "moco", "version": "v1", "queue_size": 32, "dim": 16, "bn_group": 8},
            "data.classes": [0, 1, 2, 3, 4],
            "data.train_fraction": 0.3,
            "train.epochs": 5,
            "train.max_steps": 3,
            "optim.lr": "1e-1",  # YAML 1.1 reads this as a string: still a number
            "optim.min_lr_ratio": 0.0,
            "eval.run": ["knn"],
            "eval.knn.k": [5],
            "eval.compare_raw_pixels": True,
        }
    )
    path = write_recipe(tmp_path / "r.yaml", recipe)
    run = tmp_path / "run"
    old_mask = os.umask(0o002)
    try:
        assert main(["pretrain", str(path), "--out", str(run)]) == 0
    finally:
        os.umask(old_mask)
    out = " ".join(capsys.readouterr().out.split())  # the header is one wrapped paragraph
    assert "global batch 16 = 1 process x 16" in out and "lr 0.00625 = 0.1 x 16 / 256 (linear)" in out

    # files readable by the group, as the umask says (mkstemp alone would give 0600)
    for name in ("config.yaml", "metrics.json", "report.md", "encoder.pt", "checkpoints/last.pt"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o664, name

    # config.yaml holds the effective value of every key: MoCo v1's version-dependent defaults
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["method"]["temperature"] == 0.07 and cfg["method"]["mlp"] is False
    assert cfg["optim"]["lr"] == 0.1 and cfg["optim"]["lr_scaling"] == "linear"

    m = json.loads((run / "metrics.json").read_text())
    assert m["run/world_size"] == 1 and m["run/global_batch"] == 16 and m["run/per_process_batch"] == 16
    assert m["run/lr"] == pytest.approx(0.1 * 16 / 256) and m["run/precision"] == "fp32"
    assert m["run/loader"] == "torchvision" and m["moco/bn_group_size"] == 8
    assert m["versions/torch"] and m["versions/selfsup"] and "versions/faiss" in m
    # the schedule is planned over the 3 steps that run, not the 5 epochs: it ends at its floor
    hist = [h for h in json.loads((run / "history.json").read_text()) if "train/lr" in h]
    assert m["run/planned_steps"] == 3 and [h["step"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train/lr"] == pytest.approx(0.0, abs=1e-12) and hist[0]["train/lr"] > 0
    report = (run / "report.md").read_text()
    assert (
        "global batch: 16" in report and "effective lr: 0.00625" in report and "loader: torchvision" in report
    )
    assert f"| pretrained | {m['knn/top1']:.4f}" in report
    assert {"eval/knn/top1", "train/loss"} <= _tb_scalars(run)
    # the raw-pixel baseline: its own row, and the sentence that says what the comparison means.
    # kNN on the pixels of 5 digit classes is far above chance (0.2); 3 training steps are not.
    assert m["raw_pixels/knn/top1"] > 0.8 > m["knn/top1"]
    assert f"| raw pixels | {m['raw_pixels/knn/top1']:.4f}" in report
    assert f"{m['knn/top1'] - m['raw_pixels/knn/top1']:+.3f} against the same probe on the raw pixels" in report

    # evaluation on other data (all ten digits): apart from the run's own metrics
    own = json.loads((run / "metrics.json").read_text())
    assert main(["eval", "knn", "--ckpt", str(run / "encoder.pt"), "--data", "digits", "--k", "5"]) == 0
    assert json.loads((run / "metrics.json").read_text()) == own
    other = json.loads((run / "metrics-digits.json").read_text())
    assert other["data"] == "digits" and 0.0 <= other["knn/top1"] <= 1.0
    assert "eval/digits/knn/top1" in _tb_scalars(run)
    report = (run / "report.md").read_text()
    assert "metrics-digits.json" in report and f"| pretrained | {own['knn/top1']:.4f}" in report

    # an evaluation on the run's own data updates metrics.json, and the report follows it
    assert main(["eval", "knn", "--ckpt", str(run / "encoder.pt"), "--k", "3"]) == 0
    m2 = json.loads((run / "metrics.json").read_text())
    assert m2["knn/k3/top1"] == m2["knn/top1"]
    assert f"| pretrained | {m2['knn/top1']:.4f}" in (run / "report.md").read_text()

    # resuming with an allowed change (one more step): config.yaml shows the new value
    argv = ["pretrain", str(path), "--out", str(run), "--resume", "--no-eval", "--set", "train.max_steps=4"]
    assert main(argv) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 4
    assert json.loads((run / "metrics.json").read_text())["train/steps"] == 4
