"""``selfsup bench loader``: FFCV vs torchvision loader throughput, and the JPEG decode ceiling."""

from __future__ import annotations

import argparse

GROUP = "bench"
NAME = "loader"
HELP = (
    "images/s of the FFCV and torchvision training loaders (two SimCLR views, same images and "
    "workers) and of plain JPEG decoding"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--images", type=int, default=4096, help="images per epoch (default 4096)")
    p.add_argument("--workers", type=int, default=2, help="loader workers / threads for both (default 2)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument(
        "--mode", default="jpg", choices=["jpg", "raw"], help="how the images are stored (default jpg)"
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as flat JSON")


def run(args: argparse.Namespace) -> int:

    from ..data.bench import bench_loader
    from ..errors import UserError
    from ..utils.io import write_metrics

    if args.size < 8 or args.images < 1 or args.workers < 0 or args.batch_size < 2:
        raise UserError("need --size >= 8, --images >= 1, --workers >= 0 and --batch-size >= 2")
    res = bench_loader(
        size=args.size, images=args.images, workers=args.workers, batch_size=args.batch_size, mode=args.mode
    )
    rows = [
        ("FFCV loader", res["loader/ffcv_img_per_s"]),
        ("torchvision loader", res["loader/torchvision_img_per_s"]),
        ("decode only (ceiling)", res["loader/decode_img_per_s"]),
    ]
    print(
        f"{args.images} images of {args.size} px ({args.mode}), batch {args.batch_size}, {args.workers} workers"
    )
    for name, v in rows:
        print(f"  {name:<22} {v:>10.0f} images/s")
    print(f"  speedup FFCV / torchvision: {res['loader/speedup']:.2f}x")
    print(f"  decode ceiling / FFCV:      {res['loader/ffcv_vs_decode']:.2f}x")
    print(
        f"  warm-up (not timed): FFCV {res['loader/ffcv_warmup_s']:.1f} s, torchvision {res['loader/torchvision_warmup_s']:.1f} s"
    )
    if args.json:
        write_metrics(args.json, res, merge=False)
        print(f"wrote {args.json}")
    return 0
