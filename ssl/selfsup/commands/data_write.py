"""``selfsup data write``: convert a dataset to an FFCV ``.beton`` (plus its JSON sidecar)."""

from __future__ import annotations

import argparse

GROUP = "data"
NAME = "write"
HELP = "write a dataset (digits, cifar10, imagefolder, render3d, ...) to an FFCV .beton file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source", required=True, help="digits | cifar10 | cifar100 | imagefolder | render3d | 3diebench"
    )
    p.add_argument("--path", default=None, help="the source's root folder (not needed for digits)")
    p.add_argument(
        "--split", default="train", choices=["train", "val", "test"], help="split to write (default train)"
    )
    p.add_argument(
        "--out", required=True, metavar="FILE.beton", help="output file; FILE.beton.json is written beside it"
    )
    p.add_argument(
        "--mode",
        default="jpg",
        choices=["jpg", "raw", "proportion", "smart"],
        help="image storage: jpg (default), raw pixels (exact, large), proportion (half JPEG), "
        "smart (raw up to 256x256, JPEG above)",
    )
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    p.add_argument(
        "--max-side", type=int, default=None, metavar="N", help="shrink images whose longer side exceeds N px"
    )
    p.add_argument(
        "--on-error",
        default="fatal",
        choices=["fatal", "skip"],
        help="unreadable images: stop (default) or leave them out and list them in the sidecar",
    )
    p.add_argument(
        "--image-size", type=int, default=32, help="image size for generated sources such as digits"
    )
    p.add_argument("--workers", type=int, default=None, help="writer processes (default: up to 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..config import DataConfig
    from ..data.beton import write_beton
    from ..data.catalog import build_source
    from ..errors import DataError

    if args.source == "beton":
        raise DataError(
            "--source beton: the input is already a .beton; use `selfsup data info` to describe it"
        )
    cfg = DataConfig(source=args.source, path=args.path, image_size=args.image_size)
    source = build_source(cfg, args.split)
    info = write_beton(
        source,
        args.out,
        image_mode=args.mode,
        jpeg_quality=args.quality,
        max_side=args.max_side,
        on_error=args.on_error,
        workers=args.workers,
        progress=not args.quiet,
        split=args.split,
    )
    mb = info["file_size"] / 2**20
    print(
        f"wrote {info['count']} images of {info['source']} ({args.split}) to {args.out}: {mb:.1f} MiB in {info['seconds']:.1f} s"
    )
    for s in info["skipped"]:
        print(f"skipped {s['path'] or 'sample ' + str(s['index'])}: {s['error']}")
    return 0
