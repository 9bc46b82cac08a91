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
    out_dir: Path | None = None,
) -> dict[str, float]:
    """Linear, kNN, retrieval and equivariance evaluations on the train/test splits of ``data_cfg``.

    ``equivariance`` (SIE's protocols, :mod:`selfsup.eval.equivariance`) brings its own linear
    classification (``linear/top1``, one random view per object, per feature part), so with it in
    ``tasks`` the generic ``linear`` probe is not run. Its retrieval picture goes to ``out_dir``.
    """
    from .features import cached_features

    out: dict[str, float] = {}
    if "equivariance" in tasks:
        from .equivariance_data import evaluate_equivariance, note

        if "linear" in tasks:
            note(
                "eval.run has equivariance: linear/top1 is its protocol (one random view per object), not the generic probe"
            )
            tasks = [t for t in tasks if t != "linear"]
        out.update(
            evaluate_equivariance(
                encoder,
                info,
                data_cfg,
                eval_cfg.equivariance,
                cache_dir,
                out_dir,
                eval_cfg.batch_size,
                seed,
                progress,
            )
        )
    tasks = [t for t in tasks if t in ("linear", "knn", "retrieval")]
    if not tasks:
        return {f"{prefix}{k}": v for k, v in out.items()}
    tr = cached_features(encoder, info, data_cfg, "train", cache_dir, eval_cfg.batch_size, progress)
    te = cached_features(encoder, info, data_cfg, "test", cache_dir, eval_cfg.batch_size, progress)
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
