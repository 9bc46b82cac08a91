"""``selfsup compat train --old CKPT RECIPE``: train a new model compatible with an old one.

Sets ``compat.old`` from ``--old``, trains and evaluates like ``selfsup pretrain``, then adds the
compatibility retrieval evaluation (old/old, new/old, new/new on the whole test split) to
``metrics.json`` as ``compat/<top1|top5|map>/<old_old|new_old|new_new>`` and
``compat/criterion``.
"""

from __future__ import annotations

NAME = "train"
GROUP = "compat"
HELP = "train a new model backward-compatible with an old encoder (BCT, BT², OCA, Hot-Refresh)"


def add_arguments(p) -> None:
    p.add_argument("recipe", help="YAML recipe with a compat section, e.g. recipes/compat/new_bct.yaml")
    p.add_argument("--old", required=True, help="the old model's encoder.pt (sets compat.old)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set compat.teacher=runs/new/encoder.pt (repeatable)",
    )
    p.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    p.add_argument("--no-eval", action="store_true", help="skip all evaluations")


def compat_train(
    recipe_src,
    old: str,
    overrides: list[str] | None = None,
    out: str | None = None,
    evaluate: bool = True,
    quiet: bool = False,
) -> dict:
    """Train ``recipe_src`` (path or dict) against ``old``; returns the run's metrics."""
    from pathlib import Path

    from ..engine.logging import log_scalars
    from ..errors import ConfigError
    from ..eval.compat_retrieval import check_comparable, compat_retrieval
    from ..models.export import load_encoder
    from ..recipe import load_recipe
    from ..report.run_report import write_run_report
    from ..utils.io import write_metrics
    from ..workflow import pretrain_and_evaluate

    recipe = load_recipe(recipe_src, overrides)
    if recipe.compat is None:
        raise ConfigError(
            "the recipe has no compat section; add e.g. 'compat: {name: bct}' "
            "(independent, bct, bt2, oca, hotrefresh) or pass --set compat.name=bct"
        )
    recipe.compat.old = str(old)
    out = out or f"runs/{recipe.name}"
    metrics = pretrain_and_evaluate(recipe, out, evaluate=evaluate, quiet=quiet)
    if not evaluate:
        return metrics
    run_dir = Path(out)
    new = run_dir / "encoder.pt"
    if not new.exists():  # a non-main process of a distributed run
        return metrics
    _, ninfo = load_encoder(new)
    _, oinfo = load_encoder(old)
    check_comparable(int(oinfo["dim"]), int(ninfo["dim"]), str(old), str(new))
    cm = compat_retrieval(old, new, recipe.data, run_dir / "features", recipe.eval.batch_size)
    metrics.update(cm)
    write_metrics(run_dir / "metrics.json", cm)
    log_scalars(run_dir, cm, int(metrics.get("train/steps", 0)), prefix="eval/")
    write_run_report(run_dir)  # from metrics.json: gains the compatibility table
    if not quiet:
        print(_table(cm))
    return metrics


def _table(cm: dict) -> str:
    lines = ["", f"{'compat retrieval':<18}{'top1':>8}{'top5':>8}{'mAP':>8}"]
    for pair in ("old_old", "new_old", "new_new"):
        cells = "".join(f"{100 * cm[f'compat/{m}/{pair}']:8.1f}" for m in ("top1", "top5", "map"))
        lines.append(f"{pair.replace('_', '/'):<18}{cells}")
    ok = "met" if cm["compat/criterion"] else "NOT met"
    lines.append(f"criterion new/old > old/old (top-1): {ok}")
    return "\n".join(lines)


def run(args) -> int:
    compat_train(args.recipe, args.old, args.overrides, args.out, evaluate=not args.no_eval)
    return 0
