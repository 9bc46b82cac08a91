"""``selfsup plot scores RUN [RUN ...]``: positive/negative score curves and distributions."""

from __future__ import annotations

GROUP = "plot"
NAME = "scores"
HELP = (
    "plot positive/negative score statistics of contrastive runs (scores.json), several runs "
    "overlaid; one run: writes RUN/scores.png"
)


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories holding scores.json")
    p.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=None,
        help="epochs whose distributions to draw (default: first, middle, last)",
    )
    p.add_argument("--labels", nargs="+", default=None, help="legend names, one per run")
    p.add_argument(
        "--out",
        default=None,
        help="PNG path (default: RUN/scores.png for one run, ./scores_compare.png for several)",
    )


def run(args) -> int:
    from pathlib import Path

    from ..report.scores import plot_scores

    if args.out:
        out = Path(args.out)
    elif len(args.runs) == 1:
        out = Path(args.runs[0]) / "scores.png"
    else:
        out = Path("scores_compare.png")
    print(plot_scores(args.runs, out, epochs=args.epochs, labels=args.labels))
    return 0
