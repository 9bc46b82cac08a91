"""Pretrain, evaluate, report: what ``selfsup pretrain`` and ``selfsup demo`` run."""

from __future__ import annotations

import json
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
    from .utils.io import write_metrics

    write_metrics(run_dir / "metrics.json", metrics)
    report = write_run_report(recipe, run_dir, metrics, rows)
    if not quiet:
        print_summary(rows, metrics, report)
    return metrics


def evaluate_run(recipe: Recipe, run_dir: Path, rows: dict) -> dict:
    from .eval.runner import evaluate
    from .models.export import load_encoder

    encoder, info = load_encoder(run_dir / "encoder.pt")
    tasks = recipe.eval.run
    m = evaluate(
        encoder,
        info,
        recipe.data,
        recipe.eval,
        tasks,
        run_dir / "features",
        seed=recipe.seed,
        out_dir=run_dir,
    )
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
    return out


HEADLINE = [
    "linear/top1",
    "linear/top5",
    "linear/top1_inv",
    "linear/top1_equi",
    "knn/top1",
    "knn/top5",
    "retrieval/top1",
    "retrieval/map",
    "equi/rotation_r2",
    "equi/rotation_r2_equi",
    "equi/color_r2",
    "equi/mrr",
    "equi/hit@1",
    "equi/pre",
]


def write_run_report(recipe: Recipe, run_dir: Path, metrics: dict, rows: dict) -> Path:
    from .report.plots import plot_curves
    from .report.report import fmt, metrics_table, write_report

    hist_path = run_dir / "history.json"
    history = json.loads(hist_path.read_text()) if hist_path.exists() else []
    curves = plot_curves(history, run_dir / "curves.png", title=recipe.name)
    sections = []
    if rows:
        keys = [k for k in HEADLINE if any(k in r for r in rows.values())]
        sections.append(("Evaluation", metrics_table(rows, keys)))
    train_keys = [
        "train/steps",
        "train/epochs",
        "train/final_loss",
        "train/img_per_s",
        "train/wall_s",
        "run/wall_s",
    ]
    sections.append(("Training", "\n".join(f"- {k}: {fmt(metrics[k])}" for k in train_keys if k in metrics)))
    backbone = recipe.model.backbone + (f" (width {recipe.model.width})" if recipe.model.width else "")
    sections.append(
        (
            "Run",
            f"- method: {recipe.method.name}\n- backbone: {backbone}\n- data: {recipe.data.source} "
            f"at {recipe.data.image_size}px, batch {recipe.data.batch_size}\n- seed: {recipe.seed}\n"
            "- files: config.yaml, metrics.json, checkpoints/last.pt, encoder.pt, tb/",
        )
    )
    extra = [p for p in sorted(run_dir.glob("*.png")) if p.name != "curves.png"]
    return write_report(run_dir, f"selfsup run: {recipe.name}", sections, [curves, *extra])


def print_summary(rows: dict, metrics: dict, report: Path) -> None:
    from .report.report import fmt

    if rows:
        keys = [k for k in HEADLINE if any(k in r for r in rows.values())]
        width = max(len(n) for n in rows) + 2
        cols = [max(16, len(k) + 2) for k in keys]
        print("\n" + "model".ljust(width) + "".join(k.rjust(c) for k, c in zip(keys, cols)))
        for name, m in rows.items():
            print(
                name.ljust(width) + "".join(fmt(m.get(k, float("nan"))).rjust(c) for k, c in zip(keys, cols))
            )
    print(
        f"\ntrained {int(metrics.get('train/steps', 0))} steps in {metrics.get('train/wall_s', 0):.0f}s; "
        f"report: {report}"
    )
