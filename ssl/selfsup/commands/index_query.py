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

    from ..errors import IndexError_, UserError
    from ..index import query
    from ..index.cli_support import CliSource
    from ..index.identity import check_same_items, describe, same_label_space
    from ..index.manifest import read_manifest
    from ..utils.io import atomic_path, check_folder, write_metrics

    if args.k < 1:
        raise UserError(f"-k must be at least 1, got {args.k}")
    if args.show < 0:
        raise UserError(f"--show must be 0 or more, got {args.show}")
    if args.out:
        check_folder(args.out, "--out")  # before the search, not after it
    meta = read_manifest(args.index)
    src = CliSource(args, meta)  # queries: the index's own items unless --data says otherwise
    if args.exclude_self:
        check_same_items(meta, src.identity, Path(args.index), "query with --exclude-self", src.labels)
    elif src.from_dataset and meta.get("data") and not same_label_space(meta["data"], src.identity):
        raise IndexError_(
            f"cannot score queries from {describe(src.identity)} against the index at {args.index}, which "
            f"holds {describe(meta['data'])}: their labels do not share a label space; omit --data to "
            "query with the index's own data"
        )
    feats = src.features()
    q_labels = src.labels
    k = args.k + (1 if args.exclude_self else 0)
    res = query(args.index, feats, src.model_info, k, slice_dims=not args.no_slice)
    ids, scores, versions, hit_labels = res.item_ids, res.scores, res.versions, res.labels
    if args.exclude_self:
        rows = np.arange(feats.shape[0])
        own = rows[:, None] if ids.dtype.kind == "i" else rows.astype(str)[:, None]
        mask = ids != own
        mask[mask.all(axis=1), -1] = False  # own item not among the hits: drop the last one
        keep = ids.shape[1] - 1
        ids, scores, versions = (a[mask].reshape(-1, keep) for a in (ids, scores, versions))
        if hit_labels is not None:
            hit_labels = hit_labels[mask].reshape(-1, keep)

    for qi in range(min(args.show, ids.shape[0])):
        hits = ", ".join(f"{i}:{s:.3f}" for i, s in zip(ids[qi], scores[qi]))
        print(f"query {qi}: {hits}")

    metrics: dict[str, float] = {}
    if hit_labels is not None and q_labels is not None:
        rel = hit_labels == np.asarray(q_labels)[:, None]  # [Q, k] hit has the query's label
        for j in (1, 5):
            if j <= rel.shape[1]:
                metrics[f"index/top{j}"] = float(rel[:, :j].any(axis=1).mean())
        metrics[f"index/precision@{rel.shape[1]}"] = float(rel.mean())
    metrics["index/fraction_upgraded"] = res.fraction_upgraded  # of the generation searched
    for key, v in metrics.items():
        print(f"{key}: {v:.4f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "neighbours.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, item_ids=ids, scores=scores, versions=versions)
        write_metrics(out / "metrics.json", metrics)
    return 0
