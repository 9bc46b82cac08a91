"""``selfsup compat matrix``: compatibility matrix, AC/AM and update gain over model versions."""

from __future__ import annotations

import argparse

GROUP = "compat"
NAME = "matrix"
HELP = "compatibility matrix over model versions (oldest first): cross-model retrieval, AC, AM, heat maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", nargs="+", required=True, metavar="CKPT", help="checkpoints, oldest first (at least 2)"
    )
    parser.add_argument("--data", required=True, metavar="SPEC", help="test data, e.g. 'digits'")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="writes metrics.json and compat_*.png here"
    )
    parser.add_argument("--split", default="test", help="split used as query = gallery (default: test)")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="model names for the plots")
    parser.add_argument(
        "--independent",
        metavar="CKPT",
        help="an independently trained counterpart of the last model (new*), for the update gain",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="embedding batch size (256)")
    parser.add_argument(
        "--no-slice",
        action="store_true",
        help="refuse models of different dims instead of truncating to the smaller (old) one",
    )


def _name(path: str) -> str:
    from ..models.export import load_encoder

    _, info = load_encoder(path)
    return str(info.get("model_id") or path)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import DataError, UserError
    from ..eval.compatibility import compat_matrices, compat_metrics, plot_compat_matrix, update_gain
    from ..eval.features import features_from_args
    from ..eval.retrieval import retrieval_metrics
    from ..utils.io import write_metrics

    if len(args.models) < 2:
        raise UserError("--models needs at least 2 checkpoints (oldest first) to compare")
    if args.names and len(args.names) != len(args.models):
        raise UserError(f"--names gives {len(args.names)} names for {len(args.models)} models")
    names = args.names or [_name(p) for p in args.models]

    feats, labels = [], None
    for path in args.models:
        f, y = features_from_args(path, args.data, args.split, args.batch_size)
        y = np.asarray(y)
        if labels is not None and not np.array_equal(labels, y):
            raise DataError(
                f"{path} embedded different items than {args.models[0]}; use the same --data/--split"
            )
        feats.append(np.asarray(f, dtype=np.float32))
        labels = y

    mats = compat_matrices(feats, labels, slice_dims=not args.no_slice, progress=True)
    metrics = compat_metrics(mats, ac_metric="top1")
    T = len(feats)
    if args.independent:
        f_ind, y_ind = features_from_args(args.independent, args.data, args.split, args.batch_size)
        if not np.array_equal(np.asarray(y_ind), labels):
            raise DataError("--independent embedded different items; use the same --data/--split")
        ind = retrieval_metrics(f_ind, labels, prefix="ind")
        for m in ("top1", "map"):
            metrics[f"compat/independent/{m}"] = ind[f"ind/{m}"]
            M = mats[m]
            for i in range(T - 1):
                metrics[f"compat/gain/{m}/q{T - 1}_g{i}"] = update_gain(M[T - 1, i], M[i, i], ind[f"ind/{m}"])
        metrics["compat/gain"] = metrics[f"compat/gain/top1/q{T - 1}_g{T - 2}"]
    metrics = {k: v for k, v in metrics.items() if not (isinstance(v, float) and np.isnan(v))}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out / "metrics.json", metrics)
    for m in ("top1", "map"):
        plot_compat_matrix(mats[m], names, out / f"compat_{m}.png", metric=m)

    w = max(len(n) for n in names)
    print("top-1 (%), rows = query model, columns = gallery model")
    for t in range(T):
        cells = " ".join(f"{100 * mats['top1'][t, i]:6.1f}" for i in range(t + 1))
        print(f"{names[t]:<{w}} {cells}")
    print(f"AC {metrics.get('compat/ac', float('nan')):.2f}  AM {100 * metrics['compat/am']:.1f}")
    if "compat/gain" in metrics:
        print(f"update gain (top-1, {names[-1]} vs {names[-2]}): {metrics['compat/gain']:.3f}")
    print(f"wrote {out / 'metrics.json'} and compat_top1.png, compat_map.png")
    return 0
