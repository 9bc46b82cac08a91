"""Pretrain, evaluate, report: what ``selfsup pretrain`` and ``selfsup demo`` run."""

from __future__ import annotations

import time
from pathlib import Path

from .config import Recipe


def pretrain_and_evaluate(
    recipe: Recipe, out: str | Path, resume: bool = False, evaluate: bool = True, quiet: bool = False
) -> dict:
    from .engine.trainer import Trainer

    t0 = time.time()
    trainer = Trainer(recipe, out, resume)
    summary = trainer.fit()
    if not trainer.is_main:
        return summary
    metrics = dict(summary)
    run_dir = Path(out)
    rows: dict[str, dict] = {}
    if evaluate and recipe.eval.run:
        metrics.update(evaluate_run(recipe, run_dir, rows))
    metrics["run/wall_s"] = time.time() - t0
    from .engine.logging import log_scalars
    from .report.run_report import EVAL_KEYS, write_run_report
    from .utils.io import write_metrics

    write_metrics(run_dir / "metrics.json", metrics)
    evals = {k: v for k, v in metrics.items() if k.startswith(EVAL_KEYS)}
    log_scalars(run_dir, evals, int(metrics.get("train/steps", 0)), prefix="eval/")
    report = write_run_report(run_dir)
    if not quiet:
        print_summary(rows, metrics, report)
    return metrics


def evaluate_run(recipe: Recipe, run_dir: Path, rows: dict) -> dict:
    from .eval.runner import evaluate
    from .models.export import load_encoder

    encoder, info = load_encoder(run_dir / "encoder.pt")
    tasks = recipe.eval.run
    m = evaluate(encoder, info, recipe.data, recipe.eval, tasks, run_dir / "features", seed=recipe.seed)
    rows["pretrained"] = m
    out = dict(m)
    if recipe.eval.compare_random_init:
        import torch

        from .models.backbones import create_backbone
        from .models.export import fingerprint

        torch.manual_seed(recipe.seed)
        rnd = create_backbone(recipe.model).eval()
        rinfo = {"fingerprint": fingerprint(rnd)}
        rm = evaluate(rnd, rinfo, recipe.data, recipe.eval, tasks, run_dir / "features", seed=recipe.seed)
        rows["random init"] = rm
        out.update({f"random_init/{k}": v for k, v in rm.items()})
    if recipe.eval.compare_raw_pixels:
        import torch

        # The input pixels (after the loader's resize and normalisation) as features: the probe on
        # them is multinomial logistic regression on raw pixels, the baseline any feature must beat.
        pixels, pinfo = torch.nn.Flatten(), {"fingerprint": "raw-pixels"}
        pm = evaluate(pixels, pinfo, recipe.data, recipe.eval, tasks, run_dir / "features", seed=recipe.seed)
        rows["raw pixels"] = pm
        out.update({f"raw_pixels/{k}": v for k, v in pm.items()})
    return out


def print_summary(rows: dict, metrics: dict, report: Path) -> None:
    from .report.report import fmt
    from .report.run_report import HEADLINE

    if rows:
        keys = [k for k in HEADLINE if any(k in r for r in rows.values())]
        width = max(len(n) for n in rows) + 2
        print("\n" + "model".ljust(width) + "".join(k.rjust(16) for k in keys))
        for name, m in rows.items():
            print(name.ljust(width) + "".join(fmt(m.get(k, float("nan"))).rjust(16) for k in keys))
    print(
        f"\ntrained {int(metrics.get('train/steps', 0))} steps in {metrics.get('train/wall_s', 0):.0f}s; "
        f"report: {report}"
    )
