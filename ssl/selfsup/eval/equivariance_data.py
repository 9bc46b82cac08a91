"""Inputs of the equivariance evaluations, and the run that computes them.

- :func:`view_features`: backbone features of EVERY view of every object of a split, cached like
  the other evaluations' features (by model fingerprint and data), with the views' latents;
- :func:`load_heads`: the SIE split, equivariant expander and predictor that an exported encoder
  (or a training checkpoint) carries;
- :func:`evaluate_equivariance`: the protocols of :mod:`selfsup.eval.equivariance` on both, plus
  the retrieval picture.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig, EquivarianceEvalConfig
from ..errors import CheckpointError, UserError

LATENT_SOURCES = ("render3d", "3diebench")


@dataclass
class ViewFeatures:
    feats: np.ndarray  # [N, V, F] float32 backbone features, object-major in split-file order
    latents: np.ndarray  # [N, V, 7] float64
    labels: np.ndarray  # [N] int64


def iebench_root(data_cfg: DataConfig) -> Path:
    """The 3DIEBench-layout folder behind ``data_cfg`` (renders the default render3d if needed)."""
    if data_cfg.source not in LATENT_SOURCES:
        raise UserError(
            f"the equivariance evaluation needs per-view rotation latents, and data.source={data_cfg.source} has "
            "none; evaluate on render3d or 3diebench (e.g. --data render3d:DIR), or drop equivariance from eval.run"
        )
    from ..data.catalog import build_source

    src = build_source(data_cfg, "val")
    while hasattr(src, "base"):  # Subset wrappers
        src = src.base
    return Path(src.index.root)


def _latent_table(index) -> np.ndarray | None:
    """3DIEBench's ``all_latents_{split}.npy`` (object-major, V rows per object) when present."""
    for sub in (".", "data"):
        path = Path(index.root) / sub / f"all_latents_{index.split}.npy"
        if path.is_file():
            table = np.load(path)
            if table.shape == (len(index) * index.num_views, 7):
                return table.reshape(len(index), index.num_views, 7).astype(np.float64)
    return None


def view_latents(index, progress: bool = True) -> np.ndarray:
    """``[N, V, 7]`` latents of every view of a split (from the latent table or one file per view)."""
    table = _latent_table(index)
    if table is not None:
        return table
    from tqdm.auto import tqdm

    out = np.empty((len(index), index.num_views, 7), dtype=np.float64)
    for i in tqdm(range(len(index)), desc="latents", disable=not progress, leave=False):
        for v in range(index.num_views):
            out[i, v] = index.load_latent(i, v)
    return out


def view_features(
    encoder: torch.nn.Module,
    info: dict,
    data_cfg: DataConfig,
    split: str,
    cache_dir: Path | None,
    batch_size: int = 256,
    progress: bool = True,
) -> ViewFeatures:
    """Features and latents of every view of every object of ``split`` (train or val), cached."""
    from ..data.embed import extract_features
    from ..data.iebench import IEBenchSource
    from .features import cache_file, read_cached

    root = iebench_root(data_cfg)
    src = IEBenchSource(root, split, image_size=data_cfg.image_size, view="all")
    path = cache_file(cache_dir, f"views-{split}", info, data_cfg, split, src, kind="all-views")
    cached = read_cached(path, "feats", "latents", "labels")
    if cached is not None:
        return ViewFeatures(*cached)
    n, v = len(src.index), src.index.num_views
    if v < 2:
        raise UserError(f"'{root}' has {v} view per object; the equivariance evaluation needs at least 2")
    # Every view of every object (2.6M images on 3DIEBench): decode with the recipe's workers.
    feats, _ = extract_features(
        encoder,
        src,
        data_cfg,
        batch_size,
        progress,
        desc=f"features/{split}/all views",
        num_workers=data_cfg.num_workers,
    )
    out = ViewFeatures(
        feats.reshape(n, v, -1).astype(np.float32), view_latents(src.index, progress), src.index.labels.copy()
    )
    if path is not None:
        from ..utils.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, feats=out.feats, latents=out.latents, labels=out.labels)
    return out


def load_heads(info: dict) -> dict | None:
    """SIE's split, equivariant expander and predictor from the checkpoint ``info["path"]``, or None.

    Exported encoders carry them under ``equivariance`` (``SIE.export_info``); a training
    checkpoint has them in its model weights and recipe. Returns ``{"repr_dim", "equi_dims",
    "transform", "projector": nn.Module, "predictor": nn.Module}`` in eval mode.
    """
    if not info.get("path"):
        return None
    from ..models.heads import expander
    from ..models.hypernet import build_predictor
    from ..utils.checkpoint import load_model_state, read_checkpoint

    ckpt = read_checkpoint(info["path"])
    spec = ckpt.get("equivariance")
    if spec is None and "model" in ckpt and (ckpt.get("recipe") or {}).get("method", {}).get("name") == "sie":
        from ..config import from_dict
        from ..methods.sie import SIEConfig, head_specs

        cfg = from_dict(SIEConfig, ckpt["recipe"]["method"], "method")
        spec = head_specs(cfg, int(info["dim"]))
        sd = ckpt["model"]
        spec["projector_state"] = {
            k[len("projector_equi.") :]: t for k, t in sd.items() if k.startswith("projector_equi.")
        }
        spec["predictor_state"] = {
            k[len("predictor.") :]: t for k, t in sd.items() if k.startswith("predictor.")
        }
    if spec is None:
        return None
    if int(spec["repr_dim"]) != int(info["dim"]):
        raise CheckpointError(
            f"'{info['path']}': its SIE heads expect {spec['repr_dim']} features, the encoder has {info['dim']}"
        )
    projector = expander(int(spec["projector"]["in_dim"]), [int(d) for d in spec["projector"]["dims"]])
    predictor = build_predictor(spec["predictor"])
    load_model_state(projector, spec["projector_state"], info["path"])
    load_model_state(predictor, spec["predictor_state"], info["path"])
    return {
        "repr_dim": int(spec["repr_dim"]),
        "equi_dims": int(spec["equi_dims"]),
        "transform": spec.get("transform", "rotation"),
        "projector": projector.eval(),
        "predictor": predictor.eval(),
    }


def feature_parts(repr_dim: int, equi_dims: int | None) -> dict[str, slice]:
    """Parts to evaluate: the whole (``""``), and ``_inv`` / ``_equi`` when the encoder is split."""
    parts = {"": slice(None)}
    if equi_dims is None or int(equi_dims) == repr_dim:
        return parts
    e = int(equi_dims)
    if not 0 < e < repr_dim:
        raise UserError(
            f"the representation split (equivariant part of {e} dims) is larger than the backbone's {repr_dim} "
            f"features; choose equi_dims between 1 and {repr_dim - 1}"
        )
    parts["_inv"] = slice(0, repr_dim - e)
    parts["_equi"] = slice(repr_dim - e, None)
    return parts


def note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


@torch.no_grad()
def _embed(projector: torch.nn.Module, feats: np.ndarray, equi_dims: int) -> torch.Tensor:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    projector = projector.to(dev).eval()
    x = torch.from_numpy(feats[..., feats.shape[-1] - equi_dims :]).float().to(dev)
    n, v, f = x.shape
    flat = x.reshape(-1, f)
    out = torch.cat([projector(flat[i : i + 8192]) for i in range(0, len(flat), 8192)])
    return out.view(n, v, -1)


def evaluate_equivariance(
    encoder: torch.nn.Module,
    info: dict,
    data_cfg: DataConfig,
    cfg: EquivarianceEvalConfig,
    cache_dir: Path | None,
    out_dir: Path | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Classification per part, rotation and colour R², and (SIE) MRR, Hit@k, PRE and the picture."""
    from .equivariance import classification, pair_regression, predictor_metrics

    tr = view_features(encoder, info, data_cfg, "train", cache_dir, batch_size, progress)
    va = view_features(encoder, info, data_cfg, "val", cache_dir, batch_size, progress)
    repr_dim = tr.feats.shape[-1]
    heads = load_heads(info)
    equi_dims = heads["equi_dims"] if heads else cfg.equi_dims
    parts = feature_parts(repr_dim, equi_dims)
    if len(parts) == 1 and not heads:
        note("the encoder has no invariant/equivariant split: every metric uses the whole representation")
    common = {"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": seed}
    out = classification(tr.feats, tr.labels, va.feats, va.labels, parts, **common)
    out.update(
        pair_regression(
            tr.feats,
            tr.latents,
            va.feats,
            va.latents,
            parts,
            hidden=cfg.hidden,
            val_pairs=cfg.val_pairs,
            **common,
        )
    )
    if (
        heads and heads["equi_dims"] == repr_dim
    ):  # SIE-OnlyEqui: the whole representation is the equivariant part
        out.update({k + "_equi": v for k, v in list(out.items()) if k.endswith(("top1", "top5", "_r2"))})
    if not cfg.retrieval:
        return out
    if heads is None:
        note("MRR, Hit@k and PRE need an SIE predictor, which this encoder does not have: skipped")
        return out
    emb = {"train": _embed(heads["projector"], tr.feats, heads["equi_dims"])}
    emb["val"] = _embed(heads["projector"], va.feats, heads["equi_dims"])
    predictor = heads["predictor"].to(emb["val"].device)
    metrics, keep = predictor_metrics(
        emb, {"train": tr.latents, "val": va.latents}, predictor, heads["transform"]
    )
    out.update(metrics)
    if out_dir is not None:
        retrieval_picture(
            iebench_root(data_cfg), data_cfg.image_size, emb["val"].cpu(), keep["pred"], out_dir
        )
    return out


def retrieval_picture(
    root: Path, size: int, emb: torch.Tensor, pred: torch.Tensor, out_dir: Path, rows: int = 4, top: int = 5
) -> Path:
    """``equivariance_retrieval.png``: for a few val objects, the query (view 0), the predictor's
    top-``top`` views of the object for a target view, and that true target view."""
    from ..data.iebench import IEBenchIndex
    from ..report.equivariance import retrieval_grid
    from .equivariance import l2n

    index = IEBenchIndex(root, "val")
    n, v = emb.shape[:2]
    objs = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int))
    items = []
    for o in objs:
        e = 1 + int(o) % (v - 1)  # a target other than the query view
        sims = l2n(emb[o].float()) @ l2n(pred[o, e].float())
        order = torch.argsort(sims, descending=True)[:top].tolist()
        items.append(
            {
                "query": index.load_image(int(o), 0, size),
                "retrieved": [index.load_image(int(o), int(k), size) for k in order],
                "hits": [int(k) == e for k in order],
                "target": index.load_image(int(o), e, size),
                "label": f"{index.classes[index.labels[o]]} {Path(str(index.paths[o])).name}: view 0 -> {e}",
            }
        )
    return retrieval_grid(items, Path(out_dir) / "equivariance_retrieval.png")
