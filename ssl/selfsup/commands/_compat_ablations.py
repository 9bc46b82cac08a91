"""``selfsup compat replicate --ablations``: the defaults issue 14 replaced, retrained on one seed.

Each ablation is one run that differs from a default run of the same seed in one setting, so the
report can show what that setting did: same queries, same gallery, paired per-query differences.
"""

from __future__ import annotations

RAW = ["method.normalize=false", "method.bias=true"]
NARROW = "<narrow>"  # the new backbone as wide as the old model (resolved when the old model exists)
LONG = "<long>"  # twice the recipe's epochs


def _a(name, recipe, over, old, ref, what, indep="new_independent") -> dict:
    """``indep``: the independent model of the row's setting (BT²'s teacher, the new/new reference)."""
    return {
        "name": name,
        "recipe": recipe,
        "over": over,
        "old": old,
        "ref": ref,
        "what": what,
        "indep": indep,
    }


BT2 = "new_bt2.yaml"
ABLATIONS = [
    # 1. the previous defaults, one at a time
    _a("abl_old_raw", "old.yaml", RAW, None, "old",
       "old model: classifier on raw features with bias (the previous `supervised` default)"),
    _a("abl_independent_raw", "new_independent.yaml", RAW, "abl_old_raw", "new_independent",
       "independent, raw classifier, against the raw old model"),
    _a("abl_bct_raw", "new_bct.yaml", [*RAW, "compat.normalize=false"], "abl_old_raw", "new_bct",
       "BCT as before: raw classifiers, influence loss on raw features, raw old model",
       indep="abl_independent_raw"),
    _a("abl_bct_rawinfl", "new_bct.yaml", ["compat.normalize=false"], "old", "new_bct",
       "BCT: only the influence loss on raw features"),
    _a("abl_bt2_shared", BT2, [NARROW, "compat.label_smoothing=0.1"], "old", "new_bt2",
       "BT² as before: backbone as wide as the old model, f and u from the same dims, label smoothing 0.1"),
    _a("abl_bt2_ls", BT2, ["compat.label_smoothing=0.1"], "old", "new_bt2",
       "BT²: only label smoothing 0.1 on the pseudo-classifier CE"),
    _a("abl_oca_linear", "new_oca.yaml", [NARROW], "old", "new_oca",
       "OCA as before: backbone as wide as the old model, h = normalize(Linear(d_old -> d_old + k))"),
    # 2. BT², one term at a time (lambda1 / lambda2 / lambda3 = distillation / pseudo-CE / old alignment)
    _a("abl_bt2_ce_distill", BT2, ["compat.lambda2=0", "compat.lambda3=0"], "old", "new_bt2",
       "BT², only CE + distillation (lambda2 = lambda3 = 0)"),
    _a("abl_bt2_no_distill", BT2, ["compat.lambda1=0"], "old", "new_bt2", "BT² without distillation (lambda1 = 0)"),
    _a("abl_bt2_no_pseudo", BT2, ["compat.lambda2=0"], "old", "new_bt2", "BT² without the pseudo-classifier CE"),
    _a("abl_bt2_no_align", BT2, ["compat.lambda3=0"], "old", "new_bt2", "BT² without the old-feature alignment"),
    _a("abl_bt2_distill5", BT2, ["compat.lambda1=5"], "old", "new_bt2", "BT² with distillation weight 5 (not 1)"),
    # 3. a schedule twice as long (old model and teacher retrained too)
    _a("abl_long_old", "old.yaml", [LONG], None, "old", "old model, twice the epochs"),
    _a("abl_long_independent", "new_independent.yaml", [LONG], "abl_long_old", "new_independent",
       "independent, twice the epochs"),
    _a("abl_long_bct", "new_bct.yaml", [LONG], "abl_long_old", "new_bct", "BCT, twice the epochs",
       indep="abl_long_independent"),
    _a("abl_long_bt2", BT2, [LONG], "abl_long_old", "new_bt2", "BT², twice the epochs",
       indep="abl_long_independent"),
    _a("abl_long_oca", "new_oca.yaml", [LONG], "abl_long_old", "new_oca", "OCA, twice the epochs",
       indep="abl_long_independent"),
]  # fmt: skip


def ablations(recipes, out, prefix: str, seed: int, old, ind, add, args) -> list:
    """Add the ablation tasks of one seed through ``add`` (as in :func:`._compat_runs.plan`)."""
    from ..recipe import load_recipe
    from ._compat_tasks import SEED_OFFSETS, _channels, old_dim

    made: dict = {"old": old, "new_independent": ind}
    for a in ABLATIONS:
        recipe = recipes / a["recipe"]
        kind = "pretrain" if a["recipe"] == "old.yaml" else "compat"
        teacher = made[a["indep"]] if a["recipe"] == BT2 else None
        old_task = made.get(a["old"]) if a["old"] else None
        over = [o for o in a["over"] if o not in (NARROW, LONG)]
        if LONG in a["over"]:
            over.append(f"train.epochs={2 * (args.epochs or load_recipe(recipe).train.epochs)}")
        late = None
        if NARROW in a["over"]:
            widen = _channels(recipe, lambda t=old_task: old_dim(t))
            # BT² then takes f from all of the backbone's dims: the previous default
            late = (lambda w=widen, t=old_task: [*w(), f"compat.new_dim={old_dim(t)}"]) if teacher else widen
        made[a["name"]] = add(
            prefix + a["name"], kind, a["recipe"], seed + SEED_OFFSETS["old" if kind == "pretrain" else "new"],
            {"seed": seed, "ablation": a["name"]}, *over, old=old_task, teacher=teacher, late=late,
        )  # fmt: skip
    return []  # add() has appended every task to the plan already


def ablation_rows(tasks, feats, labels, two_model) -> list[dict]:
    """One row per ablation: its cells and the paired difference to the default run it replaces."""
    by = {t.name: t for t in tasks}
    rows = []
    for a in ABLATIONS:
        name, old_name, ref, what = a["name"], a["old"], a["ref"], a["what"]
        t = next((x for x in tasks if x.role.get("ablation") == name), None)
        if t is None:
            continue
        p = t.name[: -len(name)]
        old = feats(by[p + old_name]) if old_name else None
        if a["recipe"] == "old.yaml":
            r = two_model(feats(t), feats(t), labels)
            d = two_model(feats(by[p + "old"]), feats(by[p + "old"]), labels)
            row = {"name": name, "what": what, "old_old": r["top1/old_old"], "ref_old_old": d["top1/old_old"],
                   "map_old_old": r["map/old_old"], "ref_map_old_old": d["map/old_old"]}  # fmt: skip
        else:
            base_old = feats(by[p + "old"])
            ind = by.get(p + a["indep"])
            ind_nn = None
            if ind is not None and ind is not t:
                ind_old = feats(by[p + "abl_old_raw"]) if a["indep"] == "abl_independent_raw" else old
                ind_nn = two_model(ind_old, feats(ind), labels)["_nn"]
            r = two_model(old, feats(t), labels, ind_nn)
            d = two_model(
                base_old,
                feats(by[p + ref]),
                labels,
                two_model(base_old, feats(by[p + "new_independent"]), labels)["_nn"],
            )
            row = {"name": name, "what": what, "ref": ref, **{k: v for k, v in r.items() if not k.startswith("_")},
                   **{f"ref:{k}": v for k, v in d.items() if not k.startswith("_")}}  # fmt: skip
        rows.append(row)
    return rows


def _as_pct_pm(x: float) -> str:
    return f"{100 * x:.1f}"


def vs(r: dict) -> str:
    """New/new minus the row's independent model (paired per query), and the default's."""
    if "vs_ind/top1" not in r:
        return "—"
    ref = f" (default {100 * r['ref:vs_ind/top1']:+.1f})" if "ref:vs_ind/top1" in r else ""
    return f"{100 * r['vs_ind/top1']:+.1f} ± {100 * r['vs_ind_qse/top1']:.1f}{ref}"


def ablation_doc(summary: dict) -> list[str]:
    rows = summary.get("ablations") or []
    if not rows:
        return []
    lines = [
        "## What was wrong: the replaced defaults, retrained",
        "",
        f"Seed {summary['seeds'][0]} only. Each row restores one previous default and is compared with "
        "the default run it replaces (top-1 / mAP, %; cos = mean cosine between the new feature's "
        "first d_old dims and the old feature of the same image).",
        "",
        "| run | restores | old/old | new/old | new/new | new/new − its independent, top-1 "
        "| Δ top-1 new/old − old/old | cos(new, old) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "ref" not in r:
            lines.append(
                f"| {r['name']} | {r['what']} | {_as_pct_pm(r['old_old'])} / {_as_pct_pm(r['map_old_old'])} "
                f"(default {_as_pct_pm(r['ref_old_old'])} / {_as_pct_pm(r['ref_map_old_old'])}) | | | | | |"
            )
            continue

        def cell(pair: str, pre: str = "", r: dict = r) -> str:
            return f"{_as_pct_pm(r[f'{pre}top1/{pair}'])} / {_as_pct_pm(r[f'{pre}map/{pair}'])}"

        lines.append(
            f"| {r['name']} | {r['what']} | {cell('old_old')} | {cell('new_old')} (default {cell('new_old', 'ref:')}) "
            f"| {cell('new_new')} (default {cell('new_new', 'ref:')}) | {vs(r)} | {100 * r['delta/top1']:+.1f} ± "
            f"{100 * r['delta_qse/top1']:.1f} (default {100 * r['ref:delta/top1']:+.1f}) "
            f"| {r['align']:.2f} (default {r['ref:align']:.2f}) |"
        )
    lines.append("")
    return lines
