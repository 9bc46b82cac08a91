"""Shared argument handling for the eval commands, and where their results go.

An evaluation on the run's own data (no ``--data``, or a spec that resolves to the data the
encoder was trained on) updates the run's ``metrics.json`` under the usual keys
(``knn/top1``...). An evaluation on other data never touches them: it goes to
``metrics-<data tag>.json`` beside it (the tag names the data: ``render3d-myrenders``), holding the
data spec under ``data``. Either way the metrics also go to TensorBoard (``eval/<key>``, or
``eval/<tag>/<key>``), and ``report.md`` is regenerated from the files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def add_eval_args(p) -> None:
    p.add_argument("--ckpt", required=True, help="encoder.pt or checkpoints/last.pt of a run")
    p.add_argument(
        "--data",
        default=None,
        help="data spec: digits | render3d[:DIR] | imagefolder:DIR | cifar10:DIR | beton:FILE "
        "(default: the checkpoint's training data; other data is written to metrics-<data>.json)",
    )
    p.add_argument(
        "--out", default=None, help="folder for metrics.json (default: the checkpoint's run folder)"
    )
    p.add_argument("--batch-size", type=int, default=256, help="feature-extraction batch (default 256)")


def _check_args(args) -> None:
    from ..errors import UserError

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    for k in getattr(args, "k", None) or []:
        if k < 1:
            raise UserError(f"--k must be at least 1 neighbour, got {k}")
    for flag in ("epochs",):
        v = getattr(args, flag, None)
        if v is not None and v < 1:
            raise UserError(f"--{flag} must be at least 1, got {v}")
    for flag in ("lr", "temperature"):
        v = getattr(args, flag, None)
        if v is not None and not v > 0:
            raise UserError(f"--{flag} must be positive, got {v}")


def data_tag(spec: str, cfg) -> str:
    """A file- and TensorBoard-safe name of the data: ``render3d``, ``render3d-myrenders``."""
    tag = cfg.source
    if cfg.path:
        stem = Path(str(cfg.path).replace("{split}", "split")).stem
        tag += f"-{stem}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tag).strip("._") or "data"


def _describe(cfg) -> str:
    return f"{cfg.source}:{Path(cfg.path).resolve()}" if cfg.path else cfg.source


def _other_data_path(run_dir: Path, tag: str, described: str) -> tuple[Path, str]:
    """``metrics-<tag>.json``; a tag already used by other data gets a short hash of the path."""
    import hashlib

    from ..report.run_report import read_json

    path = run_dir / f"metrics-{tag}.json"
    old = read_json(path)
    if isinstance(old, dict) and old.get("data") not in (None, described):
        tag = f"{tag}-{hashlib.sha256(described.encode()).hexdigest()[:6]}"
        path = run_dir / f"metrics-{tag}.json"
    return path, tag


def run_eval(args, task: str) -> int:
    from ..config import DataConfig, EvalConfig, from_dict, to_dict
    from ..engine.logging import log_scalars
    from ..errors import CheckpointError, UserError
    from ..eval.features import parse_data_spec
    from ..eval.runner import evaluate
    from ..models.export import load_encoder
    from ..report.run_report import read_json, write_run_report
    from ..utils.io import check_folder, write_metrics

    _check_args(args)
    run_dir = Path(args.out) if args.out else Path(args.ckpt).resolve().parent
    if run_dir.name == "checkpoints" and not args.out:
        run_dir = run_dir.parent
    check_folder(run_dir, "--out")
    encoder, info = load_encoder(args.ckpt)
    recipe = info.get("recipe") or {}
    try:
        base = from_dict(DataConfig, recipe["data"]) if recipe.get("data") else None
        ecfg = from_dict(EvalConfig, recipe.get("eval") or {})
    except UserError as e:
        raise CheckpointError(f"'{args.ckpt}' carries a recipe this selfsup cannot read ({e})") from None
    if base is None and not args.data:
        raise UserError(f"'{args.ckpt}' carries no recipe; pass --data (e.g. --data digits)")
    data_cfg = parse_data_spec(args.data, base)
    own = base is not None and to_dict(data_cfg) == to_dict(base)
    ecfg.batch_size = args.batch_size
    if getattr(args, "epochs", None):
        ecfg.linear.epochs = args.epochs
    if getattr(args, "lr", None):
        ecfg.linear.lr = args.lr
    if getattr(args, "k", None):
        ecfg.knn.k = args.k
    if getattr(args, "temperature", None):
        ecfg.knn.temperature = args.temperature
    metrics = evaluate(encoder, info, data_cfg, ecfg, [task], run_dir / "features", seed=0)
    run_metrics = read_json(run_dir / "metrics.json")
    step = int(run_metrics.get("train/steps", 0)) if isinstance(run_metrics, dict) else 0
    if own:
        target = run_dir / "metrics.json"
        write_metrics(target, metrics)
        log_scalars(run_dir, metrics, step, prefix="eval/")
    else:
        described = _describe(data_cfg)
        target, tag = _other_data_path(run_dir, data_tag(args.data, data_cfg), described)
        write_metrics(target, {"data": described, **metrics})
        log_scalars(run_dir, metrics, step, prefix=f"eval/{tag}/")
    if (run_dir / "config.yaml").exists():
        write_run_report(run_dir)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"wrote {target}" + ("" if own else f" (data {data_cfg.source}, not the run's own metrics)"))
    return 0
