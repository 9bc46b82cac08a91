"""A run of ``selfsup compat replicate`` (:class:`Task`) and the widths read from finished runs.

Shared by the run plan (:mod:`._compat_runs`) and the ablations (:mod:`._compat_ablations`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEED_OFFSETS = {"old": 0, "new": 100, "v2": 200, "v3": 300}  # distinct initialisations per role


@dataclass
class Task:
    name: str  # "s0/new_bct": the run folder under --out
    kind: str  # pretrain | compat
    recipe: Path
    out: Path
    overrides: list[str] = field(default_factory=list)
    old: Task | None = None
    teacher: Task | None = None
    late: Callable[[], list[str]] | None = None  # overrides that need finished dependencies
    role: dict = field(default_factory=dict)  # how the report uses it: table / sequence / ablation

    @property
    def deps(self) -> list[Task]:
        return [t for t in (self.old, self.teacher) if t is not None]

    @property
    def encoder(self) -> Path:
        return self.out / "encoder.pt"

    @property
    def log(self) -> Path:
        return self.out.parent / f"{self.out.name}.log"

    @property
    def timing(self) -> Path:
        """Wall and CPU seconds of the run, beside its folder (one file per run: replications of
        different seeds may share ``--out``)."""
        return self.out.parent / f"{self.out.name}.time.json"

    def done(self) -> bool:
        m = self.out / "metrics.json"
        if not (self.encoder.is_file() and m.is_file()):
            return False
        return self.kind == "pretrain" or "compat/criterion" in json.loads(m.read_text())

    def argv(self, common: list[str]) -> list[str]:
        sets = [*common, *self.overrides, *(self.late() if self.late else [])]
        if self.teacher is not None:
            sets.append(f"compat.teacher={self.teacher.encoder}")
        cmd = (
            ["pretrain", str(self.recipe)]
            if self.kind == "pretrain"
            else ["compat", "train", str(self.recipe)]
        )
        if self.old is not None:
            cmd += ["--old", str(self.old.encoder)]
        for s in sets:
            cmd += ["--set", s]
        return [*cmd, "--out", str(self.out)]


def new_dim(task: Task) -> int:
    """Feature dimension of a finished compat run (``compat/new_dim`` of its metrics)."""
    return int(json.loads((task.out / "metrics.json").read_text())["compat/new_dim"])


def old_dim(task: Task) -> int:
    """Feature dimension of a finished run's exported encoder."""
    from ..models.export import load_encoder

    return int(load_encoder(task.encoder)[1]["dim"])


def _width(recipe: Path) -> int:
    from ..recipe import load_recipe

    w = load_recipe(recipe).model.width
    return int(w or 64)


def _channels(recipe: Path, last: Callable[[], int]) -> Callable[[], list[str]]:
    """A late override giving the ResNet's last stage ``last()`` channels (BT²/OCA feature widths)."""

    def late() -> list[str]:
        w = _width(recipe)
        return [f"model.kwargs.channels=[{w},{2 * w},{4 * w},{last()}]"]

    return late
