"""Training-curve plots."""

from __future__ import annotations

import json
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file, then rename) and close it."""
    from ..utils.io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        _plt().close(fig)
    return path


def plot_curves(
    history: list[dict], path: str | Path, keys: list[str] | None = None, title: str = ""
) -> Path | None:
    """One panel per scalar (loss, lr, throughput, method scalars) against the step."""
    if not history:
        return None
    keys = keys or sorted(
        {
            k
            for h in history
            for k in h
            if k != "step" and k.startswith("train/") and k not in ("train/epoch", "train/epoch_time_s")
        }
    )
    keys = [k for k in keys if any(k in h for h in history)]
    if not keys:
        return None
    plt = _plt()
    n = len(keys)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, k in zip(axes.flat, keys):
        pts = [(h["step"], h[k]) for h in history if k in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.5)
        ax.set_title(k.replace("train/", ""))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_run_curves(run_dir: str | Path) -> Path | None:
    from ..errors import UserError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"'{run_dir}' is not a folder; pass a run directory (e.g. runs/demo)")
    hist = run_dir / "history.json"
    if not hist.exists():
        raise UserError(f"'{run_dir}' has no history.json; is it a selfsup run directory?")
    try:
        history = json.loads(hist.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(
            f"'{hist}' is damaged ({type(e).__name__}); it is rewritten by the next training step"
        ) from None
    ok = isinstance(history, list) and all(
        isinstance(h, dict) and isinstance(h.get("step"), (int, float)) for h in history
    )
    if not ok:
        raise UserError(f"'{hist}' is not a selfsup history (a list of {{step, scalars}} entries)")
    if not history:
        raise UserError(f"'{hist}' holds no logged steps yet; nothing to plot")
    return plot_curves(history, run_dir / "curves.png", title=run_dir.name)
