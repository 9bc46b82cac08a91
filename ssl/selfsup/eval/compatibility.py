"""Compatibility matrix over model versions, AC / AM, the empirical criterion and update gain.

Definitions from the ``docs/methods/compat.md`` (BCT, Shen et al.
CVPR 2020, arXiv 2003.11942; multi-model AC/AM as in ``miccunifi/iamcl2r``):

- ``M[t][i]`` = retrieval metric of query model ``t`` against gallery model ``i`` for ``i <= t``
  (diagonal: self-tests; lower triangle: cross-tests; upper triangle undefined, NaN here). Each
  cell follows the retrieval protocol of :mod:`selfsup.eval.retrieval`: query = gallery = test
  set, own item excluded by index, dimensions truncated to the smaller one and re-normalised.
- **Empirical compatibility criterion**: ``M[t][i] > M[i][i]`` (new queries against the old
  gallery beat the old model against itself), strict.
- **AC** = fraction of the ``T(T-1)/2`` pairs ``t > i`` meeting the criterion.
- **AM** = mean of the lower triangle *including* the diagonal (``T(T+1)/2`` cells).
- **Update gain** ``G = [M(new, old) - M(old, old)] / [M(new*, new*) - M(old, old)]`` with
  ``new*`` an independently trained new model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .retrieval import as_features, retrieval_metrics

METRICS = ("top1", "top5", "map")


def compat_matrices(
    features: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    slice_dims: bool = True,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """All compatibility matrices (``top1``, ``top5``, ``map``), each ``[T, T]`` with NaN above the diagonal.

    ``features[t]`` is the ``[N, D_t]`` embedding of the same ``N`` test items (same order) by model
    version ``t`` (oldest first); ``labels`` is ``[N]``. Each cell runs one full-ranking retrieval
    evaluation (docs/methods/compat.md); ``slice_dims`` truncates to the smaller dimension (the papers' protocol).
    """
    if len(features) == 0:
        raise DataError("compat matrix needs at least one model's features")
    feats = [as_features(f, f"features of model {t}") for t, f in enumerate(features)]
    n = feats[0].shape[0]
    for t, f in enumerate(feats):
        if f.shape[0] != n:
            raise DataError(
                f"model {t} embedded {f.shape[0]} items but model 0 embedded {n}; all models must "
                "embed the same test set"
            )
    labels = np.asarray(labels)
    T = len(feats)
    mats = {m: np.full((T, T), np.nan, dtype=np.float64) for m in METRICS}
    pairs = [(t, i) for t in range(T) for i in range(t + 1)]
    it = pairs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pairs, desc="compat matrix", unit="pair")
    for t, i in it:
        r = retrieval_metrics(
            feats[t],
            labels,
            feats[i],
            labels,
            exclude_self=True,
            topk=(1, 5),
            slice_dims=slice_dims,
            chunk_size=chunk_size,
            prefix="r",
        )
        for m in METRICS:
            mats[m][t, i] = r[f"r/{m}"]
    return mats


def compat_matrix(
    features: Sequence[np.ndarray],
    labels: np.ndarray,
    metric: str = "top1",
    *,
    slice_dims: bool = True,
    chunk_size: int | None = None,
) -> np.ndarray:
    """The ``[T, T]`` compatibility matrix ``M[t][i]`` for one metric (``top1``, ``top5`` or ``map``).

    See :func:`compat_matrices`; the upper triangle (``i > t``) is NaN.
    """
    if metric not in METRICS:
        raise DataError(f"unknown compatibility metric {metric!r}; choose one of {', '.join(METRICS)}")
    return compat_matrices(features, labels, slice_dims=slice_dims, chunk_size=chunk_size)[metric]


def _check_matrix(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise DataError(f"a compatibility matrix must be square [T, T], got shape {M.shape}")
    low = M[np.tril_indices(M.shape[0])]
    if not np.isfinite(low).all():
        raise DataError("the compatibility matrix has NaN/inf on or below the diagonal")
    return M


def criterion_flags(M: np.ndarray) -> np.ndarray:
    """``[T, T]`` bool: ``flags[t][i] = M[t][i] > M[i][i]`` for ``t > i`` (the empirical criterion).

    Diagonal and upper triangle are False.
    """
    M = _check_matrix(M)
    T = M.shape[0]
    flags = np.zeros((T, T), dtype=bool)
    for t in range(T):
        for i in range(t):
            flags[t, i] = M[t, i] > M[i, i]
    return flags


def ac_am(M: np.ndarray) -> tuple[float, float]:
    """Average compatibility and average multi-model accuracy of a ``[T, T]`` matrix (docs/methods/compat.md).

    AC = fraction of the ``T(T-1)/2`` pairs ``t > i`` with ``M[t][i] > M[i][i]`` (NaN for
    ``T = 1``: no pairs); AM = mean of the lower triangle including the diagonal.
    """
    M = _check_matrix(M)
    T = M.shape[0]
    n_pairs = T * (T - 1) // 2
    ac = float(criterion_flags(M).sum() / n_pairs) if n_pairs else float("nan")
    am = float(M[np.tril_indices(T)].mean())
    return ac, am


def update_gain(m_new_old: float, m_old_old: float, m_indep_new: float) -> float:
    """Update gain ``G = [M(new, old) - M(old, old)] / [M(new*, new*) - M(old, old)]`` (docs/methods/compat.md).

    ``m_indep_new`` is ``M(new*, new*)`` of an independently trained new model. NaN when the
    independent model does not improve on the old one (zero denominator).
    """
    denom = float(m_indep_new) - float(m_old_old)
    if denom == 0.0:
        return float("nan")
    return (float(m_new_old) - float(m_old_old)) / denom


def compat_metrics(matrices: dict[str, np.ndarray], ac_metric: str = "top1") -> dict[str, float]:
    """Flat ``metrics.json`` entries for compatibility matrices.

    Keys: ``compat/ac`` and ``compat/am`` (on ``ac_metric``, CMC top-1 by default, as the papers),
    ``compat/<metric>/ac`` and ``compat/<metric>/am`` for every metric given,
    ``compat/<metric>/q<t>_g<i>`` for every cell ``i <= t``, and
    ``compat/criterion/q<t>_g<i>`` (1.0 / 0.0) for every pair ``t > i`` on ``ac_metric``.
    AC is omitted with a single model (no pairs).
    """
    if ac_metric not in matrices:
        raise DataError(f"metric {ac_metric!r} is not among the matrices given ({', '.join(matrices)})")
    out: dict[str, float] = {}
    for name, M in matrices.items():
        M = _check_matrix(M)
        T = M.shape[0]
        ac, am = ac_am(M)
        if T > 1:
            out[f"compat/{name}/ac"] = ac
        out[f"compat/{name}/am"] = am
        for t in range(T):
            for i in range(t + 1):
                out[f"compat/{name}/q{t}_g{i}"] = float(M[t, i])
    M = _check_matrix(matrices[ac_metric])
    ac, am = ac_am(M)
    if M.shape[0] > 1:
        out["compat/ac"] = ac
    out["compat/am"] = am
    flags = criterion_flags(M)
    for t in range(M.shape[0]):
        for i in range(t):
            out[f"compat/criterion/q{t}_g{i}"] = float(flags[t, i])
    return out


def plot_compat_matrix(
    M: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    *,
    metric: str = "top1",
    title: str | None = None,
) -> Path:
    """Draw the lower-triangular ``[T, T]`` matrix as an annotated heat map PNG at ``path``.

    Cells show the metric in percent; each cross-test cell ``t > i`` is marked ✓ (green frame) if it
    meets the empirical criterion ``M[t][i] > M[i][i]`` and ✗ (red frame) if not. The title gives
    AC and AM. Written atomically (Agg backend).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ..utils.io import atomic_path

    M = _check_matrix(M)
    T = M.shape[0]
    names = [str(n) for n in names]
    if len(names) != T:
        raise DataError(f"{len(names)} model names given for a {T}x{T} compatibility matrix")
    flags = criterion_flags(M)
    ac, am = ac_am(M)
    masked = np.ma.masked_array(M * 100.0, mask=np.triu(np.ones((T, T), dtype=bool), k=1))
    size = 1.2 + 1.1 * T
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    try:
        im = ax.imshow(masked, cmap="viridis", vmin=0.0, vmax=100.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=f"{metric} (%)")
        for t in range(T):
            for i in range(t + 1):
                v = M[t, i] * 100.0
                text = f"{v:.1f}"
                if t > i:
                    text += "\n✓" if flags[t, i] else "\n✗"
                    color = "#2ca02c" if flags[t, i] else "#d62728"
                    ax.add_patch(
                        Rectangle(
                            (i - 0.44, t - 0.44), 0.88, 0.88, fill=False, edgecolor=color, linewidth=2.5
                        )
                    )
                ax.text(
                    i,
                    t,
                    text,
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if v < 60 else "black",
                )
        ax.set_xticks(range(T), names, rotation=30, ha="right")
        ax.set_yticks(range(T), names)
        ax.set_xlabel("gallery model\n✓ / green frame: M[t][i] > M[i][i] (compatible); ✗ / red: not")
        ax.set_ylabel("query model")
        ac_txt = "n/a" if np.isnan(ac) else f"{ac:.2f}"
        ax.set_title(title or f"compatibility ({metric}): AC {ac_txt}, AM {am * 100:.1f}")
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
    return path
