"""The runs behind ``selfsup compat replicate``: what to train, in which order, as subprocesses.

Each run is a task with its dependencies (the old model it is compatible with, BT²'s teacher).
Tasks run as ``python -m selfsup.cli ...`` subprocesses so that ``--jobs`` of them can share the
machine, and each one's CPU time is measured from its own ``wait4`` resource usage.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ._compat_ablations import ablations
from ._compat_tasks import SEED_OFFSETS, Task, _channels, new_dim


def plan(recipes: Path, out: Path, args) -> list[Task]:
    """Every run of the replication, dependencies before dependants."""
    tasks: list[Task] = []
    step = "data.classes=[" + ",".join(str(c) for c in args.step_classes) + "]"

    def add(name, kind, recipe, seed, role, *over, old=None, teacher=None, late=None) -> Task:
        t = Task(name, kind, recipes / recipe, out / name, [f"seed={seed}", *over], old, teacher, late, role)
        tasks.append(t)
        return t

    for s in args.seeds:
        p, o = f"s{s}/", SEED_OFFSETS
        old = add(p + "old", "pretrain", "old.yaml", s + o["old"], {"seed": s, "table": "old", "seq": "v1"})
        ind = add(
            p + "new_independent", "compat", "new_independent.yaml", s + o["new"],
            {"seed": s, "table": "independent"}, old=old,
        )  # fmt: skip
        for m in METHODS:
            add(p + f"new_{m}", "compat", f"new_{m}.yaml", s + o["new"], {"seed": s, "table": m},
                old=old, teacher=ind if m == "bt2" else None)  # fmt: skip
        if not args.no_sequence:
            ind2 = add(p + "seq_independent_v2", "compat", "new_independent.yaml", s + o["v2"],
                       {"seed": s}, step, old=old)  # fmt: skip
            for m in METHODS:
                v2 = add(p + f"seq_{m}_v2", "compat", f"new_{m}.yaml", s + o["v2"],
                         {"seed": s, "seq": "v2", "method": m}, step,
                         old=old, teacher=ind2 if m == "bt2" else None)  # fmt: skip
                late = None
                if m == "bt2":  # f keeps the teacher's width; the backbone adds v2's dims for u
                    late = _channels(
                        recipes / "new_bt2.yaml", lambda v2=v2, ind=ind: new_dim(ind) + new_dim(v2)
                    )
                elif m == "oca":  # h = v2's dims + a quarter more
                    late = _channels(recipes / "new_oca.yaml", lambda v2=v2: new_dim(v2) + new_dim(v2) // 4)
                add(p + f"seq_{m}_v3", "compat", f"new_{m}.yaml", s + o["v3"],
                    {"seed": s, "seq": "v3", "method": m},
                    old=v2, teacher=ind if m == "bt2" else None, late=late)  # fmt: skip
        if args.ablations and s == args.seeds[0]:
            tasks += ablations(recipes, out, p, s, old, ind, add, args)
    return tasks


METHODS = ("bct", "bt2", "oca")


def _common(args) -> list[str]:
    common = ["train.progress=false"]
    if args.epochs:
        common.append(f"train.epochs={args.epochs}")
    if args.max_steps:
        common.append(f"train.max_steps={args.max_steps}")
    return common


def run_tasks(tasks: list[Task], out: Path, args) -> None:
    """Run the unfinished tasks, ``args.jobs`` at a time, dependencies first; record timings."""
    out.mkdir(parents=True, exist_ok=True)
    pending = [t for t in tasks if not t.done()]
    running: dict[int, tuple[Task, subprocess.Popen, float, object]] = {}
    launcher = shlex.split(args.launcher)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    common = _common(args)
    print(f"{len(tasks) - len(pending)} of {len(tasks)} runs already finished in {out}", flush=True)
    while pending or running:
        while len(running) < args.jobs:
            ready = next((t for t in pending if all(d.done() for d in t.deps)), None)
            if ready is None:
                break
            pending.remove(ready)
            if ready.out.exists():  # an interrupted or failed earlier attempt: start it afresh
                shutil.rmtree(ready.out)
                print(f"[clean] {ready.name}: removed its unfinished run folder", flush=True)
            ready.out.parent.mkdir(parents=True, exist_ok=True)
            log = open(ready.log, "w")  # noqa: SIM115 - closed when the run ends
            cmd = [*launcher, sys.executable, "-m", "selfsup.cli", *ready.argv(common)]
            log.write(" ".join(shlex.quote(c) for c in cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            running[proc.pid] = (ready, proc, time.time(), log)
            print(f"[start] {ready.name}", flush=True)
        if not running:
            blocked = ", ".join(t.name for t in pending)
            raise RuntimeError(f"runs {blocked} wait for dependencies that did not finish")
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        task, proc, t0, log = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.close()
        wall, cpu = time.time() - t0, usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            for _, p, _, _ in running.values():
                p.terminate()
            raise RuntimeError(f"run {task.name} failed (exit {proc.returncode}); see {task.log}")
        task.timing.write_text(json.dumps({"wall": wall, "cpu": cpu}))
        print(f"[done]  {task.name}: {wall:.0f}s wall, {cpu:.0f}s CPU", flush=True)
