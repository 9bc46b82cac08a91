"""``selfsup index query``: search a gallery index with a (compatible) model's queries."""

from __future__ import annotations

import argparse

GROUP = "index"
NAME = "query"
HELP = "search a gallery index with the same or a declared-compatible newer model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..index.cli_support import add_source_args

    parser.add_argument("--index", required=True, metavar="DIR", help="index folder")
    add_source_args(parser)
    parser.add_argument("-k", type=int, default=10, help="neighbours per query (default: 10)")
    parser.add_argument(
        "--exclude-self",
        action="store_true",
        help="drop the hit whose item id equals the query's row (queries = the indexed items)",
    )
    parser.add_argument("--no-slice", action="store_true", help="refuse queries wider than the index")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write neighbours.npz and, when both sides have labels, metrics.json (index/top1, index/top5)",
    )
    parser.add_argument("--show", type=int, default=3, metavar="N", help="print the first N queries' hits")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import UserError
    from ..index import info, labels, query
    from ..index.cli_support import features_from_cli, model_info_from_args
    from ..utils.io import atomic_path, write_metrics

    if args.k < 1:
        raise UserError(f"-k must be at least 1, got {args.k}")
    model_info = model_info_from_args(args)
    feats, q_labels = features_from_cli(args)
    k = args.k + (1 if args.exclude_self else 0)
    res = query(args.index, feats, model_info, k, slice_dims=not args.no_slice)
    ids, scores, versions, pos = res.item_ids, res.scores, res.versions, res.positions
    if args.exclude_self:
        rows = np.arange(feats.shape[0])
        own = rows[:, None] if ids.dtype.kind == "i" else rows.astype(str)[:, None]
        mask = ids != own
        mask[mask.all(axis=1), -1] = False  # own item not among the hits: drop the last one
        keep = ids.shape[1] - 1
        ids, scores, versions, pos = (a[mask].reshape(-1, keep) for a in (ids, scores, versions, pos))

    for qi in range(min(args.show, ids.shape[0])):
        hits = ", ".join(f"{i}:{s:.3f}" for i, s in zip(ids[qi], scores[qi]))
        print(f"query {qi}: {hits}")

    metrics: dict[str, float] = {}
    g_labels = labels(args.index)
    if g_labels is not None and q_labels is not None:
        rel = g_labels[pos] == np.asarray(q_labels)[:, None]  # [Q, k] hit has the query's label
        for j in (1, 5):
            if j <= rel.shape[1]:
                metrics[f"index/top{j}"] = float(rel[:, :j].any(axis=1).mean())
        metrics[f"index/precision@{rel.shape[1]}"] = float(rel.mean())
    desc = info(args.index, verify=False)
    metrics["index/fraction_upgraded"] = desc["fraction_upgraded"]
    for key, v in metrics.items():
        print(f"{key}: {v:.4f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "neighbours.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, item_ids=ids, scores=scores, versions=versions)
        write_metrics(out / "metrics.json", metrics)
    return 0
