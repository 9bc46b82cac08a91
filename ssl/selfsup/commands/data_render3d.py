"""``selfsup data render3d``: render a small 3DIEBench-layout dataset of procedural 3D shapes."""

from __future__ import annotations

import argparse

GROUP = "data"
NAME = "render3d"
HELP = "render a 3DIEBench-layout dataset (shapes under known rotations and lights) into a folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (reused if it holds the same dataset)"
    )
    p.add_argument("--classes", type=int, default=10, help="number of shape classes (default 10)")
    p.add_argument("--objects", type=int, default=20, help="objects per class (default 20)")
    p.add_argument("--views", type=int, default=10, help="views per object (default 10)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.render3d import render_dataset
    from ..errors import DataError

    for name in ("classes", "objects", "views", "size", "workers"):
        if getattr(args, name) < 1:
            raise DataError(f"--{name} must be at least 1")
    res = render_dataset(
        args.out,
        num_classes=args.classes,
        objects_per_class=args.objects,
        views_per_object=args.views,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
    )
    if res.get("cached"):
        print(
            f"{res.get('path', args.out)} already holds this dataset ({res.get('images')} images); nothing to do"
        )
    else:
        print(
            f"rendered {res.get('images')} images into {res.get('path', args.out)} in {res.get('seconds', 0):.1f} s "
            f"({res.get('images_per_s', 0):.0f} images/s)"
        )
    return 0
