"""Positive/negative score plots from ``RUN/scores.json`` (one run or several overlaid).

The statistics are those the FT paper tracks (Zhu et al., ICCV 2021, arXiv 2108.02982, Sec. 3),
per epoch. The first panel answers "did it collapse?" at a glance: the mean TRUE cosines of
positives (solid) and negatives (dashed) against the collapse band (both above the threshold of
:mod:`selfsup.report.collapse`, shaded red), with collapsed epochs marked by red crosses and named
in red in the figure title. Next to it the view invariance ``1 - (1 - pos) / (1 - neg)`` with FT's
critical value (below it FT's positive extrapolation contracts the embedding), then the scored
values (after FT) that the loss sees: means, variances and mean ``exp(s / T)``. The bottom row
holds, for selected epochs, the densities of the true positive and negative cosines. Several runs
(baseline, +FT, +Hallucinator) share colours across panels.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .collapse import COLLAPSE_THRESHOLD, collapse_summary, collapsed_epochs, is_collapsed, view_invariance

SCORED = [
    ("pos_mean", "positive score, mean (as scored)"),
    ("neg_mean", "negative score, mean (as scored)"),
    ("pos_var", "positive score, variance over batch"),
    ("neg_var", "negative score, variance"),
]


def load_scores(run_dir: str | Path) -> dict:
    """The parsed ``scores.json`` of a run directory (or the file itself)."""
    p = Path(run_dir)
    path = p if p.is_file() else p / "scores.json"
    if not path.exists():
        raise UserError(
            f"'{path}' not found; score statistics are written at the end of each epoch by moco and "
            "simclr runs (a run stopped by train.max_steps before an epoch ended has none)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"'{path}' is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("epochs"), list):
        raise UserError(f"'{path}' is not a selfsup scores file (no list of epochs)")
    if not data["epochs"]:
        raise UserError(f"'{path}' holds no epochs yet")
    if not all(isinstance(e, dict) and isinstance(e.get("epoch"), int) for e in data["epochs"]):
        raise UserError(f"'{path}' is damaged (an epoch entry without its number); rerun the training")
    return data


def _labels(run_dirs: list[Path], data: list[dict]) -> list[str]:
    """Run-directory names; the parent is prefixed where names collide."""
    names = [p.name if p.is_dir() else p.parent.name for p in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{n}" for p, n in zip(run_dirs, names)]
    for i, d in enumerate(data):
        gens = d.get("generators") or []
        if gens:
            names[i] += " (+" + ", +".join(gens) + ")"
    return names


def _default_epochs(data: list[dict], n: int = 3) -> list[int]:
    common = sorted(set.intersection(*({e["epoch"] for e in d["epochs"]} for d in data)))
    if not common:
        common = sorted({e["epoch"] for d in data for e in d["epochs"]})
    if len(common) <= n:
        return common
    return sorted({common[0], common[len(common) // 2], common[-1]})


def run_warnings(run_dir: str | Path) -> list[str]:
    """The warnings a run's report repeats: its collapse summary and the other warnings logged by
    the score hooks (each once). Empty for runs without ``scores.json``."""
    path = Path(run_dir) / "scores.json"
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    out = []
    summary = collapse_summary(data)
    if summary:
        out.append(summary)
    for e in data.get("epochs", []):
        for w in e.get("warnings", []):
            if not w.startswith("collapse at epoch") and "still collapsed" not in w and w not in out:
                out.append(w)
    return out


def _cos(rec: dict, key: str) -> float:
    import math

    v = rec.get(f"{key}_cos", rec.get(f"{key}_mean"))
    return math.nan if v is None else float(v)


def plot_scores(
    run_dirs: list[str | Path],
    out: str | Path,
    epochs: list[int] | None = None,
    labels: list[str] | None = None,
    threshold: float = COLLAPSE_THRESHOLD,
) -> Path:
    """Draw the score curves and per-epoch score distributions of ``run_dirs`` into ``out`` (PNG).

    Args:
        run_dirs: run directories holding ``scores.json`` (or the files themselves).
        out: PNG path, written atomically.
        epochs: epochs whose distributions to draw (default: first, middle and last).
        labels: legend names (default: run-directory names plus their generators).
        threshold: the collapse threshold on both mean cosines.
    """
    import numpy as np

    from .plots import _plt, save_figure

    run_dirs = [Path(r) for r in run_dirs]
    data = [load_scores(r) for r in run_dirs]
    labels = labels or _labels(run_dirs, data)
    if len(labels) != len(data):
        raise UserError(f"--labels: got {len(labels)} labels for {len(data)} runs")
    available = sorted({e["epoch"] for d in data for e in d["epochs"]})
    epochs = list(epochs) if epochs else _default_epochs(data)
    missing = [e for e in epochs if e not in available]
    if missing:
        raise UserError(
            f"--epochs: no run has epoch {', '.join(map(str, missing))}; available: "
            f"{available[0]}..{available[-1]}"
        )
    plt = _plt()
    ncols = max(4, len(epochs))
    fig, axes = plt.subplots(3, ncols, figsize=(3.7 * ncols, 9.6), squeeze=False)
    # Red is reserved for collapse marks: runs take the other colours of the cycle.
    from matplotlib.colors import to_hex

    cycle = [to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    colors = [c for c in cycle if c != "#d62728"] or cycle
    cos_ax, inv_ax = axes[0][0], axes[0][1]
    scored_axes = [axes[0][2], axes[0][3], axes[1][0], axes[1][1]]
    exp_ax, legend_ax = axes[1][2], axes[1][3]
    collapsed_all: list[tuple[str, list[int]]] = []
    peak = [0.0] * len(epochs)  # highest density of the runs that did not collapse, per panel
    critical = sorted({d["ft_critical_invariance"] for d in data if d.get("ft_critical_invariance")})
    for i, (d, label) in enumerate(zip(data, labels)):
        c = colors[i % len(colors)]
        recs = d["epochs"]
        ep = [e["epoch"] for e in recs]
        cos_ax.plot(ep, [_cos(e, "pos") for e in recs], "-o", ms=3, color=c, label=label)
        cos_ax.plot(ep, [_cos(e, "neg") for e in recs], "--", color=c)
        bad = collapsed_epochs(d, threshold)
        if bad:
            collapsed_all.append((label, bad))
            by = {e["epoch"]: e for e in recs}
            cos_ax.plot(bad, [_cos(by[b], "neg") for b in bad], "x", color="red", ms=8, mew=2)
        # Undefined in collapsed epochs (a ratio of rounding errors): left out.
        inv = [None if is_collapsed(e, threshold) else view_invariance(e) for e in recs]
        inv_ax.plot(ep, [np.nan if v is None else v for v in inv], "-o", ms=3, color=c)
        for ax, (key, title) in zip(scored_axes, SCORED):
            ax.plot(ep, [e.get(key, np.nan) for e in recs], "-o", ms=3, color=c)
            ax.set_title(title, fontsize=9)
        exp_ax.plot(ep, [e.get("pos_exp", np.nan) for e in recs], "-o", ms=3, color=c)
        exp_ax.plot(ep, [e.get("neg_exp", np.nan) for e in recs], "--", color=c)
        by_epoch = {e["epoch"]: e for e in recs}
        for j, (ax, epoch) in enumerate(zip(axes[2], epochs)):
            rec = by_epoch.get(epoch)
            if rec is None:
                continue
            edges = np.asarray(d["bins"])
            centers = 0.5 * (edges[1:] + edges[:-1])
            width = edges[1] - edges[0]
            for key, style in (("hist_pos", "-"), ("hist_neg", "--")):
                h = np.asarray(rec[key], dtype=float)
                if h.sum() > 0:
                    dens = h / (h.sum() * width)
                    ax.plot(centers, dens, style, color=c, lw=1.4)
                    if not is_collapsed(rec, threshold):
                        peak[j] = max(peak[j], float(dens.max()))
            ax.set_xlim(-1, 1)
    # The collapse band: both means above the threshold.
    cos_ax.axhspan(threshold, 1.02, color="red", alpha=0.12, lw=0)
    cos_ax.axhline(threshold, color="red", lw=0.8, ls=":")
    cos_ax.set_ylim(min(-0.1, cos_ax.get_ylim()[0]), 1.02)
    cos_ax.set_title(
        "mean cosine: pos (solid), neg (dashed)" + ("\nCOLLAPSED (red x)" if collapsed_all else ""),
        fontsize=9,
        color="red" if collapsed_all else "black",
        fontweight="bold" if collapsed_all else "normal",
    )
    inv_ax.axhline(0.0, color="grey", lw=0.8)
    for crit in critical:
        inv_ax.axhline(crit, color="red", lw=0.8, ls=":", label=f"FT contracts below {crit:.2f}")
    if critical:
        inv_ax.legend(fontsize=7)
    inv_ax.set_title("view invariance 1 - (1 - pos) / (1 - neg)", fontsize=9)
    exp_ax.set_yscale("log")
    exp_ax.set_title("mean exp(s/T): pos (solid), neg (dashed)", fontsize=9)
    by_run = [{e["epoch"]: e for e in d["epochs"]} for d in data]
    for j, (ax, epoch) in enumerate(zip(axes[2], epochs)):
        bad = any(r.get(epoch) is not None and r[epoch].get("collapsed") for r in by_run) or any(
            epoch in b for _, b in collapsed_all
        )
        if bad and peak[j] > 0:
            # A collapsed run piles all its mass at cosine 1: clip it so the others stay readable.
            ax.set_ylim(0, 1.25 * peak[j])
            ax.text(0.97, 0.95, "collapsed run(s):\nall mass at 1", transform=ax.transAxes, ha="right",
                    va="top", color="red", fontsize=8)  # fmt: skip
        ax.set_title(
            f"epoch {epoch}: cosine density" + (" (COLLAPSED)" if bad else ""),
            fontsize=9,
            color="red" if bad else "black",
        )
    from matplotlib.ticker import MaxNLocator

    for ax in [cos_ax, inv_ax, *scored_axes, exp_ax]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[2][: len(epochs)]:
        ax.set_xlabel("cosine: pos (solid), neg (dashed)")
        ax.grid(alpha=0.3)
    handles, names = cos_ax.get_legend_handles_labels()
    legend_ax.axis("off")
    if handles:
        legend_ax.legend(handles, names, loc="upper left", fontsize=8, frameon=False)
    for row in axes[1:]:
        for ax in row:
            if ax is not legend_ax and not ax.has_data():
                ax.axis("off")
    lines = ["positive / negative scores"]
    ft_runs = [lab for d, lab in zip(data, labels) if any(e.get("ft_active") for e in d["epochs"])]
    if ft_runs:
        lines.append("scored values are after FT (not cosines) for: " + ", ".join(ft_runs))
    title_color = "black"
    if collapsed_all:
        title_color = "red"
        lines.append(
            "COLLAPSE (mean pos and neg cosine > "
            + f"{threshold}): "
            + "; ".join(f"{lab} from epoch {b[0]} ({len(b)} epochs)" for lab, b in collapsed_all)
        )
    fig.suptitle("\n".join(lines), fontsize=10, color=title_color)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
