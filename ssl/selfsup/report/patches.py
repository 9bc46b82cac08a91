"""A grid of image patches, one row per group (OBoW: the patches most assigned to a visual word)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_patch_grid(
    rows: list[list[np.ndarray]], labels: list[str], path: str | Path, title: str = ""
) -> Path | None:
    """Draw ``rows[i][j]`` (HxWx3 floats in [0, 1]) in a grid; ``labels[i]`` names row ``i``."""
    if not rows or not any(rows):
        return None
    from .plots import _plt, save_figure

    plt = _plt()
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows),
        cols + 1,
        figsize=(1.1 * (cols + 1) + 1.2, 1.1 * len(rows) + 0.6),
        squeeze=False,
        gridspec_kw={"width_ratios": [2.2] + [1] * cols},
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (row, label) in enumerate(zip(rows, labels)):
        axes[i, 0].text(0.95, 0.5, label, ha="right", va="center", fontsize=8, transform=axes[i, 0].transAxes)
        for j, patch in enumerate(row):
            axes[i, j + 1].imshow(np.clip(patch, 0, 1), interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
