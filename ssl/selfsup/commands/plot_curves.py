"""``selfsup plot curves RUN_DIR``: training curves as a PNG."""

from __future__ import annotations

GROUP = "plot"
NAME = "curves"
HELP = "plot the training curves of a run (writes RUN_DIR/curves.png)"


def add_arguments(p) -> None:
    p.add_argument("run_dir")


def run(args) -> int:
    from ..report.plots import plot_run_curves

    path = plot_run_curves(args.run_dir)
    print(path)
    return 0
