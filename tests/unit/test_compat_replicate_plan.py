"""The run plan of ``selfsup compat replicate``: dependencies, seeds, the sequences' late widths."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfsup.commands import compat_replicate
from selfsup.commands._compat_runs import _common, plan, run_tasks

ROOT = Path(__file__).resolve().parents[2]


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    compat_replicate.add_arguments(p)
    a = p.parse_args(list(argv))
    a.step_classes = compat_replicate.parse_classes(a.step_classes)
    return a


def _finish(task, dim: int) -> None:
    """Pretend a run finished with a ``dim``-d encoder."""
    task.out.mkdir(parents=True, exist_ok=True)
    (task.out / "metrics.json").write_text(json.dumps({"compat/new_dim": dim, "compat/criterion": 0.0}))


def test_plan_orders_dependencies_and_widens_v3_from_finished_dims(tmp_path):
    args = _args("--seeds", "0", "1", "--step-classes", "0-2,5")
    tasks = plan(ROOT / "recipes" / "compat", tmp_path, args)
    by = {t.name: t for t in tasks}
    assert len(tasks) == 2 * (5 + 7)
    order = [t.name for t in tasks]
    assert all(order.index(d.name) < order.index(t.name) for t in tasks for d in t.deps)
    assert by["s1/new_bt2"].teacher is by["s1/new_independent"] and by["s1/new_bt2"].old is by["s1/old"]
    v2, v3 = by["s0/seq_bt2_v2"], by["s0/seq_bt2_v3"]
    assert (
        v2.teacher is by["s0/seq_independent_v2"] and v3.old is v2 and v3.teacher is by["s0/new_independent"]
    )
    assert "data.classes=[0,1,2,5]" in v2.argv([]) and "seed=200" in v2.argv([])
    assert "seed=100" in by["s0/new_oca"].argv([]) and "seed=1" in by["s1/old"].argv([])
    # v3's backbone is sized when v2 exists: BT² f = teacher dims, u reads v2's dims; OCA h = v2 + v2/4
    _finish(by["s0/new_independent"], 64)
    _finish(v2, 80)
    _finish(by["s0/seq_oca_v2"], 80)
    assert "model.kwargs.channels=[8,16,32,144]" in v3.argv([])
    assert "model.kwargs.channels=[8,16,32,100]" in by["s0/seq_oca_v3"].argv([])
    assert "--old" in v3.argv([]) and str(v2.encoder) in v3.argv([])
    assert _common(_args("--epochs", "3", "--max-steps", "2")) == [
        "train.progress=false", "train.epochs=3", "train.max_steps=2"
    ]  # fmt: skip
    ablated = plan(
        ROOT / "recipes" / "compat", tmp_path, _args("--seeds", "0", "--ablations", "--no-sequence")
    )
    names = [t.name for t in ablated]
    assert "s0/abl_old_raw" in names and "s0/abl_long_bt2" in names
    long_bt2 = next(t for t in ablated if t.name == "s0/abl_long_bt2")
    assert long_bt2.teacher.name == "s0/abl_long_independent" and "train.epochs=12" in long_bt2.argv([])


def test_run_tasks_restarts_an_interrupted_run_from_an_empty_folder(tmp_path, capsys):
    """A run folder without metrics (an interrupted attempt) is removed before the run starts again:
    the training command refuses to write into a folder that already holds a run."""
    args = _args("--seeds", "0", "--no-sequence", "--launcher", "true")  # `true ...`: a no-op run
    tasks = [t for t in plan(ROOT / "recipes" / "compat", tmp_path, args) if t.name == "s0/old"]
    stale = tasks[0].out / "checkpoints" / "last.pt"
    stale.parent.mkdir(parents=True)
    stale.write_text("half-written")
    run_tasks(tasks, tmp_path, args)
    assert "[clean] s0/old" in capsys.readouterr().out
    assert not stale.exists() and tasks[0].timing.is_file()
