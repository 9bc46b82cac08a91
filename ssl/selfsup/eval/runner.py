"""Run the evaluations a recipe lists on a trained (or random) encoder."""

from __future__ import annotations

from pathlib import Path

from ..config import EvalConfig


def evaluate(
    encoder,
    info: dict,
    data_cfg,
    eval_cfg: EvalConfig,
    tasks: list[str],
    cache_dir: Path | None,
    seed: int = 0,
    progress: bool = True,
    prefix: str = "",
) -> dict[str, float]:
    """Linear and/or kNN (and retrieval when available) on the train/test splits of ``data_cfg``."""
    from .features import cached_features

    tasks = [t for t in tasks if t in ("linear", "knn", "retrieval")]
    if not tasks:
        return {}
    tr = cached_features(encoder, info, data_cfg, "train", cache_dir, eval_cfg.batch_size, progress)
    te = cached_features(encoder, info, data_cfg, "test", cache_dir, eval_cfg.batch_size, progress)
    out: dict[str, float] = {}
    if "linear" in tasks:
        from .linear import linear_probe

        lc = eval_cfg.linear
        out.update(
            linear_probe(
                *tr,
                *te,
                epochs=lc.epochs,
                lr=lc.lr,
                batch_size=lc.batch_size,
                weight_decay=lc.weight_decay,
                seed=seed,
            )
        )
    if "knn" in tasks:
        from .knn import knn_classify

        out.update(knn_classify(*tr, *te, ks=eval_cfg.knn.k, temperature=eval_cfg.knn.temperature))
    if "retrieval" in tasks:
        from .retrieval import retrieval_metrics

        out.update(retrieval_metrics(te[0], te[1]))
    return {f"{prefix}{k}": v for k, v in out.items()}
