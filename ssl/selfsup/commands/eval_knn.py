"""``selfsup eval knn``: weighted kNN classifier (faiss)."""

from __future__ import annotations

GROUP = "eval"
NAME = "knn"
HELP = "weighted kNN classification (cosine, faiss) on frozen features"


def add_arguments(p) -> None:
    from ._common import add_eval_args

    add_eval_args(p)
    p.add_argument("--k", type=int, nargs="+", default=None, help="neighbours (default: 20 200)")
    p.add_argument("--temperature", type=float, default=None)


def run(args) -> int:
    from ._common import run_eval

    return run_eval(args, "knn")
