"""Errors under a 2-process launch: printed once, exit code 2, no launcher traceback.

``selfsup launch`` wraps ``accelerate launch``: a user error in both processes (a bad recipe, or
a global batch that does not divide over the processes, found after the process group exists)
must print one ``error:`` line and make the launcher exit 2 without torch's ChildFailedError
report. Under plain ``accelerate launch`` the error is printed once too (the launcher's own report
follows it; only the wrapper can replace it, see ``selfsup.commands.launch``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT, tiny_recipe, write_recipe
from .test_equivalence import _free_port

pytestmark = [pytest.mark.dist, pytest.mark.slow]
BIN = Path(sys.executable).parent


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=str(ROOT))


def _one_error(p: subprocess.CompletedProcess, needle: str) -> None:
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], p.stderr[-3000:]


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "over,needle",
    [
        ({"optim.lr": -1.0}, "optim.lr: must be positive"),  # refused when the recipe is loaded
        ({"data.batch_size": 15}, "must divide evenly over 2 processes"),  # found by the trainer
    ],
    ids=["recipe", "trainer"],
)
def test_selfsup_launch_exits_2_with_one_error_line(tmp_path, over, needle):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(**{"train.max_steps": 2, **over}))
    port = str(_free_port())
    cmd = [str(BIN / "selfsup"), "launch", "--num_processes", "2", "--main_process_port", port]
    p = _run([*cmd, "pretrain", str(path), "--out", str(tmp_path / "run"), "--no-eval"])
    assert p.returncode == 2, p.stderr[-3000:]
    _one_error(p, needle)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [ln for ln in lines if ln.startswith("error:")], p.stderr[-3000:]  # nothing else
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(900)
def test_plain_accelerate_launch_prints_the_error_once(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(**{"data.batch_size": 15, "train.max_steps": 2}))
    p = _run(
        [
            str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
            "-m", "selfsup.cli", "pretrain", str(path), "--out", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    assert p.returncode != 0
    _one_error(p, "must divide evenly over 2 processes")
