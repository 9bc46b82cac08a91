"""``selfsup eval equivariance``: SIE's protocols (classification per part, rotation/colour R², MRR, Hit@k, PRE)."""

from __future__ import annotations

GROUP = "eval"
NAME = "equivariance"
HELP = (
    "equivariance evaluations on a 3DIEBench-layout dataset: linear top-1 per part, rotation and colour R², "
    "and for SIE encoders MRR, Hit@k and PRE"
)


def add_arguments(p) -> None:
    from ._common import add_eval_args

    add_eval_args(p)
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs of every head (default: the recipe's, else 300)"
    )
    p.add_argument("--hidden", type=int, default=None, help="width of the R² MLP heads (default 1024)")
    p.add_argument(
        "--equi-dims",
        type=int,
        default=None,
        help="evaluate the last N features as the equivariant part of an encoder without an SIE split",
    )
    p.add_argument(
        "--val-pairs", type=int, default=None, help="seeded view pairs per val object for R² (default 5)"
    )
    p.add_argument("--no-retrieval", action="store_true", help="skip MRR, Hit@k and PRE")


def run(args) -> int:
    from ._common import run_eval

    return run_eval(args, "equivariance")
