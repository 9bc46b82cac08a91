"""The CLI end to end on tiny data: pretrain, kill, resume exactly, evaluate; bad input."""

import json

import pytest
import torch

from ..conftest import assert_user_error, run_cli, tiny_recipe, write_recipe

pytestmark = pytest.mark.slow


def _weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.timeout(600)
def test_pretrain_kill_resume_equals_uninterrupted_then_eval(tmp_path):
    # MoCo: the resumed state must include the queue, its pointer and the momentum encoder.
    recipe = tiny_recipe(
        **{
            "method": {"name": "moco", "queue_size": 40, "bn_group": 8, "momentum": 0.9},
            "train.epochs": 2,
            "train.ckpt_every_steps": 3,
        }
    )
    path = write_recipe(tmp_path / "r.yaml", recipe)
    full, broken = tmp_path / "full", tmp_path / "broken"
    p = run_cli("pretrain", str(path), "--out", str(full), "--no-eval")
    assert p.returncode == 0, p.stderr[-3000:]
    steps = int(json.loads((full / "metrics.json").read_text())["train/steps"])
    assert steps == 2 * (135 // 16)  # 2 epochs of the 10% digits subset, drop_last

    p = run_cli("pretrain", str(path), "--out", str(broken), "--no-eval", env={"SELFSUP_KILL_AT_STEP": "11"})
    assert p.returncode == 137  # killed mid-epoch 2 (8 steps per epoch), after the step-9 checkpoint
    ck = torch.load(broken / "checkpoints" / "last.pt", weights_only=False)
    assert ck["global_step"] == 9 and ck["epoch"] == 1 and ck["step_in_epoch"] == 1

    p = run_cli("pretrain", str(path), "--out", str(broken), "--no-eval", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_same_state(_weights(full), _weights(broken))
    hist = json.loads((broken / "history.json").read_text())
    assert [h["step"] for h in hist if "train/loss" in h] == list(range(1, steps + 1))

    # evaluation through the CLI on the exported encoder
    p = run_cli("eval", "knn", "--ckpt", str(full / "encoder.pt"), "--k", "5", "20")
    assert p.returncode == 0, p.stderr[-3000:]
    p = run_cli("eval", "linear", "--ckpt", str(full / "encoder.pt"), "--epochs", "5")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((full / "metrics.json").read_text())
    for k in ("knn/top1", "knn/k20/top1", "linear/top1", "linear/top5"):
        assert 0.0 <= m[k] <= 1.0
    assert m["linear/top5"] >= m["linear/top1"]
    assert (full / "tb").is_dir() and any((full / "tb").iterdir())  # real TensorBoard event files


@pytest.mark.timeout(600)
def test_ffcv_kill_resume_equals_uninterrupted(tmp_path):
    """The FFCV loader's augmentations are seeded per view: a killed and resumed run (with another
    thread count) ends with the same weights as the uninterrupted one, bit for bit."""
    pytest.importorskip("ffcv")
    recipe = tiny_recipe(
        **{
            "data.loader": "ffcv",
            "data.num_workers": 1,
            "data.augment.blur_p": 0.5,
            "data.augment.solarize_p": 0.2,
            "train.epochs": 2,
            "train.ckpt_every_steps": 3,
        }
    )
    path = write_recipe(tmp_path / "r.yaml", recipe)
    env = {"SELFSUP_DATA_CACHE": str(tmp_path / "cache")}
    full, broken = tmp_path / "full", tmp_path / "broken"
    p = run_cli("pretrain", str(path), "--out", str(full), "--no-eval", env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    p = run_cli(
        "pretrain", str(path), "--out", str(broken), "--no-eval", env={**env, "SELFSUP_KILL_AT_STEP": "11"}
    )
    assert p.returncode == 137
    p = run_cli(
        "pretrain",
        str(path),
        "--out",
        str(broken),
        "--no-eval",
        "--resume",
        "--set",
        "data.num_workers=2",
        env=env,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_same_state(_weights(full), _weights(broken))


@pytest.mark.timeout(600)
def test_pretrain_learns_and_writes_report(tmp_path):
    recipe = tiny_recipe(
        **{
            "train.epochs": 4,
            "data.train_fraction": 0.3,
            "data.batch_size": 32,
            "model.width": 8,
            "optim.lr": 1.0,
            "eval.run": ["knn"],
            "eval.compare_random_init": True,
        }
    )
    path = write_recipe(tmp_path / "r.yaml", recipe)
    out = tmp_path / "run"
    p = run_cli("pretrain", str(path), "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    hist = [h["train/loss"] for h in json.loads((out / "history.json").read_text()) if "train/loss" in h]
    assert sum(hist[-5:]) / 5 < sum(hist[:5]) / 5  # the loss falls
    m = json.loads((out / "metrics.json").read_text())
    assert m["knn/top1"] > 0.3  # 10 classes: chance is 0.1
    assert m["knn/top1"] > m["random_init/knn/top1"]  # pretraining beats the same network untrained
    report = (out / "report.md").read_text()
    assert "random init" in report and "curves.png" in report and (out / "curves.png").stat().st_size > 1000
    assert (out / "config.yaml").exists()


def test_bad_input_is_one_line_exit_2(tmp_path):
    ok = write_recipe(tmp_path / "ok.yaml", tiny_recipe(**{"train.max_steps": 1}))
    typo = write_recipe(tmp_path / "typo.yaml", tiny_recipe(**{"optim.lrate": 0.1}))
    assert_user_error(run_cli("pretrain", str(typo)), "unknown key 'lrate'", "did you mean 'lr'")
    assert_user_error(run_cli("pretrain", str(tmp_path / "missing.yaml")), "not found")
    assert_user_error(
        run_cli(
            "pretrain", str(ok), "--set", "data.source=imagefolder", "--set", f"data.path={tmp_path / 'nope'}"
        ),
        "not found",
    )
    assert_user_error(
        run_cli("pretrain", str(ok), "--out", str(tmp_path / "none"), "--resume"), "nothing to resume"
    )
    assert_user_error(run_cli("eval", "knn", "--ckpt", str(tmp_path / "missing.pt")), "not found")

    out = tmp_path / "run"
    assert run_cli("pretrain", str(ok), "--out", str(out), "--no-eval").returncode == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    # a second run into the same folder without --resume, or a resume with another architecture
    assert_user_error(run_cli("pretrain", str(ok), "--out", str(out)), "--resume")
    assert_user_error(
        run_cli("pretrain", str(ok), "--out", str(out), "--resume", "--set", "model.width=8"),
        "model.width (4 -> 8)",
    )
    assert (out / "checkpoints" / "last.pt").read_bytes() == before  # nothing overwritten


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    r = tiny_recipe(**{"optim.lr": 1e30, "train.ckpt_every_steps": 1, "optim.lr_scaling": "none"})
    path = write_recipe(tmp_path / "r.yaml", r)
    out = tmp_path / "run"
    p = run_cli("pretrain", str(path), "--out", str(out))
    assert_user_error(p, "loss became", "last good checkpoint")
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ck["global_step"] >= 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
