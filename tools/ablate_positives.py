#!/usr/bin/env python
"""Positives ablation: baseline vs +Hallucinator vs +FT, several seeds, one table per method.

Trains ``recipes/ablations/positives.yaml`` (MoCo v2 on the embedded digits, tiny ResNet-18) as is
and with each generator, for each seed, one run at a time, evaluates linear and kNN accuracy, and
writes mean +- std tables with paired differences to the baseline to ``docs/results_positives.md``
plus an overlaid score plot of seed 0 to ``OUT/<method>/scores_compare.png``. ``--methods simclr``
runs the same ablation on SimCLR. Finished runs trained from the same recipe are reused, so an
interrupted ablation continues where it stopped, and two processes (one per method, e.g. on the
two ``cpuslot`` slots) can train in parallel before one ``--methods moco simclr`` call writes the
joint table from their runs.

Variants: the baseline; ``hallucinator`` and ``ft`` with paper defaults (FT from the first epoch,
which collapses on these digits, ``docs/methods/ft.md``); ``ft_gated``, FT that trains an epoch
only after one whose view invariance reached 0.5 (``min_invariance``).

    .venv/bin/python tools/ablate_positives.py --methods moco simclr   # 24 runs, ~90 CPU minutes
    .venv/bin/python tools/ablate_positives.py --seeds 0 --variants baseline   # time one config
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GATE = 0.5  # min_invariance of the gated FT variant: a margin above FT's critical 0.42
VARIANTS = {
    "baseline": [],
    "hallucinator": [{"name": "hallucinator"}],
    "ft": [{"name": "ft"}],
    "ft_gated": [{"name": "ft", "min_invariance": GATE}],
}
LABELS = {
    "baseline": "",
    "hallucinator": " + Hallucinator",
    "ft": " + FT (from epoch 1)",
    "ft_gated": f" + FT (gated, ρ ≥ {GATE})",
}
# The recipe trains MoCo v2; --methods simclr swaps in SimCLR with the same backbone, data and
# schedule (both generators plug into it too).
METHODS = {
    "moco": ("MoCo v2", None),
    "simclr": ("SimCLR", {"name": "simclr", "temperature": 0.2, "proj_hidden": 256, "proj_dim": 64}),
}
METRICS = [("linear/top1", "linear top-1"), ("knn/top1", "kNN top-1 (k=20)")]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_info(run_dir: Path) -> dict:
    """Last epoch's mean true cosines, collapsed epochs, FT's first epoch and the run's CPU time."""
    from selfsup.report.collapse import collapsed_epochs

    out = {}
    path = run_dir / "scores.json"
    if path.exists():
        data = json.loads(path.read_text())
        last = data["epochs"][-1]
        out.update(
            {
                "score/pos_cos": last.get("pos_cos", last["pos_mean"]),
                "score/neg_cos": last.get("neg_cos", last["neg_mean"]),
                "collapsed": collapsed_epochs(data),
                "ft_from": next((e["epoch"] for e in data["epochs"] if e.get("ft_active")), None),
            }
        )
    if (run_dir / "ablate.json").exists():
        out.update(json.loads((run_dir / "ablate.json").read_text()))
    return out


def run_one(base: Path, method: str, variant: str, seed: int, out: Path, overrides: list[str]) -> dict:
    import yaml

    from selfsup.recipe import dump_recipe, load_recipe
    from selfsup.workflow import pretrain_and_evaluate

    run_dir = out / method / variant / f"seed{seed}"
    tree = yaml.safe_load(base.read_text())
    tree["seed"] = seed
    tree["name"] = f"{tree.get('name', 'ablate')}_{method}_{variant}_s{seed}"
    tree["positives"] = VARIANTS[variant]
    if METHODS[method][1] is not None:
        tree["method"] = dict(METHODS[method][1])
    recipe = load_recipe(tree, overrides)
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if metrics_path.exists() and config_path.exists() and config_path.read_text() == dump_recipe(recipe):
        m = json.loads(metrics_path.read_text())
        if all(k in m for k, _ in METRICS):
            print(f"[reuse] {method} {variant} seed {seed}: {run_dir}")
            return {**m, **run_info(run_dir)}
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # interrupted, or trained with another recipe: start again
    t0, c0 = time.time(), cpu_seconds()
    m = pretrain_and_evaluate(recipe, run_dir, quiet=True)
    cost = {"cpu_s": cpu_seconds() - c0, "wall_s": time.time() - t0}
    (run_dir / "ablate.json").write_text(json.dumps(cost))
    print(
        f"[done] {method} {variant} seed {seed}: linear {m['linear/top1']:.4f} knn {m['knn/top1']:.4f} "
        f"({cost['wall_s']:.0f}s wall, {cost['cpu_s']:.0f}s CPU)",
        flush=True,
    )
    return {**m, **run_info(run_dir)}


def mean_std(values: list[float]) -> str:
    mu = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mu:.2f} ± {100 * sd:.2f}"


def paired(runs: list[dict], base: list[dict], key: str) -> str:
    """Mean ± sample std over seeds of the per-seed difference ``run - baseline`` (points)."""
    d = [100 * (r[key] - b[key]) for r, b in zip(runs, base)]
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    return f"{statistics.mean(d):+.2f} ± {sd:.2f}"


def ft_note(runs: list[dict]) -> str:
    """When FT first trained and which epochs collapsed, per seed."""
    parts = []
    for r in runs:
        ft = f"FT from {r['ft_from']}" if r.get("ft_from") else "FT never on"
        col = r.get("collapsed") or []
        parts.append(ft + (f", collapsed {col[0]}..{col[-1]}" if col else ""))
    return "; ".join(parts)


def section(method: str, results: dict, seeds: list[int]) -> list[str]:
    name = METHODS[method][0]
    lines = [
        f"### {name}",
        "",
        "| variant | "
        + " | ".join(label for _, label in METRICS)
        + " | per-seed linear | per-seed kNN | last epoch: cosine pos / neg | collapsed seeds |",
        "|---|" + "---|" * (len(METRICS) + 4),
    ]
    for variant, runs in results.items():
        cells = [mean_std([r[k] for r in runs]) for k, _ in METRICS]
        per = [" / ".join(f"{100 * r[k]:.1f}" for r in runs) for k, _ in METRICS]
        sc = [r for r in runs if "score/pos_cos" in r]
        pos_neg = (
            f"{statistics.mean(r['score/pos_cos'] for r in sc):.2f} / "
            f"{statistics.mean(r['score/neg_cos'] for r in sc):.2f}"
            if sc
            else "n/a"
        )
        n_col = sum(1 for r in runs if r.get("collapsed"))
        lines.append(
            f"| {name}{LABELS[variant]} | "
            + " | ".join([*cells, *per, pos_neg, f"{n_col} of {len(runs)}"])
            + " |"
        )
    base = results.get("baseline")
    if base:
        lines += [
            "",
            "Paired difference to the baseline (same seed; mean ± sample std over seeds, points):",
            "",
        ]
        for variant, runs in results.items():
            if variant == "baseline":
                continue
            d = [f"{label} {paired(runs, base, k)}" for k, label in METRICS]
            note = f" ({ft_note(runs)})" if variant.startswith("ft") else ""
            lines.append(f"- {name}{LABELS[variant]}: " + ", ".join(d) + note)
    runs = [r for rs in results.values() for r in rs]
    cpu = sum(r.get("cpu_s", 0.0) for r in runs) / 60
    wall = sum(r.get("wall_s", 0.0) for r in runs) / 60
    lines += [
        "",
        f"{len(runs)} runs ({len(seeds)} seeds × {len(results)} variants), trained and evaluated in "
        f"{cpu:.1f} min CPU ({wall:.1f} min wall).",
        "",
    ]
    return lines


def write_doc(sections: list[str], args, doc: Path) -> str:
    seeds = args.seeds
    over = " ".join(f"--set {o}" for o in args.set) if args.set else ""
    lines = [
        "## Positives ablation: baseline vs + Hallucinator vs + FT (embedded digits)",
        "",
        "Linear-probe and kNN top-1 accuracy (%) on the 450 test digits, mean ± sample std over "
        f"seeds {', '.join(map(str, seeds))}. Recipe `recipes/ablations/positives.yaml`: ResNet-18 "
        f"(CIFAR stem, width 8) at 16 px, batch 32, {args.epochs_note}, one torch thread per run. "
        "The variants add only `positives: [hallucinator]` (paper defaults: r ~ U(0, 0.1), G "
        "2d -> 2d -> d; official quirks on: duplicated keys enqueued for MoCo, same-image copies "
        "as SimCLR negatives), `positives: [ft]` (paper defaults: target posneg, α_pos 2.0, "
        "α_neg 1.6, per-step λ, from epoch 1) or the same FT with `min_invariance: "
        f"{GATE}` (an epoch trains with FT only if the previous epoch's view invariance "
        "ρ = 1 − (1 − pos cos) / (1 − neg cos) reached it; `docs/methods/ft.md`). MoCo v2: K 1024, "
        "m 0.996, T 0.2; SimCLR: T 0.2, projector 256 -> 64. For reference, a randomly "
        "initialised encoder of this architecture scores 57.3 / 67.8 linear and 52.9 / 60.7 kNN "
        "(seeds 0 / 1). Cosine columns: mean true cosines (before FT) of the last epoch, mean over "
        "seeds; a seed counts as collapsed when both exceeded 0.9 in some epoch.",
        "",
        *sections,
        f"Machine: {platform.machine()}, shared 2-core CPU; CPU time is the runs' own process time.",
        "",
        "Reproduce (finished runs are reused; delete the run folder to retrain):",
        "",
        "```",
        f".venv/bin/python tools/ablate_positives.py --methods {' '.join(args.methods)} "
        f"--seeds {' '.join(map(str, seeds))} {over}".rstrip(),
        "```",
        "",
        "Score curves and distributions of seed 0, variants overlaid: "
        f"`{args.out}/<method>/scores_compare.png` (`selfsup plot scores` on the run folders).",
        "",
    ]
    text = "\n".join(lines)
    from selfsup.utils.io import atomic_write_text

    atomic_write_text(doc, text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "ablations" / "positives.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--methods", nargs="+", default=["moco"], choices=list(METHODS))
    p.add_argument("--out", default="runs/ablate_positives", help="folder for the run directories")
    p.add_argument("--doc", default=str(ROOT / "docs" / "results_positives.md"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    # One thread: on a shared 2-core machine two OpenMP threads per tiny op cost 6x more CPU.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)

    import torch
    import yaml

    torch.set_num_threads(args.threads)
    base = Path(args.recipe)
    tree = yaml.safe_load(base.read_text())
    epochs = next((o.split("=", 1)[1] for o in args.set if o.startswith("train.epochs=")), None)
    args.epochs_note = f"{epochs or tree['train']['epochs']} epochs each"
    out = Path(args.out)
    from selfsup.report.scores import plot_scores

    sections: list[str] = []
    for method in args.methods:
        results: dict[str, list[dict]] = {}
        for variant in args.variants:
            for seed in args.seeds:
                results.setdefault(variant, []).append(run_one(base, method, variant, seed, out, args.set))
        seed0 = [out / method / v / f"seed{args.seeds[0]}" for v in args.variants]
        labels = [METHODS[method][0] + LABELS[v] for v in args.variants]
        plot_scores(seed0, out / method / "scores_compare.png", labels=labels)
        sections += section(method, results, args.seeds)
    print(write_doc(sections, args, Path(args.doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
