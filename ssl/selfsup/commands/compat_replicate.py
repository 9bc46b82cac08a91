"""``selfsup compat replicate``: rerun the backward-compatibility evidence and rewrite its docs.

Trains, for each seed, from the recipes in ``--recipes`` (default ``recipes/compat/``):

- the **old -> new table**: ``old.yaml`` (half the classes), then on all classes
  ``new_independent.yaml``, ``new_bct.yaml``, ``new_bt2.yaml`` (distilling from the independent
  model) and ``new_oca.yaml``, each against the old model;
- the **3-step sequences**, one per method (BCT, BT², OCA): v1 = the old model, v2 = the method's
  recipe on the ``--step-classes`` against v1, v3 = the recipe on all classes against v2 (BT²'s
  teachers: an independent model on v2's classes, then the all-class one);
- with ``--ablations``, the old defaults that the investigation replaced, for the first seed
  (see ``docs/methods/compat.md``).

Each run is a ``selfsup pretrain`` / ``selfsup compat train`` subprocess in ``--out/s<seed>/<run>``
(finished runs are kept and skipped, so an interrupted replication resumes); ``--jobs`` run at
once, each prefixed by ``--launcher`` if given (e.g. a CPU-slot wrapper or ``srun``). Then the
report (:mod:`selfsup.commands._compat_report`) embeds the test split once per model and writes
``results_compat.md``, the matrix and table pictures into ``--docs`` and ``summary.json`` into
``--out``.
"""

from __future__ import annotations

import argparse

GROUP = "compat"
NAME = "replicate"
HELP = "rerun the BCT / BT² / OCA replication (old->new table, 3-step sequences) and rewrite docs/"

METHODS = ("bct", "bt2", "oca")
STEP_CLASSES = ",".join(f"{10 * a}-{10 * a + 8}" for a in range(9))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipes", default="recipes/compat", help="folder with old.yaml and new_*.yaml")
    p.add_argument("--out", default="runs/compat_replication", help="run folders, logs, summary.json")
    p.add_argument("--docs", default="docs", help="where results_compat.md and the pictures go")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (0 1 2)")
    p.add_argument(
        "--step-classes",
        default=STEP_CLASSES,
        metavar="SPEC",
        help="classes of the sequences' v2, e.g. '0-8,10-18' (default: the two-digit numbers with both "
        "digits 0-8, between the old model's 0-6 and all)",
    )
    p.add_argument("--no-sequence", action="store_true", help="only the old -> new table")
    p.add_argument("--ablations", action="store_true", help="also the replaced defaults (first seed)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (1)")
    p.add_argument("--launcher", default="", help="command prefixed to every run, e.g. 'srun -c1'")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1)")
    p.add_argument("--epochs", type=int, help="override train.epochs of every recipe")
    p.add_argument("--max-steps", type=int, help="smoke test: stop every run after N steps")
    p.add_argument("--report-only", action="store_true", help="no training: report on the runs in --out")


def parse_classes(spec: str) -> list[int]:
    """``'0-2,5,7-8'`` -> ``[0, 1, 2, 5, 7, 8]``."""
    from ..errors import UserError

    out: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise UserError(f"--step-classes: '{spec}' is not a list of classes like '0-8,10-18'") from None
    if not out:
        raise UserError("--step-classes: no classes given")
    return sorted(set(out))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ._compat_report import report
    from ._compat_runs import plan, run_tasks

    recipes, out = Path(args.recipes), Path(args.out)
    missing = [
        n
        for n in ("old", "new_independent", *(f"new_{m}" for m in METHODS))
        if not (recipes / f"{n}.yaml").is_file()
    ]
    if missing:
        raise UserError(f"--recipes '{recipes}' lacks {', '.join(m + '.yaml' for m in missing)}")
    if args.jobs < 1 or args.threads < 1:
        raise UserError("--jobs and --threads must be at least 1")
    args.step_classes = parse_classes(args.step_classes)
    tasks = plan(recipes, out, args)
    if not args.report_only:
        run_tasks(tasks, out, args)
    else:
        unfinished = [t.name for t in tasks if not t.done()]
        if unfinished:
            raise UserError(
                f"--report-only: {len(unfinished)} runs in '{out}' are not finished ({unfinished[0]}, ...); "
                "run without --report-only first"
            )
    report(tasks, recipes, out, Path(args.docs), args)
    return 0
