"""Shared fixtures: tiny recipes and a CLI runner in a subprocess (real exit codes, real stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tiny_recipe(**over) -> dict:
    """A recipe small enough for a CPU test: digits at 16 px, ResNet-18 of width 4."""
    r = {
        "name": "tiny",
        "seed": 0,
        "data": {
            "source": "digits",
            "image_size": 16,
            "batch_size": 16,  # the global batch: 16 on one process, 8 each on two
            "train_fraction": 0.1,
            "loader": "torchvision",
            "augment": {"preset": "simclr", "blur_p": 0.0},
        },
        "model": {"backbone": "resnet18", "cifar_stem": True, "width": 4},
        "method": {"name": "simclr", "temperature": 0.5, "proj_hidden": 32, "proj_dim": 16},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 1, "log_every": 1, "progress": False},
        "eval": {"run": [], "linear": {"epochs": 5}},
    }
    for k, v in over.items():
        node = r
        keys = k.split(".")
        for kk in keys[:-1]:
            node = node.setdefault(kk, {})
        node[keys[-1]] = v
    return r


def write_recipe(path: Path, recipe: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(*args: str, env: dict | None = None, timeout: int = 600, cwd: Path | None = None):
    """Run ``selfsup ARGS`` in a subprocess; returns CompletedProcess with text output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [str(BIN / "selfsup"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(cwd or ROOT),
    )


def assert_user_error(proc, *needles: str) -> None:
    """Exit code 2, one ``error:`` line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[-1], (n, lines[-1])


@pytest.fixture
def tiny():
    return tiny_recipe
