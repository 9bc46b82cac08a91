"""Scaled-down replication of the backward-compatibility papers (BCT, BT², OCA) on CPU.

Trains, from ``recipes/compat/``: the old model (supervised, digit classes 0-4), then new models on
all 10 classes -- independent, BCT, BT² (distilling from the independent one), OCA -- each against
the old one; and a 3-step update sequence (v1 on classes 0-2, v2 on 0-6 compatible with v1, v3 on
all compatible with v2). It evaluates retrieval on the whole digits test split (card section 4:
query = gallery, own item excluded, CMC top-1/top-5, mAP over the full ranking) and writes

- ``docs/results_compat.md``: the old/old, new/old, new/new table, the update gains, the sequence's
  compatibility matrix with AC/AM, and the papers' qualitative claims checked against the numbers;
- ``docs/compat_matrix.png``: the sequence's top-1 matrix (``selfsup.eval.compatibility``).

Usage (about 10-15 CPU minutes on 2 cores)::

    .venv/bin/python tools/compat_replication.py [--out runs/compat_replication] [--epochs 12]

Runs execute one after another in this process (never in parallel).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "compat"
METHODS = [("independent", "new_independent"), ("BCT", "new_bct"), ("BT²", "new_bt2"), ("OCA", "new_oca")]


def _timed(fn, *args, **kwargs) -> tuple[dict, float, float]:
    """Run ``fn``; return its result, wall seconds and CPU seconds of this process (all threads)."""
    w0, c0 = time.time(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.time() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "runs" / "compat_replication"), help="run directories")
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where results_compat.md and the PNG go")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs of every recipe")
    p.add_argument("--max-steps", type=int, default=None, help="smoke test: stop each run after N steps")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: no OpenMP spinning on a shared machine)"
    )
    p.add_argument(
        "--report-only", action="store_true", help="no training: rebuild the report from the runs in --out"
    )
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out)
    if not args.report_only:
        if out.exists() and any(out.iterdir()):
            raise SystemExit(f"error: '{out}' is not empty; remove it or pass another --out")
        train_all(out, args)
    elif not (out / "timings.json").exists():
        raise SystemExit(f"error: '{out}' holds no finished replication; run without --report-only first")
    report(out, Path(args.docs), args)
    return 0


def train_all(out: Path, args) -> None:
    """Train every model of the replication into ``out/<run>``, one after another."""
    from selfsup.commands.compat_train import compat_train
    from selfsup.recipe import load_recipe
    from selfsup.workflow import pretrain_and_evaluate

    common = ["train.progress=false"]
    if args.epochs:
        common.append(f"train.epochs={args.epochs}")
    if args.max_steps:
        common.append(f"train.max_steps={args.max_steps}")
    timings: dict[str, dict[str, float]] = {}

    def pretrain(name: str, recipe: str) -> Path:
        r = load_recipe(RECIPES / recipe, common)
        _, wall, cpu = _timed(pretrain_and_evaluate, r, out / name, quiet=True)
        timings[name] = {"wall": wall, "cpu": cpu}
        print(f"[{name}] trained in {wall:.0f}s wall / {cpu:.0f}s CPU", flush=True)
        return out / name / "encoder.pt"

    def compat(name: str, recipe: str, old: Path, extra: list[str] | None = None) -> None:
        m, wall, cpu = _timed(
            compat_train, RECIPES / recipe, str(old), common + (extra or []), str(out / name), quiet=True
        )
        timings[name] = {"wall": wall, "cpu": cpu}
        print(
            f"[{name}] trained in {wall:.0f}s wall / {cpu:.0f}s CPU; top-1 old/old "
            f"{m['compat/top1/old_old']:.3f} new/old {m['compat/top1/new_old']:.3f} "
            f"new/new {m['compat/top1/new_new']:.3f}",
            flush=True,
        )

    old = pretrain("old", "old.yaml")
    for _, recipe in METHODS:
        extra = [f"compat.teacher={out / 'new_independent' / 'encoder.pt'}"] if recipe == "new_bt2" else []
        compat(recipe, f"{recipe}.yaml", old, extra)
    v1 = pretrain("seq_v1", "seq_v1.yaml")
    compat("seq_v2", "seq_v2.yaml", v1)
    compat("seq_v3", "seq_v3.yaml", out / "seq_v2" / "encoder.pt")
    (out / "timings.json").write_text(json.dumps(timings, indent=2))


def per_query(q, g, labels):
    """Per-query top-1 hit and AP of queries ``q [N, Dq]`` against gallery ``g [N, Dg]`` (card protocol)."""
    from selfsup.eval.retrieval import l2_normalize, match_dims, ranking_stats

    q, g = match_dims(q, g, slice_dims=True)
    stats, _ = ranking_stats(l2_normalize(q), labels, l2_normalize(g), labels, exclude_self=True, topk=(1,))
    return stats.hits[:, 0].astype(float), stats.ap


def report(out: Path, docs: Path, args) -> None:
    """Evaluate the trained runs in ``out`` and write the markdown report and the matrix PNG."""
    import numpy as np

    from selfsup.eval.compat_retrieval import model_features
    from selfsup.eval.compatibility import METRICS, ac_am, compat_matrices, plot_compat_matrix
    from selfsup.recipe import load_recipe

    data = load_recipe(RECIPES / "new_independent.yaml").data
    cache = out / "features"
    old = out / "old" / "encoder.pt"
    results: dict[str, dict] = {}
    for label, run in METHODS:
        feats, labels, infos = model_features([old, out / run / "encoder.pt"], data, cache)
        mats = compat_matrices(feats, labels, slice_dims=True)
        r = {f"{m}/{pair}": float(mats[m][t, i]) for m in METRICS for pair, (t, i) in PAIRS.items()}
        # Paired per-query differences new/old - old/old on the same queries: mean and its SE.
        h_oo, ap_oo = per_query(feats[0], feats[0], labels)
        h_no, ap_no = per_query(feats[1], feats[0], labels)
        for name, d in (("top1", h_no - h_oo), ("map", ap_no - ap_oo)):
            r[f"delta/{name}"] = float(d.mean())
            r[f"delta_se/{name}"] = float(d.std(ddof=1) / np.sqrt(len(d)))
        r["dims"] = [int(i["dim"]) for i in infos]
        results[label] = r

    seq = [out / "seq_v1" / "encoder.pt", out / "seq_v2" / "encoder.pt", out / "seq_v3" / "encoder.pt"]
    feats, labels, infos = model_features(seq, data, cache)
    mats = compat_matrices(feats, labels, slice_dims=True)
    names = ["v1 (0-2)", "v2 (0-6)", "v3 (0-9)"]
    docs.mkdir(parents=True, exist_ok=True)
    ac, am = ac_am(mats["top1"])
    plot_compat_matrix(
        mats["top1"],
        names,
        docs / "compat_matrix.png",
        metric="top1",
        title=f"OCA update sequence, digits (top-1): AC {ac:.2f}, AM {100 * am:.1f}",
    )
    timings = json.loads((out / "timings.json").read_text())
    summary = {
        "two_model": results,
        "sequence": {m: mats[m].tolist() for m in mats},
        "sequence_ac_am": {m: list(ac_am(mats[m])) for m in mats},
        "sequence_dims": [int(i["dim"]) for i in infos],
        "timings_s": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_doc(docs / "results_compat.md", results, mats, names, infos, timings, args)
    print(
        f"wrote {docs / 'results_compat.md'} and {docs / 'compat_matrix.png'}; numbers in {out / 'summary.json'}"
    )


PAIRS = {"old_old": (0, 0), "new_old": (1, 0), "new_new": (1, 1)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def write_doc(path: Path, results: dict, mats: dict, names: list[str], infos, timings: dict, args) -> None:
    from selfsup.eval.compatibility import ac_am, update_gain

    ind = results["independent"]
    lines = [
        "# Backward-compatible training: scaled-down replication",
        "",
        "Generated by `tools/compat_replication.py`; reproduce with",
        "",
        "```",
        ".venv/bin/python tools/compat_replication.py"
        + (f" --epochs {args.epochs}" if args.epochs else "")
        + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "```",
        "",
        "Setting (papers: CIFAR-100/ImageNet, ResNet-50, 50% -> 100% of classes; card "
        "`/work/shared/reference/compat.md`): scikit-learn digits at 32 px (1,347 train / 450 test "
        "images), tiny CIFAR-stem ResNet-18 (width 8, 64-d features), supervised softmax training, "
        "AdamW lr 1e-3 with cosine schedule, 12 epochs, batch 64, label smoothing 0.1, recipes in "
        "`recipes/compat/`. Old model: classes 0-4, seed 0; new models: all 10 classes, seed 1 "
        "(a different initialisation from the old model, as in the papers; all new models share "
        "it, so BT²'s independent-new teacher starts from BT²'s own initial weights). BT²/OCA add "
        "d_old/4 = 16 extra dims (80-d retrieval feature). Retrieval: query = gallery = the whole "
        "test split (all classes), own item excluded, cosine similarity after truncating to the old "
        "model's 64 dims for new/old; CMC top-1 / top-5 and mAP over the full ranking, in %. "
        f"One seed per configuration. Runs one after another in one process with {args.threads} torch "
        "thread(s).",
        "",
        "## Old -> new (top-1 / top-5 / mAP, %)",
        "",
        "| method | dims old, new | old/old | new/old | new/new | Δ top-1 new/old − old/old | "
        "Δ mAP | update gain (top-1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        cells = [" / ".join(_pct(r[f"{m}/{pair}"]) for m in ("top1", "top5", "map")) for pair in PAIRS]
        deltas = [
            f"{100 * r[f'delta/{m}']:+.1f} ± {100 * r[f'delta_se/{m}']:.1f}"
            + (" ✓" if r[f"delta/{m}"] > 0 else " ✗")
            for m in ("top1", "map")
        ]
        gain = update_gain(r["top1/new_old"], r["top1/old_old"], ind["top1/new_new"])
        dims = ", ".join(str(d) for d in r["dims"])
        lines.append(f"| {label} | {dims} | {' | '.join(cells)} | {' | '.join(deltas)} | {gain:.2f} |")
    lines += [
        "",
        "Δ = mean over the 450 queries of the paired per-query difference (top-1 hit, or AP) of new "
        "queries against the old gallery minus old queries against it, ± its standard error; ✓ marks "
        "the empirical compatibility criterion M(new, old) > M(old, old) met on that metric. Update "
        "gain G = [M(new, old) − M(old, old)] / [M(new*, new*) − M(old, old)] with new* the "
        "independent model (card section 4).",
        "",
        "## Papers' qualitative claims, checked",
        "",
    ]

    def crit(label: str) -> str:
        r = results[label]
        d, se = 100 * r["delta/top1"], 100 * r["delta_se/top1"]
        tie = "; within 2 standard errors of a tie" if abs(d) < 2 * se else ""
        return (
            f"top-1 {_pct(r['top1/new_old'])} new/old vs {_pct(r['top1/old_old'])} old/old, "
            f"Δ {d:+.1f} ± {se:.1f}{tie} (on mAP: Δ {100 * r['delta/map']:+.1f} ± "
            f"{100 * r['delta_se/map']:.1f})"
        )

    def cost(label: str) -> float:
        return 100 * (results[label]["top1/new_new"] - ind["top1/new_new"])

    def cost_txt(label: str) -> str:
        r = results[label]
        return (
            f"new/new {cost(label):+.1f} top-1 / {100 * (r['map/new_new'] - ind['map/new_new']):+.1f} "
            "mAP points against independent"
        )

    holds = lambda ok: "**holds**" if ok else "**does not hold**"
    close = 2.0  # top-1 points: the papers' BT² is within 0.3 (CIFAR-100) and 1.3 (ImageNet) of independent
    lines += [
        f"- Independent fails the criterion: {holds(ind['delta/top1'] <= 0)}; {crit('independent')}.",
        f"- BCT satisfies the criterion: {holds(results['BCT']['delta/top1'] > 0)}; {crit('BCT')}. "
        f"At some cost to new/new: {holds(cost('BCT') < 0)}; {cost_txt('BCT')}.",
    ]
    for label in ("BT²", "OCA"):
        lines.append(
            f"- {label} satisfies the criterion: {holds(results[label]['delta/top1'] > 0)}; {crit(label)}. "
            f"Keeps new/new close to independent (within {close:.0f} top-1 points): "
            f"{holds(abs(cost(label)) <= close)}; {cost_txt(label)} (BCT: {cost('BCT'):+.1f} top-1)."
        )
    T = len(names)
    lines += [
        "",
        "## 3-step update sequence (OCA, each step compatible with the previous)",
        "",
        f"v1: classes 0-2 ({infos[0]['dim']}-d, seed 0), v2: classes 0-6 ({infos[1]['dim']}-d, seed 1, "
        f"compatible with v1), v3: classes 0-9 ({infos[2]['dim']}-d, seed 2, compatible with v2). "
        "M[t][i] = query model t against gallery model i (%), top-1 / top-5 / mAP; cross-tests "
        "meeting the criterion M[t][i] > M[i][i] on top-1 are marked ✓.",
        "",
        "| query \\ gallery | " + " | ".join(names) + " |",
        "|---|" + "---|" * T,
    ]
    top1 = mats["top1"]
    for t in range(T):
        row = []
        for i in range(T):
            if i > t:
                row.append("")
                continue
            cell = " / ".join(_pct(mats[m][t, i]) for m in ("top1", "top5", "map"))
            if t > i:
                cell += " ✓" if top1[t, i] > top1[i, i] else " ✗"
            row.append(cell)
        lines.append(f"| {names[t]} | " + " | ".join(row) + " |")
    lines.append("")
    for m in ("top1", "top5", "map"):
        ac, am = ac_am(mats[m])
        lines.append(f"- {m}: AC = {ac:.2f}, AM = {_pct(am)}")
    lines += [
        "",
        "AC = fraction of the T(T−1)/2 pairs t > i with M[t][i] > M[i][i]; AM = mean of the lower "
        "triangle including the diagonal (card section 4).",
        "",
        "![compatibility matrix](compat_matrix.png)",
        "",
        "## Cost",
        "",
        "| run | wall (s) | CPU (s) |",
        "|---|---|---|",
    ]
    for k, t in timings.items():
        lines.append(f"| {k} | {t['wall']:.0f} | {t['cpu']:.0f} |")
    tw = sum(t["wall"] for t in timings.values())
    tc = sum(t["cpu"] for t in timings.values())
    lines += [
        f"| total (training + per-run evaluation) | {tw:.0f} | {tc:.0f} |",
        "",
        "CPU = process time of the run (training, feature extraction, kNN and compatibility "
        "evaluation) on a 2-core machine shared with other jobs.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
