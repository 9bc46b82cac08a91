#!/usr/bin/env python
"""SIE replication on renders: SIE vs VICReg vs SimCLR vs random init (and a supervised ceiling).

Trains ``recipes/render3d/{sie,vicreg,simclr}.yaml`` for each seed (same renders, pairs, backbone,
optimiser and schedule; only the method differs), evaluates a randomly initialised encoder of the
same architecture for each seed, and ``recipes/render3d/supervised.yaml`` for the ceiling seeds.
Every run is evaluated with SIE's protocols (``eval.run: [equivariance]``). Writes mean ± std
tables into the "SIE and VICReg" section of ``docs/results.md``. Finished runs trained from the
same recipe are reused, so an interrupted replication continues where it stopped, and two
invocations with disjoint ``--methods`` can share the two CPU slots:

    cpuslot .venv/bin/python tools/sie_replication.py --methods sie random --no-doc &
    cpuslot .venv/bin/python tools/sie_replication.py --methods vicreg simclr supervised --no-doc &
    .venv/bin/python tools/sie_replication.py        # afterwards: reuses every run, writes the doc
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
sys.path.insert(0, str(ROOT / "tools"))
from ablate_positives import cpu_seconds  # noqa: E402 - the positives driver's CPU clock

METHODS = {
    "sie": ("SIE", "sie.yaml"),
    "vicreg": ("VICReg", "vicreg.yaml"),
    "simclr": ("SimCLR", "simclr.yaml"),
    "random": ("random init", "sie.yaml"),  # SIE's recipe: same data, backbone and evaluation
    "supervised": ("supervised (ceiling)", "supervised.yaml"),
}
# (metric key, column title, scale): accuracies in %, R^2 / MRR / PRE as they are.
COLUMNS = [
    ("linear/top1", "top-1 all", 100),
    ("linear/top1_inv", "top-1 inv", 100),
    ("linear/top1_equi", "top-1 equi", 100),
    ("equi/rotation_r2", "rot. R² all", 1),
    ("equi/rotation_r2_inv", "rot. R² inv", 1),
    ("equi/rotation_r2_equi", "rot. R² equi", 1),
    ("equi/color_r2", "colour R² all", 1),
    ("equi/mrr", "MRR", 1),
    ("equi/hit@1", "H@1", 1),
    ("equi/hit@5", "H@5", 1),
    ("equi/pre", "PRE", 1),
]
SECTION = "## SIE and VICReg"


def load_tree(name: str, seed: int, overrides: list[str]):
    import yaml

    from selfsup.recipe import load_recipe

    tree = yaml.safe_load((ROOT / "recipes" / "render3d" / METHODS[name][1]).read_text())
    tree["seed"] = seed
    tree["name"] = f"{tree['name']}_s{seed}" if name != "random" else f"render3d_random_s{seed}"
    return load_recipe(tree, overrides)


def _reuse(run_dir: Path, recipe) -> dict | None:
    from selfsup.recipe import dump_recipe

    metrics, config = run_dir / "metrics.json", run_dir / "config.yaml"
    if metrics.exists() and config.exists() and config.read_text() == dump_recipe(recipe):
        m = json.loads(metrics.read_text())
        if "linear/top1" in m and "cost/cpu_s" in m:
            return m
    return None


def run_one(name: str, seed: int, out: Path, overrides: list[str]) -> dict:
    from selfsup.utils.io import atomic_write_text, write_metrics

    recipe = load_tree(name, seed, overrides)
    run_dir = out / name / f"seed{seed}"
    m = _reuse(run_dir, recipe)
    if m is not None:
        print(f"[reuse] {name} seed {seed}: {run_dir}", flush=True)
        return m
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # interrupted, or made from another recipe: start again
    t0, c0 = time.time(), cpu_seconds()
    if name == "random":
        import torch

        from selfsup.config import dump_recipe
        from selfsup.eval.runner import evaluate
        from selfsup.models.backbones import create_backbone
        from selfsup.models.export import fingerprint

        torch.manual_seed(seed)
        enc = create_backbone(recipe.model).eval()
        info = {"fingerprint": fingerprint(enc)}
        m = evaluate(
            enc,
            info,
            recipe.data,
            recipe.eval,
            ["equivariance"],
            run_dir / "features",
            seed=seed,
            progress=False,
        )
        atomic_write_text(run_dir / "config.yaml", dump_recipe(recipe))
    else:
        from selfsup.workflow import pretrain_and_evaluate

        m = pretrain_and_evaluate(recipe, run_dir, quiet=True)
    cost = {"cost/cpu_s": cpu_seconds() - c0, "cost/wall_s": time.time() - t0}
    m = write_metrics(run_dir / "metrics.json", {**m, **cost})
    print(
        f"[done] {name} seed {seed}: top-1 {m['linear/top1']:.4f} rot R² {m['equi/rotation_r2']:.3f} "
        f"({cost['cost/wall_s']:.0f}s wall, {cost['cost/cpu_s']:.0f}s CPU)",
        flush=True,
    )
    return m


def cell(runs: list[dict], key: str, scale: float) -> str:
    vals = [r[key] * scale for r in runs if key in r]
    if not vals:
        return "–"
    digits = 1 if scale == 100 else 3
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def table(results: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| method | seeds | " + " | ".join(t for _, t, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for name, runs in results.items():
        cells = [cell(runs, k, s) for k, _, s in COLUMNS]
        lines.append(f"| {METHODS[name][0]} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def section(results: dict[str, list[dict]], args) -> str:
    runs = [r for rs in results.values() for r in rs]
    cpu = sum(r.get("cost/cpu_s", 0.0) for r in runs) / 60
    wall = sum(r.get("cost/wall_s", 0.0) for r in runs) / 60
    sie = load_tree("sie", 0, args.set)
    d = sie.data
    steps = sie.train.max_steps
    length = f"{steps} steps" if steps else f"{sie.train.epochs} epochs"
    lines = [
        SECTION,
        "",
        f"Renders (`datasets/render3d.md`): {d.render.classes} classes × {d.render.objects} objects × "
        f"{d.render.views} views at {d.render.size} px (80/20 object split: held-out objects), trained and "
        f"evaluated at {d.image_size} px, pairs of two "
        f"distinct views per object per epoch without augmentation; VICReg-style ResNet-18 of width "
        f"{sie.model.width} ({sie.model.width * 8}-d representation); Adam 1e-3 constant, batch "
        f"{d.batch_size}, {length} (`recipes/render3d/*.yaml`"
        + (f" with {', '.join(f'`{kv}`' for kv in args.set)}" if args.set else "")
        + "). Evaluation: SIE's "
        "protocols on the frozen backbone (`selfsup eval equivariance`): linear top-1 (%) on every view of "
        "the 200 val objects, pooled R² of MLP heads on view pairs, and the SIE predictor's MRR, "
        "Hit@k and PRE among an object's views. Mean ± sample std over seeds "
        f"{', '.join(map(str, args.seeds))}; inv/equi columns only for SIE's split.",
        "",
        *table(results),
        "",
        f"{len(runs)} runs, {cpu:.1f} min CPU in total ({wall:.1f} min wall), one torch thread each, "
        f"on a shared 2-core {platform.machine()} machine.",
        "",
        "Reproduce (finished runs are reused; delete a run folder to retrain):",
        "",
        "```",
        f".venv/bin/python tools/sie_replication.py --seeds {' '.join(map(str, args.seeds))} "
        f"--ceiling-seeds {' '.join(map(str, args.ceiling_seeds))} --out {args.out}"
        + "".join(f" \\\n    --set {kv}" for kv in args.set),
        "```",
        "",
    ]
    return "\n".join(lines)


START, END = "<!-- sie_replication.py: start -->", "<!-- sie_replication.py: end -->"


def write_section(doc: Path, text: str) -> None:
    """Replace the generated part of the "SIE and VICReg" section of ``doc`` (between the markers),
    keeping the hand-written reading around it; append the section when it is missing."""
    from selfsup.utils.io import atomic_write_text

    old = doc.read_text() if doc.exists() else "# Results\n"
    body = f"{START}\n{text.split(SECTION, 1)[1].strip()}\n{END}"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + body + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + f"\n\n{SECTION}\n\n{body}\n"
    atomic_write_text(doc, new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["sie", "vicreg", "simclr", "random", "supervised"],
        choices=list(METHODS),
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--ceiling-seeds", type=int, nargs="+", default=[0], help="seeds of the supervised ceiling"
    )
    p.add_argument("--out", default="runs/sie_replication", help="folder for the run directories")
    p.add_argument("--doc", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--no-doc", action="store_true", help="train and evaluate only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict[str, list[dict]] = {}
    for name in args.methods:
        seeds = args.ceiling_seeds if name == "supervised" else args.seeds
        results[name] = [run_one(name, s, out, args.set) for s in seeds]
    if not args.no_doc:
        text = section(results, args)
        write_section(Path(args.doc), text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
