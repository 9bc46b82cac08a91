#!/usr/bin/env python
"""Positives probes: short runs of the positives recipe, varying one factor at a time.

Each probe trains ``recipes/ablations/positives.yaml`` (MoCo v2 on the embedded digits, width-8
ResNet-18 at 16 px; SimCLR for the ``simclr*`` probes) with one or more recipe overrides, for a few
epochs and without the linear probe, and reads the per-epoch score statistics of ``scores.json``:
the true positive and negative cosines (before FT). A probe "collapsed" when both cosine means
exceed the collapse threshold in some epoch (:mod:`selfsup.report.collapse`). The ``ft*`` probes
find what makes FT collapse (docs/methods/ft.md), the ``hal*`` ones what the Hallucinator costs.
Prints one line per probe and writes the table to ``--md``.

    .venv/bin/python tools/probe_positives.py --list                    # the probes
    .venv/bin/python tools/probe_positives.py base ft ft_pos ft_neg     # run some (one after another)
    .venv/bin/python tools/probe_positives.py --epochs 12 --knn hal hal_clean hal_r0

Runs are reused when their folder holds a finished run of the same recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FT = "positives=[{name: ft}]"
# The ablation's SimCLR (tools/ablate_positives.py): same backbone, data and schedule.
SIMCLR = "method={name: simclr, temperature: 0.2, proj_hidden: 256, proj_dim: 64}"
# name -> (what it varies, overrides). Everything else is the recipe as committed.
PROBES: dict[str, tuple[str, list[str]]] = {
    "base": ("MoCo v2, no FT", []),
    "ft": ("FT, paper defaults (posneg, per-step lambda, from epoch 1)", [FT]),
    "ft_pos": ("FT positive extrapolation only", ["positives=[{name: ft, target: pos}]"]),
    "ft_neg": ("FT negative interpolation only", ["positives=[{name: ft, target: neg}]"]),
    "ft_elem": ("FT per-element lambdas", ["positives=[{name: ft, per_element: both}]"]),
    "ft_norm": ("FT with post-mix normalisation", ["positives=[{name: ft, postmix_norm: true}]"]),
    "ft_start2": ("FT from epoch 3 (start_epoch 2)", ["positives=[{name: ft, start_epoch: 2}]"]),
    "ft_t07": ("FT, temperature 0.07", [FT, "method.temperature=0.07"]),
    "ft_t05": ("FT, temperature 0.5", [FT, "method.temperature=0.5"]),
    "ft_m99": ("FT, key momentum 0.99", [FT, "method.momentum=0.99"]),
    "ft_m999": ("FT, key momentum 0.999", [FT, "method.momentum=0.999"]),
    "ft_k256": ("FT, queue 256", [FT, "method.queue_size=256"]),
    "ft_k4096": ("FT, queue 4096 (3x the data set)", [FT, "method.queue_size=4096"]),
    "ft_w32": ("FT, width 32", [FT, "model.width=32"]),
    "ft_lr01": ("FT, lr 0.01", [FT, "optim.lr=0.01"]),
    "ft_lr02": ("FT, lr 0.2", [FT, "optim.lr=0.2"]),
    "ft_gate": ("FT gated on view invariance >= 0.5", ["positives=[{name: ft, min_invariance: 0.5}]"]),
    "hal": ("Hallucinator, paper defaults", ["positives=[{name: hallucinator}]"]),
    "hal_clean": (
        "Hallucinator, each key enqueued once",
        ["positives=[{name: hallucinator, enqueue_duplicates: false}]"],
    ),
    "hal_r0": (
        "Hallucinator without extrapolation (r = 0)",
        ["positives=[{name: hallucinator, r_max: 0.0}]"],
    ),
    "simclr": ("SimCLR, no FT", [SIMCLR]),
    "simclr_ft": ("SimCLR + FT, paper defaults", [SIMCLR, FT]),
    "simclr_ft_start1": ("SimCLR + FT from epoch 2", [SIMCLR, "positives=[{name: ft, start_epoch: 1}]"]),
    "simclr_ft_start4": ("SimCLR + FT from epoch 5", [SIMCLR, "positives=[{name: ft, start_epoch: 4}]"]),
    "simclr_ft_gate": (
        "SimCLR + FT gated on view invariance >= 0.5",
        [SIMCLR, "positives=[{name: ft, min_invariance: 0.5}]"],
    ),
}


def run_probe(name: str, out: Path, epochs: int, knn: bool) -> dict:
    import yaml

    from selfsup.recipe import dump_recipe, load_recipe
    from selfsup.workflow import pretrain_and_evaluate

    what, overrides = PROBES[name]
    tree = yaml.safe_load((ROOT / "recipes" / "ablations" / "positives.yaml").read_text())
    tree["name"] = f"probe_{name}"
    tree["eval"]["run"] = ["knn"] if knn else []
    overrides = [f"train.epochs={epochs}", *overrides]
    recipe = load_recipe(tree, overrides)
    run_dir = out / name
    done = run_dir / "metrics.json"
    if done.exists() and (run_dir / "config.yaml").read_text() == dump_recipe(recipe):
        metrics = json.loads(done.read_text())
    else:
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        t0 = time.time()
        metrics = pretrain_and_evaluate(recipe, run_dir, quiet=True)
        metrics["probe/wall_s"] = time.time() - t0
        done.write_text(json.dumps(metrics))
    from selfsup.report.collapse import collapsed_epochs

    data = json.loads((run_dir / "scores.json").read_text())
    epochs_rec = data["epochs"]
    return {
        "name": name,
        "what": what,
        "overrides": overrides[1:],
        "pos_cos": [e["pos_cos"] for e in epochs_rec],
        "neg_cos": [e["neg_cos"] for e in epochs_rec],
        "pos_scored": [e["pos_mean"] for e in epochs_rec],
        "neg_scored": [e["neg_mean"] for e in epochs_rec],
        "ft_active": [bool(e.get("ft_active")) for e in epochs_rec],
        "collapsed": collapsed_epochs(data),
        "knn": metrics.get("knn/top1"),
        "wall_s": metrics.get("probe/wall_s", metrics.get("run/wall_s")),
    }


def line(r: dict, knn: bool) -> str:
    # Epochs trained with FT active are starred.
    series = " ".join(
        f"{p:.2f}/{n:.2f}{'*' if a else ''}" for p, n, a in zip(r["pos_cos"], r["neg_cos"], r["ft_active"])
    )
    col = f"from epoch {r['collapsed'][0]}" if r["collapsed"] else "no"
    cells = [r["name"], r["what"], series, col]
    if knn:
        cells.append(f"{100 * r['knn']:.1f}" if r["knn"] is not None else "-")
    cells.append(f"{r['wall_s']:.0f}")
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("probes", nargs="*", help="probe names (see --list)")
    p.add_argument("--all", action="store_true", help="run every probe")
    p.add_argument("--list", action="store_true")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--knn", action="store_true", help="also evaluate kNN top-1 (k=20)")
    p.add_argument("--out", default="runs/probes")
    p.add_argument("--md", default=None, help="write the table (markdown) here")
    args = p.parse_args(argv)
    if args.list:
        for k, (what, over) in PROBES.items():
            print(f"{k:12s} {what}  {' '.join(over)}")
        return 0
    names = list(PROBES) if args.all else args.probes
    unknown = [n for n in names if n not in PROBES]
    if unknown or not names:
        p.error(f"unknown probes {unknown}; see --list" if unknown else "name probes or pass --all")
    import torch

    torch.set_num_threads(1)
    cols = [
        "probe",
        "varies",
        f"per-epoch mean cosine pos/neg (epochs 1..{args.epochs}; * FT on)",
        "collapsed",
    ]
    cols += ["kNN top-1 (k=20)"] * args.knn + ["wall s"]
    head = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows = []
    print("\n".join(head), flush=True)
    for n in names:
        r = run_probe(n, Path(args.out), args.epochs, args.knn)
        rows.append(line(r, args.knn))
        print(rows[-1], flush=True)
    if args.md:
        Path(args.md).write_text("\n".join(head + rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
