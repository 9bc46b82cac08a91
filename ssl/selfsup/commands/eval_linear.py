"""``selfsup eval linear``: linear probe on frozen features."""

from __future__ import annotations

GROUP = "eval"
NAME = "linear"
HELP = "linear probe on frozen features of a checkpoint"


def add_arguments(p) -> None:
    from ._common import add_eval_args

    add_eval_args(p)
    p.add_argument("--epochs", type=int, default=None, help="probe epochs (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None)


def run(args) -> int:
    from ._common import run_eval

    return run_eval(args, "linear")
