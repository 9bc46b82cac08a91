#!/usr/bin/env python
"""OBoW next to SimCLR, MoCo v2 and SimSiam at the same budget on the embedded digits.

Every method trains the backbone, data, image size, batch, optimizer, schedule and number of
epochs of ``recipes/digits/obow.yaml``; only the ``method`` section changes, and the multi-crop
and plain views that only OBoW uses are switched off for the others. Each run is evaluated with
the recipe's linear probe and kNN; the OBoW runs also evaluate a randomly initialised encoder of
the same architecture (the floor; it depends on the seed only). Writes mean +- std over seeds to
``runs/compare_methods/table.md`` (copied into ``docs/results.md``). Finished runs trained from
the same recipe are reused.

    .venv/bin/python tools/compare_methods.py                      # 4 methods x 3 seeds
    .venv/bin/python tools/compare_methods.py --methods obow --seeds 0   # one run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablate_positives import cpu_seconds, mean_std  # noqa: E402  (shared helpers of the tools)

NO_EXTRA_VIEWS = {"data.augment.local_views": 0, "data.augment.plain_views": 0}
# name -> (label, method section or None for the recipe's own, extra overrides). The other methods'
# settings are those of recipes/ablations/positives.yaml (MoCo v2, SimCLR) and SimSiam's CIFAR
# variant (2-layer projector) scaled to the 64-d features of the narrow ResNet-18.
METHODS = {
    "obow": ("OBoW", None, {"eval.compare_random_init": True}),
    "simclr": (
        "SimCLR",
        {"name": "simclr", "temperature": 0.2, "proj_hidden": 256, "proj_dim": 64},
        NO_EXTRA_VIEWS,
    ),
    "mocov2": (
        "MoCo v2",
        {
            "name": "moco",
            "version": "v2",
            "dim": 64,
            "queue_size": 1024,
            "momentum": 0.996,
            "temperature": 0.2,
            "bn_group": 8,
        },
        NO_EXTRA_VIEWS,
    ),
    "simsiam": (
        "SimSiam",
        {"name": "simsiam", "proj_dim": 256, "proj_hidden": 256, "proj_layers": 2, "pred_hidden": 64},
        NO_EXTRA_VIEWS,
    ),
}
METRICS = [("linear/top1", "linear top-1"), ("knn/top1", "kNN top-1 (k=20)")]


def recipe_for(base: Path, method: str, seed: int, overrides: list[str]):
    import yaml

    from selfsup.config import set_path
    from selfsup.recipe import load_recipe

    tree = yaml.safe_load(base.read_text())
    tree["seed"] = seed
    tree["name"] = f"compare_{method}_s{seed}"
    _, section, extra = METHODS[method]
    if section is not None:
        tree["method"] = dict(section)
    for key, value in extra.items():
        set_path(tree, key, value)
    return load_recipe(tree, overrides)


def run_one(base: Path, method: str, seed: int, out: Path, overrides: list[str]) -> dict:
    from selfsup.recipe import dump_recipe
    from selfsup.workflow import pretrain_and_evaluate

    run_dir = out / method / f"seed{seed}"
    recipe = recipe_for(base, method, seed, overrides)
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if metrics_path.exists() and config_path.exists() and config_path.read_text() == dump_recipe(recipe):
        m = json.loads(metrics_path.read_text())
        if all(k in m for k, _ in METRICS):
            print(f"[reuse] {method} seed {seed}: {run_dir}")
            return {**m, **json.loads((run_dir / "compare.json").read_text())}
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # interrupted, or trained with another recipe: start again
    t0, c0 = time.time(), cpu_seconds()
    m = pretrain_and_evaluate(recipe, run_dir, quiet=True)
    cost = {"cpu_s": cpu_seconds() - c0, "wall_s": time.time() - t0}
    (run_dir / "compare.json").write_text(json.dumps(cost))
    print(
        f"[done] {method} seed {seed}: linear {m['linear/top1']:.4f} knn {m['knn/top1']:.4f} "
        f"({cost['wall_s']:.0f}s wall, {cost['cpu_s']:.0f}s CPU)",
        flush=True,
    )
    return {**m, **cost}


def table(results: dict[str, list[dict]], seeds: list[int]) -> list[str]:
    lines = [
        "| method | "
        + " | ".join(label for _, label in METRICS)
        + " | per-seed linear | per-seed kNN | train s/run | run s/run (incl. eval) |",
        "|---|" + "---|" * (len(METRICS) + 4),
    ]
    rows = [(METHODS[m][0], runs) for m, runs in results.items()]
    floor = [
        {k: r[f"random_init/{k}"] for k, _ in METRICS}
        for runs in results.values()
        for r in runs
        if all(f"random_init/{k}" in r for k, _ in METRICS)
    ][: len(seeds)]
    for name, runs in rows:
        cells = [mean_std([r[k] for r in runs]) for k, _ in METRICS]
        per = [" / ".join(f"{100 * r[k]:.1f}" for r in runs) for k, _ in METRICS]
        train = statistics.mean(r["train/wall_s"] for r in runs)
        wall = statistics.mean(r["wall_s"] for r in runs)
        lines.append(f"| {name} | " + " | ".join([*cells, *per, f"{train:.0f}", f"{wall:.0f}"]) + " |")
    if floor:
        cells = [mean_std([r[k] for r in floor]) for k, _ in METRICS]
        per = [" / ".join(f"{100 * r[k]:.1f}" for r in floor) for k, _ in METRICS]
        lines.append("| random init (floor) | " + " | ".join([*cells, *per, "-", "-"]) + " |")
    return lines


def write_doc(results: dict, args, doc: Path) -> str:
    runs = [r for rs in results.values() for r in rs]
    cpu = sum(r.get("cpu_s", 0.0) for r in runs) / 60
    wall = sum(r.get("wall_s", 0.0) for r in runs) / 60
    over = " ".join(f"--set {o}" for o in args.set)
    r0 = recipe_for(Path(args.recipe), "obow", args.seeds[0], args.set)
    d, a, o, t, m = r0.data, r0.data.augment, r0.optim, r0.train, r0.method
    lines = [
        "# OBoW next to SimCLR, MoCo v2 and SimSiam (embedded digits, same budget)",
        "",
        "Linear-probe and kNN top-1 accuracy (%) on the 450 test digits, mean ± sample std over "
        f"seeds {', '.join(map(str, args.seeds))}. Common budget (recipe "
        f"`{Path(args.recipe).relative_to(ROOT) if Path(args.recipe).is_relative_to(ROOT) else args.recipe}`): "
        f"{r0.model.backbone} (CIFAR stem, width {r0.model.width}), digits at {d.image_size} px, batch "
        f"{d.batch_size}, {t.epochs} epochs, SGD lr {o.lr} (momentum {o.momentum}, wd {o.weight_decay}, "
        f"{o.warmup_epochs:g} warm-up epoch, cosine), one torch thread per run. Views: 2 crops at "
        f"{d.image_size} px (crop {a.crop_scale}, jitter {a.jitter} p {a.jitter_p}, no flip, "
        f"grayscale or blur) for every method; OBoW also gets {a.local_views} patches of "
        f"{a.local_size} px (crop {a.local_scale}) and the teacher's plain view at "
        f"{a.plain_size} px. OBoW: K {m.num_words}, inv_delta {m.inv_delta}, kappa {m.kappa}, "
        f"levels layer3 + layer4, border {m.border}, teacher momentum {m.momentum} -> 1 (cosine). "
        "MoCo v2: K 1024, m 0.996, T 0.2; SimCLR: T 0.2, projector 256 -> 64; SimSiam: "
        "2-layer projector 256, predictor 256 -> 64 -> 256. Linear probe: 50 epochs on cached "
        "standardised features; kNN: k 20, T 0.07. The floor is the same architecture left at "
        "its random initialisation (same seeds).",
        "",
        *table(results, args.seeds),
        "",
        f"{len(runs)} runs, trained and evaluated one at a time in {cpu:.1f} min CPU "
        f"({wall:.1f} min wall) on a shared 2-core {platform.machine()} CPU.",
        "",
        "Reproduce (finished runs are reused; delete the run folder to retrain):",
        "",
        "```",
        f".venv/bin/python tools/compare_methods.py --methods {' '.join(args.methods)} "
        f"--seeds {' '.join(map(str, args.seeds))} {over}".rstrip(),
        "```",
        "",
    ]
    text = "\n".join(lines)
    from selfsup.utils.io import atomic_write_text

    atomic_write_text(doc, text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "digits" / "obow.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--out", default="runs/compare_methods", help="folder for the run directories")
    p.add_argument("--doc", default="runs/compare_methods/table.md")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides = [*args.set, "train.progress=false"]
    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    for seed in args.seeds:  # seed-major: an interrupted table still has every method's first seeds
        for method in args.methods:
            results[method].append(run_one(Path(args.recipe), method, seed, out, overrides))
    print(write_doc(results, args, Path(args.doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
