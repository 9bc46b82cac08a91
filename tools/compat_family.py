"""Old -> new cells of one family of replication runs over several seeds (paired, as the report).

``selfsup compat replicate --ablations`` retrains each replaced default on the first seed only.
This tool reads runs that exist for more seeds under ``--out`` (``s<seed>/<name>``) and prints the
independent and method rows of one family with the report's statistics, e.g. the raw-feature
classifiers (the previous ``supervised``/BCT defaults) after training them on seeds 1 and 2 as
``abl_old_raw``, ``abl_independent_raw``, ``abl_bct_raw``:

    python tools/compat_family.py --old abl_old_raw --independent abl_independent_raw --new abl_bct_raw
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from selfsup.commands._compat_report import aggregate, two_model
from selfsup.eval.compat_retrieval import model_features
from selfsup.recipe import load_recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/compat_replication")
    p.add_argument("--recipes", default="recipes/compat")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--old", default="old")
    p.add_argument("--independent", default="new_independent")
    p.add_argument("--new", nargs="+", default=["new_bct"])
    a = p.parse_args()
    out = Path(a.out)
    data = load_recipe(Path(a.recipes) / "old.yaml").data

    def feats(seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        (x,), y, _ = model_features([out / f"s{seed}" / name / "encoder.pt"], data, out / "features")
        return x, y

    rows: dict[str, list[dict]] = {n: [] for n in (a.independent, *a.new)}
    for s in a.seeds:
        old, y = feats(s, a.old)
        ind = two_model(old, feats(s, a.independent)[0], y)
        rows[a.independent].append(ind)
        for n in a.new:
            rows[n].append(two_model(old, feats(s, n)[0], y, ind["_nn"]))
    print(f"seeds {a.seeds}, old model {a.old}; top-1 / mAP %, ± SE (seeds and queries for differences)")
    print("| run | old/old | new/old | new/new | Δ top-1 new/old − old/old | new/new − independent, top-1 |")
    print("|---|---|---|---|---|---|")
    for n, per_seed in rows.items():
        g = aggregate(per_seed)

        def c(k: str, g: dict = g) -> str:
            return f"{100 * g[f'top1/{k}']:.1f} / {100 * g[f'map/{k}']:.1f}"

        vs = f"{100 * g['vs_ind/top1']:+.1f} ± {100 * g['vs_ind/top1~se']:.1f}" if "vs_ind/top1" in g else "—"
        print(
            f"| {n} | {c('old_old')} | {c('new_old')} | {c('new_new')} | "
            f"{100 * g['delta/top1']:+.1f} ± {100 * g['delta/top1~se']:.1f} | {vs} |"
        )


if __name__ == "__main__":
    main()
