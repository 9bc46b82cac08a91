"""Positive/negative score plots from ``RUN/scores.json`` (one run or several overlaid).

The statistics are those the FT paper tracks (Zhu et al., ICCV 2021, arXiv 2108.02982, Sec. 3):
top row, the per-epoch means of the positive score, the negative score's mean and variance, the
positive score's variance and the mean exp-scores ``exp(s / T)``, against the epoch; bottom row, for
each selected epoch, the distributions (densities) of the true positive and negative cosines.
Several runs (baseline, +FT, +Hallucinator) share colours across panels.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

CURVES = [
    ("pos_mean", "positive score (mean)"),
    ("pos_var", "positive score (variance over batch)"),
    ("neg_mean", "negative score (mean)"),
    ("neg_var", "negative score (variance)"),
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


def plot_scores(
    run_dirs: list[str | Path],
    out: str | Path,
    epochs: list[int] | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Draw the score curves and per-epoch score distributions of ``run_dirs`` into ``out`` (PNG).

    Args:
        run_dirs: run directories holding ``scores.json`` (or the files themselves).
        out: PNG path, written atomically.
        epochs: epochs whose distributions to draw (default: first, middle and last).
        labels: legend names (default: run-directory names plus their generators).
    """
    import numpy as np

    from .plots import _plt

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
    ncols = max(len(CURVES) + 1, len(epochs))
    fig, axes = plt.subplots(2, ncols, figsize=(3.6 * ncols, 6.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (d, label) in enumerate(zip(data, labels)):
        c = colors[i % len(colors)]
        ep = [e["epoch"] for e in d["epochs"]]
        for ax, (key, title) in zip(axes[0], CURVES):
            ax.plot(ep, [e.get(key, np.nan) for e in d["epochs"]], "-o", ms=3, color=c, label=label)
            ax.set_title(title, fontsize=9)
        ax = axes[0][len(CURVES)]
        ax.plot(ep, [e.get("pos_exp", np.nan) for e in d["epochs"]], "-o", ms=3, color=c)
        ax.plot(ep, [e.get("neg_exp", np.nan) for e in d["epochs"]], "--", color=c)
        ax.set_yscale("log")
        ax.set_title("mean exp(s/T): pos (solid), neg (dashed)", fontsize=9)
        by_epoch = {e["epoch"]: e for e in d["epochs"]}
        for ax, epoch in zip(axes[1], epochs):
            rec = by_epoch.get(epoch)
            if rec is None:
                continue
            edges = np.asarray(d["bins"])
            centers = 0.5 * (edges[1:] + edges[:-1])
            width = edges[1] - edges[0]
            for key, style in (("hist_pos", "-"), ("hist_neg", "--")):
                h = np.asarray(rec[key], dtype=float)
                if h.sum() > 0:
                    ax.plot(centers, h / (h.sum() * width), style, color=c, lw=1.4)
            ax.set_title(f"epoch {epoch}: cosine density, pos (solid) / neg (dashed)", fontsize=9)
            ax.set_xlim(-1, 1)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[0][: len(CURVES) + 1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[1][: len(epochs)]:
        ax.set_xlabel("cosine")
        ax.grid(alpha=0.3)
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.axis("off")
    axes[0][0].legend(fontsize=8)
    ft_runs = [lab for d, lab in zip(data, labels) if any(e.get("ft_active") for e in d["epochs"])]
    note = "scores after FT (not cosines) for: " + ", ".join(ft_runs) if ft_runs else ""
    fig.suptitle("positive / negative scores" + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    from ..utils.io import atomic_path

    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
