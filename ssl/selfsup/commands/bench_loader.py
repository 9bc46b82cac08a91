"""``selfsup bench loader``: FFCV vs torchvision loader throughput, and the JPEG decode ceiling."""

from __future__ import annotations

import argparse

GROUP = "bench"
NAME = "loader"
HELP = (
    "images/s of the FFCV (decode-once and per-view pipelines) and torchvision training loaders "
    "(two SimCLR views, same images and workers) and of plain JPEG decoding"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=32, help="view size in pixels (default 32; try 224)")
    p.add_argument(
        "--store-size",
        type=int,
        default=None,
        help="side of the stored images (default: --size up to 64 px, else 256/224 of it: 256 for 224)",
    )
    p.add_argument("--images", type=int, default=4096, help="images per epoch (default 4096)")
    p.add_argument("--workers", type=int, default=2, help="loader workers / threads for both (default 2)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument(
        "--local-views",
        type=int,
        default=0,
        help="extra multi-crop views per image (96 px at --size 224; default 0)",
    )
    p.add_argument(
        "--pipeline",
        default="both",
        choices=["both", "decode-once", "per-view"],
        help="FFCV pipeline(s) to time: both (default: before and after in one run), decode-once, per-view",
    )
    p.add_argument(
        "--mode", default="jpg", choices=["jpg", "raw"], help="how the images are stored (default jpg)"
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as flat JSON")


def run(args: argparse.Namespace) -> int:
    from ..data.bench import PIPELINES, bench_loader
    from ..errors import UserError
    from ..utils.io import write_metrics

    if args.size < 8 or args.images < 1 or args.workers < 0 or args.batch_size < 2 or args.local_views < 0:
        raise UserError(
            "need --size >= 8, --images >= 1, --workers >= 0, --batch-size >= 2 and --local-views >= 0"
        )
    if args.store_size is not None and args.store_size < 8:
        raise UserError("need --store-size >= 8")
    pipelines = PIPELINES if args.pipeline == "both" else (args.pipeline,)
    res = bench_loader(
        size=args.size,
        images=args.images,
        workers=args.workers,
        batch_size=args.batch_size,
        mode=args.mode,
        local_views=args.local_views,
        pipelines=pipelines,
        stored=args.store_size,
    )
    views = f"2 views + {args.local_views} local" if args.local_views else "2 views"
    print(
        f"{args.images} images stored at {res['loader/store_size']} px ({args.mode}), {args.size} px crops, "
        f"{views}, batch {args.batch_size}, {args.workers} workers"
    )
    rows = []
    if "loader/ffcv_img_per_s" in res:
        rows.append(("FFCV, decode once", res["loader/ffcv_img_per_s"]))
    if "loader/ffcv_per_view_img_per_s" in res:
        rows.append(("FFCV, per view (before)", res["loader/ffcv_per_view_img_per_s"]))
    rows += [
        ("torchvision loader", res["loader/torchvision_img_per_s"]),
        ("decode only (ceiling)", res["loader/decode_img_per_s"]),
    ]
    for name, v in rows:
        print(f"  {name:<24} {v:>10.0f} images/s")
    for key, label in (("", "decode once"), ("per_view_", "per view")):
        if f"loader/{key}speedup" in res:
            print(
                f"  {label}: {res[f'loader/{key}speedup']:.2f}x torchvision, "
                f"decode ceiling / FFCV {res[f'loader/{key}ffcv_vs_decode']:.2f}x"
            )
    if args.json:
        write_metrics(args.json, res, merge=False)
        print(f"wrote {args.json}")
    return 0
