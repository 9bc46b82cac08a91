"""The retrieval picture of the equivariance evaluation: query, predicted neighbours, true target."""

from __future__ import annotations

from pathlib import Path

from .plots import _plt, save_figure


def retrieval_grid(items: list[dict], path: str | Path) -> Path:
    """One row per item: ``query`` image, the ``retrieved`` images in rank order (a green frame
    where ``hits`` is true), then the true ``target``; ``label`` titles the row."""
    plt = _plt()
    cols = 2 + max(len(it["retrieved"]) for it in items)
    fig, axes = plt.subplots(len(items), cols, figsize=(1.6 * cols, 1.9 * len(items)), squeeze=False)
    for r, it in enumerate(items):
        cells = [("query", it["query"], False)]
        cells += [(f"top {k + 1}", img, hit) for k, (img, hit) in enumerate(zip(it["retrieved"], it["hits"]))]
        cells += [("true target", it["target"], False)]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.set_visible(False)
                continue
            title, img, hit = cells[c]
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            for side in ax.spines.values():
                side.set_edgecolor("limegreen" if hit else "0.7")
                side.set_linewidth(3 if hit else 0.5)
        axes[r][0].set_ylabel(it.get("label", ""), fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(
        "SIE predictor: query view, top-ranked views of the object, true target (green = hit)", fontsize=9
    )
    fig.tight_layout()
    return save_figure(fig, path)
