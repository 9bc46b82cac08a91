"""Report of ``selfsup compat replicate``: tables, claims, matrices and pictures from finished runs.

Every number is computed here from the exported encoders on the test split (query = gallery =
all test images of all classes, own item excluded, new/old truncated to the old dimension; see
:mod:`selfsup.eval.compat_retrieval`), per seed and per query, so differences between two models
are *paired*: the same queries against the same gallery.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._compat_doc import LABELS


def per_query(q: np.ndarray, g: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query top-1 / top-5 hits and AP of queries ``q [N, Dq]`` against gallery ``g [N, Dg]``."""
    from ..eval.retrieval import l2_normalize, match_dims, ranking_stats

    q, g = match_dims(q, g, slice_dims=True)
    st, _ = ranking_stats(l2_normalize(q), labels, l2_normalize(g), labels, exclude_self=True, topk=(1, 5))
    return {"top1": st.hits[:, 0].astype(float), "top5": st.hits[:, 1].astype(float), "map": st.ap}


def alignment(q: np.ndarray, g: np.ndarray) -> float:
    """Mean cosine between a new feature's first ``d_old`` dims and the old feature of the same image."""
    from ..eval.retrieval import l2_normalize

    d = min(q.shape[1], g.shape[1])
    return float((l2_normalize(q[:, :d]) * l2_normalize(g[:, :d])).sum(1).mean())


def mean_se(xs) -> tuple[float, float]:
    """Mean and standard error over seeds (0 with one seed)."""
    x = np.asarray(xs, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def two_model(feat_old: np.ndarray, feat_new: np.ndarray, labels: np.ndarray, ref_nn=None) -> dict:
    """Cells old/old, new/old, new/new and the paired per-query differences of one seed."""
    oo, no, nn = per_query(feat_old, feat_old, labels), per_query(feat_new, feat_old, labels), None
    nn = per_query(feat_new, feat_new, labels)
    r = {
        f"{m}/{pair}": float(np.nanmean(c[m]))
        for pair, c in (("old_old", oo), ("new_old", no), ("new_new", nn))
        for m in c
    }
    for m in ("top1", "map"):
        diffs = {"delta": no[m] - oo[m]}
        if ref_nn is not None:
            diffs["vs_ind"] = nn[m] - ref_nn[m]
        for name, d in diffs.items():
            ok = d[np.isfinite(d)]  # AP is undefined (NaN) for a query without relevant items
            r[f"{name}/{m}"], r[f"{name}_qse/{m}"] = (
                float(ok.mean()),
                float(ok.std(ddof=1) / np.sqrt(len(ok))),
            )
            r[f"_q/{name}/{m}"] = d
    r["align"] = alignment(feat_new, feat_old)
    r["_nn"] = nn
    return r


def aggregate(per_seed: list[dict]) -> dict:
    """Mean and standard error over seeds of every numeric entry.

    For the paired differences (``delta``, ``vs_ind``) the error also counts the test queries: the
    seeds share one test set, so the spread between seeds misses the sampling of the queries. Their
    ``~se`` is ``sqrt(se_seeds^2 + se_queries^2)``, with ``se_queries`` the standard error over
    queries of each query's difference averaged over the seeds.
    """
    out = {}
    for k in per_seed[0]:
        if k.startswith("_"):
            continue
        out[k], out[f"{k}~se"] = mean_se([r[k] for r in per_seed])
        if k.startswith(("delta/", "vs_ind/")):
            d = np.mean([r[f"_q/{k}"] for r in per_seed], axis=0)
            d = d[np.isfinite(d)]
            se_q = float(d.std(ddof=1) / np.sqrt(len(d)))
            out[f"{k}~se_seeds"], out[f"{k}~se_queries"] = out[f"{k}~se"], se_q
            out[f"{k}~se"] = float(np.hypot(out[f"{k}~se"], se_q))
    return out


def sequence(feats: list[np.ndarray], labels: np.ndarray) -> dict:
    from ..eval.compatibility import ac_am, compat_matrices

    mats = compat_matrices(feats, labels, slice_dims=True)
    return {
        "mats": {m: M.tolist() for m, M in mats.items()},
        "acam": {m: list(ac_am(M)) for m, M in mats.items()},
    }


def report(tasks, recipes: Path, out: Path, docs: Path, args) -> None:
    """Embed the test split with every finished model and write the docs and ``summary.json``."""
    from ..eval.compat_retrieval import model_features
    from ..recipe import load_recipe
    from ._compat_ablations import ablation_rows
    from ._compat_doc import write_doc, write_pictures

    data = load_recipe(recipes / "old.yaml").data
    cache = out / "features"
    by = {t.name: t for t in tasks}
    feats: dict[str, np.ndarray] = {}
    labels = None

    def f(task) -> np.ndarray:
        nonlocal labels
        if task.name not in feats:
            (x,), y, _ = model_features([task.encoder], data, cache)
            if labels is not None and not np.array_equal(labels, y):
                raise RuntimeError(f"{task.name} embedded a different test set")
            feats[task.name], labels = x, y
        return feats[task.name]

    seeds = list(args.seeds)
    table: dict[str, list[dict]] = {k: [] for k in LABELS}
    seq: dict[str, list[dict]] = {m: [] for m in ("bct", "bt2", "oca")}
    for s in seeds:
        p = f"s{s}/"
        old = f(by[p + "old"])
        ind = two_model(old, f(by[p + "new_independent"]), labels)
        table["independent"].append(ind)
        for m in ("bct", "bt2", "oca"):
            table[m].append(two_model(old, f(by[p + f"new_{m}"]), labels, ind["_nn"]))
            if p + f"seq_{m}_v3" in by:
                seq[m].append(sequence([old, f(by[p + f"seq_{m}_v2"]), f(by[p + f"seq_{m}_v3"])], labels))
    agg = {k: aggregate(v) for k, v in table.items()}
    dims = {k: int(feats[f"s{seeds[0]}/new_{k}"].shape[1]) for k in LABELS}
    dims["old"] = int(feats[f"s{seeds[0]}/old"].shape[1])
    seq = {m: v for m, v in seq.items() if v}
    seq_dims = {
        m: [dims["old"], *(int(feats[f"s{seeds[0]}/seq_{m}_{v}"].shape[1]) for v in ("v2", "v3"))]
        for m in seq
    }
    abl = ablation_rows(tasks, f, labels, two_model) if args.ablations else []
    timings = {t.name: json.loads(t.timing.read_text()) for t in tasks if t.timing.is_file()}
    summary = {
        "seeds": seeds,
        "table_per_seed": {
            k: [{kk: vv for kk, vv in r.items() if not kk.startswith("_")} for r in v]
            for k, v in table.items()
        },
        "table": agg,
        "dims": dims,
        "sequence": seq,
        "sequence_dims": seq_dims,
        "sequence_classes": [
            len(load_recipe(recipes / "old.yaml").data.classes or np.unique(labels)),
            len(args.step_classes),
            len(np.unique(labels)),
        ],
        "ablations": abl,
        "timings_s": timings,
        "n_test": int(len(labels)),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    docs.mkdir(parents=True, exist_ok=True)
    pics = write_pictures(summary, docs)
    write_doc(docs / "results_compat.md", summary, pics, recipes, args)
    print(
        f"wrote {docs / 'results_compat.md'} and {', '.join(p.name for p in pics)}; numbers in {out / 'summary.json'}"
    )
