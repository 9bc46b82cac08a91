"""``selfsup bench step``: training-step throughput with and without the positive generators."""

from __future__ import annotations

GROUP = "bench"
NAME = "step"
HELP = (
    "time forward+backward+SGD steps of MoCo v2 and SimCLR with and without the Hallucinator / FT "
    "(random data, same model and batch, interleaved)"
)


def add_arguments(p) -> None:
    p.add_argument("--backbone", default="resnet18", help="timm backbone (default resnet18)")
    p.add_argument("--batch", type=int, default=256, help="images per step (default 256)")
    p.add_argument("--size", type=int, default=32, help="image size in pixels (default 32)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (default 3)")
    p.add_argument("--width", type=int, default=None, help="ResNet base width (default: the standard 64)")
    p.add_argument(
        "--no-cifar-stem", action="store_true", help="keep the ImageNet stem (default: CIFAR stem)"
    )
    p.add_argument("--queue", type=int, default=65536, help="MoCo queue size (default 65536)")
    p.add_argument("--methods", nargs="+", default=["mocov2", "simclr"], choices=["mocov2", "simclr"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (what training uses on CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone (warm-up compiles)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as flat JSON")


def run(args) -> int:
    import json

    from ..bench_step import bench_step
    from ..errors import UserError

    if args.batch < 2 or args.steps < 1 or args.warmup < 0:
        raise UserError("--batch must be >= 2, --steps >= 1 and --warmup >= 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    res = bench_step(
        backbone=args.backbone,
        batch=args.batch,
        size=args.size,
        steps=args.steps,
        warmup=args.warmup,
        cifar_stem=not args.no_cifar_stem,
        width=args.width,
        queue_size=args.queue,
        methods=tuple(args.methods),
        device=args.device,
        bf16=args.bf16,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    for k, v in res.items():
        if k.endswith("/img_per_s"):
            name = k[len("step/") : -len("/img_per_s")]
            over = res.get(f"step/{name}/overhead")
            head = res.get(f"step/{name}/head_overhead")
            extra = (
                f"  overhead {100 * over:+.1f}% (generator alone {100 * head:+.2f}%)"
                if over is not None
                else ""
            )
            print(f"{name:24s} {v:9.1f} img/s  {res[f'step/{name}/ms']:8.1f} ms/step{extra}")
    if args.json:
        from ..utils.io import write_metrics

        write_metrics(args.json, res, merge=False)
    else:
        print(json.dumps(res, indent=2, sort_keys=True))
    return 0
