"""Collapse check and view invariance on the per-epoch score statistics of a contrastive run.

A contrastive embedding has collapsed when every projection points the same way: positive and
negative cosines are then both about 1 and InfoNCE sits at ``log(K + 1)``, its value when nothing
is told apart, with vanishing gradients. The check reads the epoch means of the TRUE cosines
(``pos_cos`` / ``neg_cos`` in ``scores.json``: before FT, so the same quantity with and without
FT) and flags an epoch when both exceed ``threshold``. Healthy runs of this project keep the mean
negative cosine below 0.5 (on the digits, where the queue holds most of the data set), collapsed
ones sit above 0.99, so 0.9 leaves a wide margin on both sides.

The view invariance ``rho = 1 - (1 - pos_cos) / (1 - neg_cos)`` is 1 when the two views of an
image coincide and 0 when they are no closer than two different images. Near a collapse it is the
correlation of the two views' deviations from the common direction, which decides whether FT's
positive extrapolation pulls the embedding into the collapse (``docs/methods/ft.md``).
"""

from __future__ import annotations

COLLAPSE_THRESHOLD = 0.9


def _cos(rec: dict, key: str) -> float | None:
    # Files written before the cosine means existed: fall back to the scored values (equal to the
    # cosines without FT, and both about 1 at a collapse with FT).
    v = rec.get(f"{key}_cos", rec.get(f"{key}_mean"))
    return None if v is None else float(v)


def is_collapsed(rec: dict, threshold: float = COLLAPSE_THRESHOLD) -> bool:
    """Whether one epoch record of ``scores.json`` has both mean cosines above ``threshold``."""
    pos, neg = _cos(rec, "pos"), _cos(rec, "neg")
    return pos is not None and neg is not None and pos > threshold and neg > threshold


def collapsed_epochs(data: dict, threshold: float = COLLAPSE_THRESHOLD) -> list[int]:
    """The epochs of a parsed ``scores.json`` whose mean cosines are both above ``threshold``."""
    return [int(e["epoch"]) for e in data.get("epochs", []) if is_collapsed(e, threshold)]


def view_invariance(rec: dict) -> float | None:
    """``rho = 1 - (1 - pos_cos) / (1 - neg_cos)`` of one epoch record (``None`` if undefined).

    Undefined when the record lacks the means or the negatives sit within 1e-6 of 1.
    """
    pos, neg = _cos(rec, "pos"), _cos(rec, "neg")
    if pos is None or neg is None or 1.0 - neg < 1e-6:
        return None
    return 1.0 - (1.0 - pos) / (1.0 - neg)


def collapse_message(rec: dict, threshold: float = COLLAPSE_THRESHOLD, ft: bool = False) -> str:
    """The one-line warning for a collapsed epoch record (the log and the report use it)."""
    text = (
        f"collapse at epoch {rec['epoch']}: mean positive cosine {_cos(rec, 'pos'):.3f} and mean "
        f"negative cosine {_cos(rec, 'neg'):.3f} both exceed {threshold}; the projections point "
        "one way, the loss tells almost nothing apart and the encoder learns little while it lasts"
    )
    if ft:
        text += (
            " (FT's positive extrapolation pulls a weakly invariant encoder into this state: see "
            "docs/methods/ft.md; use target: neg, or min_invariance)"
        )
    return text


def collapse_summary(data: dict, threshold: float = COLLAPSE_THRESHOLD) -> str | None:
    """One line for a run's report: which epochs collapsed, or ``None`` if none did."""
    epochs = collapsed_epochs(data, threshold)
    if not epochs:
        return None
    first = next(e for e in data["epochs"] if int(e["epoch"]) == epochs[0])
    ft = any(e.get("ft_active") for e in data["epochs"])
    span = f"epochs {epochs[0]}..{epochs[-1]}" if len(epochs) > 1 else f"epoch {epochs[0]}"
    return f"{len(epochs)} of {len(data['epochs'])} epochs collapsed ({span}); first: " + collapse_message(
        first, threshold, ft
    )
