"""``docs/results_compat.md`` and its pictures from the replication's ``summary.json`` content."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = {"independent": "independent", "bct": "BCT", "bt2": "BT²", "oca": "OCA"}
CLOSE = 2.0  # top-1 points: "new/new within about 2 points of independent" (issue 14)


def seq_names(summary: dict) -> list[str]:
    return [f"v{t + 1} ({n} classes)" for t, n in enumerate(summary["sequence_classes"])]


def _p(x: float) -> str:
    return f"{100 * x:.1f}"


def _pm(a: dict, key: str, sign: bool = False) -> str:
    v, se = 100 * a[key], 100 * a[f"{key}~se"]
    return (f"{v:+.1f}" if sign else f"{v:.1f}") + f" ± {se:.1f}"


def write_pictures(summary: dict, docs: Path) -> list[Path]:
    """``compat_table.png`` (old->new top-1 bars) and one top-1 matrix picture per sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..eval.compatibility import ac_am, plot_compat_matrix
    from ..utils.io import atomic_path

    agg = summary["table"]
    pics = []
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    try:
        pairs = [
            ("old_old", "old/old", "#999999"),
            ("new_old", "new/old", "#1f77b4"),
            ("new_new", "new/new", "#2ca02c"),
        ]
        x = np.arange(len(LABELS))
        for j, (pair, name, color) in enumerate(pairs):
            vals = [100 * agg[k][f"top1/{pair}"] for k in LABELS]
            errs = [100 * agg[k][f"top1/{pair}~se"] for k in LABELS]
            ax.bar(x + (j - 1) * 0.27, vals, 0.27, yerr=errs, label=name, color=color, capsize=3)
        ax.set_xticks(x, [LABELS[k] for k in LABELS])
        ax.set_ylabel("CMC top-1 (%)")
        ax.set_ylim(0, 118)  # room for the legend above the bars
        ax.set_yticks(range(0, 101, 20))
        ax.legend(loc="upper center", ncol=3, fontsize=8)
        ax.set_title(f"old -> new, mean ± SE over {len(summary['seeds'])} seeds")
        fig.tight_layout()
        path = docs / "compat_table.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        pics.append(path)
    finally:
        plt.close(fig)
    for m, runs in summary["sequence"].items():
        M = np.mean([np.asarray(r["mats"]["top1"]) for r in runs], axis=0)
        ac, am = ac_am(M)
        path = plot_compat_matrix(
            M, seq_names(summary), docs / f"compat_matrix_{m}.png", metric="top1",
            title=f"{LABELS[m]} sequence, mean of {len(runs)} seeds: AC {ac:.2f}, AM {100 * am:.1f}",
        )  # fmt: skip
        pics.append(path)
    return pics


def _table(summary: dict) -> list[str]:
    agg, dims = summary["table"], summary["dims"]
    ind = agg["independent"]
    lines = [
        "| method | dims old, new | old/old | new/old | new/new | Δ top-1 new/old − old/old | Δ mAP "
        "| new/new − independent, top-1 / mAP | update gain | cos(new, old) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, label in LABELS.items():
        a = agg[k]
        cells = [
            " / ".join(_p(a[f"{m}/{pair}"]) for m in ("top1", "top5", "map"))
            for pair in ("old_old", "new_old", "new_new")
        ]
        vs = "—" if k == "independent" else f"{_pm(a, 'vs_ind/top1', True)} / {_pm(a, 'vs_ind/map', True)}"
        gain = (a["top1/new_old"] - a["top1/old_old"]) / (ind["top1/new_new"] - a["top1/old_old"])
        lines.append(
            f"| {label} | {dims['old']}, {dims[k]} | {' | '.join(cells)} | {_pm(a, 'delta/top1', True)} "
            f"| {_pm(a, 'delta/map', True)} | {vs} | {gain:.2f} | {a['align']:.2f} |"
        )
    return lines


def _claims(summary: dict) -> list[str]:
    agg = summary["table"]
    seq = summary["sequence"]

    def passes(k: str) -> tuple[bool, str]:
        a = agg[k]
        d, se = 100 * a["delta/top1"], 100 * a["delta/top1~se"]
        ok = d > 0 and (se == 0 or d > 2 * se)
        return (
            ok,
            f"Δ top-1 {d:+.1f} ± {se:.1f} ({_p(a['top1/new_old'])} vs {_p(a['top1/old_old'])}; mAP Δ {_pm(a, 'delta/map', True)})",
        )

    def cost(k: str) -> tuple[float, str]:
        a = agg[k]
        return 100 * a[
            "vs_ind/top1"
        ], f"new/new − independent {_pm(a, 'vs_ind/top1', True)} top-1, {_pm(a, 'vs_ind/map', True)} mAP"

    def word(ok: bool) -> str:
        return "**holds**" if ok else "**does not hold**"

    ind_ok, ind_txt = passes("independent")
    bct_ok, bct_txt = passes("bct")
    bct_cost, bct_ctxt = cost("bct")
    bt2_ok, bt2_txt = passes("bt2")
    bt2_cost, bt2_ctxt = cost("bt2")
    oca_ok, oca_txt = passes("oca")
    lines = [
        f"- Independent fails the criterion: {word(not ind_ok)}; {ind_txt}.",
        f"- BCT passes the criterion: {word(bct_ok)}; {bct_txt}. At a cost to new/new: "
        f"{word(bct_cost < 0)}; {bct_ctxt}.",
        f"- BT² passes the criterion: {word(bt2_ok)}; {bt2_txt}. New/new within about {CLOSE:.0f} top-1 "
        f"points of independent: {word(bt2_cost >= -CLOSE)}; {bt2_ctxt}.",
        f"- OCA passes the criterion: {word(oca_ok)}; {oca_txt}.",
    ]
    if "oca" in seq and "bct" in seq:
        ac = [r["acam"]["top1"][0] for r in seq["oca"]]
        am = {m: [r["acam"]["top1"][1] for r in seq[m]] for m in seq}
        d_am = np.asarray(am["oca"]) - np.asarray(am["bct"])
        mse = (100 * d_am.mean(), 100 * d_am.std(ddof=1) / np.sqrt(len(d_am)) if len(d_am) > 1 else 0.0)
        lines.append(
            f"- OCA keeps AC = 1 over the 3-step sequence: {word(min(ac) == 1.0)}; top-1 AC per seed "
            f"{', '.join(f'{a:.2f}' for a in ac)}. With a higher AM than BCT: {word(mse[0] > 0)}; "
            f"AM {100 * np.mean(am['oca']):.1f} vs {100 * np.mean(am['bct']):.1f}, paired difference "
            f"{mse[0]:+.1f} ± {mse[1]:.1f}."
        )
    return lines


def _sequence(summary: dict) -> list[str]:
    from ..eval.compatibility import ac_am

    lines = []
    for m, runs in summary["sequence"].items():
        dims = summary["sequence_dims"][m]
        mats = {k: np.mean([np.asarray(r["mats"][k]) for r in runs], axis=0) for k in ("top1", "top5", "map")}
        ses = {
            k: np.std([np.asarray(r["mats"][k]) for r in runs], axis=0, ddof=1) / np.sqrt(len(runs))
            if len(runs) > 1
            else 0 * mats[k]
            for k in mats
        }
        lines += [
            f"### {LABELS[m]} (dims {' → '.join(str(d) for d in dims)})",
            "",
            "| query \\ gallery | " + " | ".join(seq_names(summary)) + " |",
            "|---|---|---|---|",
        ]
        for t in range(3):
            row = []
            for i in range(3):
                if i > t:
                    row.append("")
                    continue
                cell = f"{_p(mats['top1'][t, i])} ± {_p(ses['top1'][t, i])} / {_p(mats['map'][t, i])}"
                if t > i:
                    cell += " ✓" if mats["top1"][t, i] > mats["top1"][i, i] else " ✗"
                row.append(cell)
            lines.append(f"| {seq_names(summary)[t]} | " + " | ".join(row) + " |")
        per = {k: [r["acam"][k] for r in runs] for k in ("top1", "map")}
        lines.append("")
        for k, name in (("top1", "top-1"), ("map", "mAP")):
            ac_mean, am_mean = ac_am(mats[k])
            ac_s = ", ".join(f"{a:.2f}" for a, _ in per[k])
            am_s = ", ".join(f"{100 * b:.1f}" for _, b in per[k])
            lines.append(
                f"- {name}: AC per seed {ac_s} (of the mean matrix {ac_mean:.2f}); AM per seed {am_s} "
                f"(mean {100 * am_mean:.1f})"
            )
        lines += ["", f"![{LABELS[m]} sequence](compat_matrix_{m}.png)", ""]
    return lines


def _setting(recipes: Path, summary: dict) -> list[str]:
    """The data, network and training bullets, read from the recipes the runs used."""
    from ..data.catalog import build_source
    from ..recipe import load_recipe

    old, new = load_recipe(recipes / "old.yaml"), load_recipe(recipes / "new_independent.yaml")
    bt2, oca = load_recipe(recipes / "new_bt2.yaml"), load_recipe(recipes / "new_oca.yaml")
    d, dims = new.data, summary["dims"]
    n_train = len(build_source(d, "train"))
    n_cls = len(np.unique(build_source(d, "train").labels))
    what = {
        "digitpairs": "two-digit numbers 00-99 composed from the embedded digit scans (datasets/digitpairs.md)"
    }
    old_cls = f"{len(old.data.classes)} classes" if old.data.classes else "all classes"
    if d.source == "digitpairs" and old.data.classes:
        digits = sorted({int(c) // 10 for c in old.data.classes} | {int(c) % 10 for c in old.data.classes})
        old_cls += f" (the numbers whose digits are both {digits[0]}-{digits[-1]}: it never sees the others)"
    m, o = new.method, new.optim
    head = "normalised features without bias" if getattr(m, "normalize", False) else "raw features"
    last = lambda r: (r.model.kwargs or {}).get("channels", [None] * 4)[-1]  # noqa: E731
    return [
        f"- Data: `{d.source}`{', ' + what[d.source] if d.source in what else ''}, {d.image_size} px; "
        f"{n_train:,} training and {summary['n_test']:,} test images of {n_cls} classes; old model on "
        f"{old_cls}, new models on all (the papers: CIFAR-100 50 → 100).",
        f"- Network: {'CIFAR-stem ' if new.model.cifar_stem else ''}{new.model.backbone} of width "
        f"{new.model.width} ({dims['old']}-d old and independent features); BT²'s backbone ends in "
        f"{last(bt2)} channels (f = the first {last(bt2) - dims['old']}, u reads all), OCA's in "
        f"{last(oca)} (the retrieval feature h); BT² and OCA features: {dims['bt2']} and {dims['oca']} dims.",
        f"- Training (recipes in `{recipes}`): {m.name}, classifier on {head}, label smoothing "
        f"{getattr(m, 'label_smoothing', 0)}, {o.name} lr {o.lr:g}, weight decay {o.weight_decay:g}, "
        f"{o.schedule} schedule with {o.warmup_epochs:g} warm-up epoch(s), {new.train.epochs} epochs, "
        f"batch {d.batch_size}, random crops of {100 * d.augment.crop_scale[0]:.0f}-"
        f"{100 * d.augment.crop_scale[1]:.0f}% of the area.",
    ]


def write_doc(path: Path, summary: dict, pics: list[Path], recipes: Path, args) -> None:
    from ..utils.io import atomic_write_text
    from ._compat_ablations import ablation_doc

    seeds = summary["seeds"]
    cmd = "selfsup compat replicate" + (f" --recipes {recipes}" if str(recipes) != "recipes/compat" else "")
    if seeds != [0, 1, 2]:
        cmd += " --seeds " + " ".join(str(s) for s in seeds)
    if args.ablations:
        cmd += " --ablations"
    if args.epochs:
        cmd += f" --epochs {args.epochs}"
    lines = [
        "# Backward-compatible training: replication of BCT, BT² and OCA",
        "",
        f"Generated by `{cmd}` (add `--jobs 2` to train two runs at once); rerunning it retrains "
        "every model and rewrites this page and its pictures. Methods, defaults and departures from the "
        "official code: [methods/compat.md](methods/compat.md).",
        "",
        "## Setting",
        "",
        "The papers' protocol, scaled to a CPU: an old model trained on half of the classes, new models "
        "on all of them, retrieval with query = gallery = the whole test split (all classes), each "
        "query's own image excluded, cosine similarity, new/old truncated to the old model's dims; CMC "
        "top-1 / top-5 and mAP over the full ranking, in %.",
        "",
        *_setting(recipes, summary),
        f"- Seeds {', '.join(str(s) for s in seeds)}: each seed retrains every model (old model seed s, "
        "new models s+100 — one initialisation shared by all new models of a seed, so their "
        "differences are paired — sequence steps s+200 and s+300).",
        "",
        "## Old → new",
        "",
        f"Cells: top-1 / top-5 / mAP, mean over {len(seeds)} seeds. Δ: the paired per-query difference "
        "new/old − old/old (same queries, same old gallery), averaged over queries and seeds, ± a "
        "standard error that counts both the seeds and the queries (the seeds share one test set: "
        "sqrt(SE between seeds² + SE over queries of the seed-averaged differences²)); new/new − "
        "independent likewise (same queries, each model's own gallery). Other cells: ± SE between "
        "seeds. "
        "Update gain G = [M(new, old) − M(old, old)] / [M(independent, independent) − M(old, old)] on "
        "top-1. cos(new, old): mean cosine between a test image's new feature (first d_old dims) and "
        "its old feature.",
        "",
        *_table(summary),
        "",
        "![old -> new](compat_table.png)",
        "",
        "## The papers' claims, checked",
        "",
        "A criterion M(new, old) > M(old, old) counts as met when the mean Δ exceeds twice its "
        "standard error.",
        "",
        *_claims(summary),
        "",
    ]
    if summary["sequence"]:
        lines += [
            "## 3-step sequences",
            "",
            "v1 = the old model; v2 = the method's recipe on the classes of `--step-classes` (by "
            "default the numbers whose digits are both 0-8), compatible with v1; v3 = the recipe on "
            "all classes, compatible with v2 (BT²'s teachers: an independent model on v2's classes, "
            "then the all-class one). M[t][i]: query model t against "
            "gallery model i, top-1 ± SE over seeds / mAP; ✓: M[t][i] > M[i][i] on the mean top-1. "
            "AC = fraction of the 3 pairs t > i meeting it; AM = mean of the 6 cells i ≤ t.",
            "",
            *_sequence(summary),
        ]
    lines += ablation_doc(summary)
    lines += ["## Cost", "", "| runs | count | wall (s) | CPU (s) |", "|---|---|---|---|"]
    groups: dict[str, list] = {}
    for name, t in summary["timings_s"].items():
        run = name.split("/", 1)[-1]
        key = (
            "ablations"
            if run.startswith("abl_")
            else ("sequences" if run.startswith("seq_") else "old → new table")
        )
        groups.setdefault(key, []).append(t)
    for key, ts in groups.items():
        lines.append(
            f"| {key} | {len(ts)} | {sum(t['wall'] for t in ts):.0f} | {sum(t['cpu'] for t in ts):.0f} |"
        )
    lines += [
        "",
        "CPU = user + system time of each run's process (training, its evaluation), one thread, on a "
        "shared 2-core machine; the report's embedding and ranking add about a minute.",
        "",
    ]
    atomic_write_text(path, "\n".join(lines))
