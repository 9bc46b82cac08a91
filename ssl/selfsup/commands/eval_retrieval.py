"""``selfsup eval retrieval``: CMC top-1/top-5 and mAP with faiss (query = gallery = test set)."""

from __future__ import annotations

GROUP = "eval"
NAME = "retrieval"
HELP = "image retrieval on the test split: CMC top-1/top-5 and mAP (faiss, own item excluded)"


def add_arguments(p) -> None:
    from ._common import add_eval_args

    add_eval_args(p)


def run(args) -> int:
    from ._common import run_eval

    return run_eval(args, "retrieval")
