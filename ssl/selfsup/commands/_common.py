"""Shared argument handling for the eval commands."""

from __future__ import annotations

import json
from pathlib import Path


def add_eval_args(p) -> None:
    p.add_argument("--ckpt", required=True, help="encoder.pt or checkpoints/last.pt of a run")
    p.add_argument(
        "--data",
        default=None,
        help="data spec: digits | render3d[:DIR] | imagefolder:DIR | cifar10:DIR | beton:FILE "
        "(default: the checkpoint's training data)",
    )
    p.add_argument(
        "--out", default=None, help="folder for metrics.json (default: the checkpoint's run folder)"
    )
    p.add_argument("--batch-size", type=int, default=256)


def run_eval(args, task: str) -> int:
    from ..config import EvalConfig, from_dict
    from ..eval.features import parse_data_spec
    from ..eval.runner import evaluate
    from ..models.export import load_encoder
    from ..utils.io import write_metrics

    encoder, info = load_encoder(args.ckpt)
    recipe = info.get("recipe") or {}
    from ..config import DataConfig

    base = from_dict(DataConfig, recipe["data"]) if recipe.get("data") else None
    if base is None and not args.data:
        from ..errors import UserError

        raise UserError(f"'{args.ckpt}' carries no recipe; pass --data (e.g. --data digits)")
    data_cfg = parse_data_spec(args.data, base)
    ecfg = from_dict(EvalConfig, recipe.get("eval") or {})
    ecfg.batch_size = args.batch_size
    if task == "equivariance":
        eq = ecfg.equivariance
        for name in ("epochs", "hidden", "equi_dims", "val_pairs"):
            if getattr(args, name, None) is not None:
                setattr(eq, name, getattr(args, name))
        if getattr(args, "no_retrieval", False):
            eq.retrieval = False
    elif getattr(args, "epochs", None):
        ecfg.linear.epochs = args.epochs
    if getattr(args, "lr", None):
        ecfg.linear.lr = args.lr
    if getattr(args, "k", None):
        ecfg.knn.k = args.k
    if getattr(args, "temperature", None):
        ecfg.knn.temperature = args.temperature
    run_dir = Path(args.out) if args.out else Path(args.ckpt).resolve().parent
    if run_dir.name == "checkpoints":
        run_dir = run_dir.parent
    # The equivariance heads draw views and pairs from the seed: the run's, to reproduce its numbers.
    seed = int(recipe.get("seed", 0)) if task == "equivariance" else 0
    metrics = evaluate(
        encoder, info, data_cfg, ecfg, [task], run_dir / "features", seed=seed, out_dir=run_dir
    )
    write_metrics(run_dir / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0
