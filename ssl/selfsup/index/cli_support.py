"""Shared argument handling for the ``selfsup index`` commands: where features, model info and the
identity of the embedded items come from.

Features come either from a checkpoint embedding a dataset (``--ckpt CKPT [--data SPEC] [--split]``;
model info from the checkpoint) or from a saved ``[N, D]`` ``.npy`` file (``--feats FILE`` with
``--fingerprint``, ``--model-id``, ``--compatible-with``; labels optional via ``--labels``), which
lets an index be built from features computed elsewhere.

Which data a checkpoint embeds: ``build`` defaults to the checkpoint's training data (test
split); ``query`` and ``upgrade`` default to the index's own data and split, as recorded in its
metadata (:mod:`selfsup.index.identity`), with the checkpoint's preprocessing (image size,
normalisation). So a new model upgrading an old model's gallery embeds the gallery's items, not
its own training set. Heavy imports happen inside functions.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UserError
from .identity import FEATURES, features_identity, source_identity


def add_source_args(parser: argparse.ArgumentParser, default_data: str = "the index's own data") -> None:
    """``--ckpt``/``--feats`` (one required) and their companions."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", metavar="CKPT", help="checkpoint whose encoder embeds --data")
    src.add_argument("--feats", metavar="FILE.npy", help="precomputed [N, D] features instead of --ckpt")
    parser.add_argument(
        "--data",
        metavar="SPEC",
        default=None,
        help=f"dataset spec, e.g. 'digits' or 'render3d:PATH' (default: {default_data})",
    )
    parser.add_argument(
        "--split",
        default=None,
        help="dataset split to embed (default: the index's split; test for a new index)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="embedding batch size (default: 256)")
    parser.add_argument("--labels", metavar="FILE.npy", help="with --feats: [N] integer labels")
    parser.add_argument("--fingerprint", help="with --feats: fingerprint of the model that made them")
    parser.add_argument("--model-id", help="with --feats: readable model name (default: the fingerprint)")
    parser.add_argument(
        "--compatible-with",
        nargs="*",
        default=[],
        metavar="FP",
        help="with --feats: fingerprints of older models this model is compatible with",
    )


def _load_npy(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} file {p} does not exist")
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{what} file {p} is not a readable .npy array ({e})") from e


class CliSource:
    """What the flags name: ``model_info``, ``identity`` and ``labels`` of the items at once,
    their ``[N, D]`` float32 ``features()`` on demand (embedding is the slow part)."""

    def __init__(self, args: argparse.Namespace, index_meta: Mapping[str, Any] | None = None) -> None:
        if args.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
        self._feats: np.ndarray | None = None
        if args.ckpt:
            self._init_ckpt(args, index_meta)
        else:
            self._init_feats(args)

    def _init_ckpt(self, args, index_meta) -> None:
        from ..data.catalog import build_source
        from ..models.export import load_encoder

        self.encoder, info = load_encoder(args.ckpt)
        self.model_info = dict(info)
        self.data_cfg, self.split = resolve_data(args, info, index_meta)
        source = build_source(self.data_cfg, self.split)
        self.identity = source_identity(self.data_cfg, self.split, source)
        self.labels = np.asarray(source.labels, dtype=np.int64)
        self._ckpt, self._batch = args.ckpt, args.batch_size

    def _init_feats(self, args) -> None:
        if not args.fingerprint:
            raise UserError("--feats needs --fingerprint naming the model that computed the features")
        if args.data or args.split:
            raise UserError("--data and --split describe what --ckpt embeds; with --feats give --labels")
        self.model_info = {
            "fingerprint": args.fingerprint,
            "model_id": args.model_id or args.fingerprint,
            "compatible_with": list(args.compatible_with or []),
        }
        feats = _load_npy(args.feats, "features")
        if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
            raise DataError(f"features file {args.feats} holds shape {feats.shape}, expected [N, D]")
        if not np.issubdtype(feats.dtype, np.number):
            raise DataError(f"features file {args.feats} holds {feats.dtype} values, not numbers")
        self.labels = None
        if args.labels:
            labels = _load_npy(args.labels, "labels")
            if labels.shape != (feats.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(
                    f"--labels holds {labels.dtype} of shape {labels.shape}, expected ({feats.shape[0]},) integers"
                )
            self.labels = labels.astype(np.int64)
        self._feats = np.asarray(feats, dtype=np.float32)
        self.identity = features_identity(args.feats, feats.shape[0], self.labels)

    @property
    def from_dataset(self) -> bool:
        return self.identity["source"] != FEATURES

    def features(self) -> np.ndarray:
        if self._feats is None:
            from ..eval.features import cached_features

            cache = Path(self._ckpt).resolve().parent / "features"
            feats, _ = cached_features(
                self.encoder, self.model_info, self.data_cfg, self.split, cache, self._batch
            )
            self._feats = np.asarray(feats, dtype=np.float32)
        return self._feats


def resolve_data(args: argparse.Namespace, info: Mapping[str, Any], index_meta: Mapping[str, Any] | None):
    """``(DataConfig, split)`` a checkpoint embeds: ``--data``, else the index's data, else its own.

    Preprocessing (image size, normalisation) always comes from the checkpoint's recipe: it is a
    property of the model, not of the items.
    """
    from ..config import DataConfig, from_dict
    from ..eval.features import parse_data_spec

    recipe = info.get("recipe") or {}
    try:
        base = from_dict(DataConfig, recipe["data"]) if recipe.get("data") else None
    except UserError:
        base = None  # a recipe from another selfsup version: only --data / the index can say
    index_data = (index_meta or {}).get("data")
    if args.data:
        return parse_data_spec(args.data, base), args.split or "test"
    if index_data and index_data.get("source") != FEATURES:
        cfg = parse_data_spec(None, base)
        cfg.source, cfg.path = index_data["source"], index_data["path"]
        cfg.classes = index_data["classes"]
        cfg.train_fraction = float(index_data.get("train_fraction", 1.0))
        return cfg, args.split or index_data["split"]
    if base is None:
        raise UserError(f"'{args.ckpt}' carries no recipe; pass --data (e.g. --data digits)")
    return base, args.split or "test"


def print_info(info: dict[str, Any]) -> None:
    """Human-readable summary of :func:`selfsup.index.info`."""
    from .identity import describe

    print(f"index      {info['path']}")
    print(
        f"items      {info['count']}  dim {info['dim']}  ({info['faiss_index_type']}, {info['normalization']})"
    )
    print(f"data       {describe(info.get('data'))}")
    print(f"file       {info['index_file']}  sha256 {info['index_sha256'][:16]}…  gen {info['generation']}")
    for m in info["models"]:
        print(
            f"model v{m['version']}   {m['model_id']} ({m['fingerprint'][:12]})  "
            f"{m['items']} items ({100 * m['fraction']:.1f}%)"
        )
    print(f"upgraded   {100 * info['fraction_upgraded']:.1f}% to {info['current_model']}")
