"""Shared argument handling for the ``selfsup index`` commands: where features and model info come from.

Features come either from a checkpoint embedding a dataset (``--ckpt CKPT --data SPEC --split``;
model info from the checkpoint) or from a saved ``[N, D]`` ``.npy`` file (``--feats FILE`` with
``--fingerprint``, ``--model-id``, ``--compatible-with``; labels optional via ``--labels``), which
lets an index be built from features computed elsewhere. Heavy imports happen inside functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UserError


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``--ckpt``/``--feats`` (one required) and their companions."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", metavar="CKPT", help="checkpoint whose encoder embeds --data")
    src.add_argument("--feats", metavar="FILE.npy", help="precomputed [N, D] features instead of --ckpt")
    parser.add_argument(
        "--data",
        metavar="SPEC",
        default=None,
        help="dataset spec, e.g. 'digits' or 'render3d:PATH' (default: the checkpoint's recipe data)",
    )
    parser.add_argument("--split", default="test", help="dataset split to embed (default: test)")
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
    except (OSError, ValueError) as e:
        raise DataError(f"{what} file {p} is not a readable .npy array ({e})") from e


def model_info_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Model info from the checkpoint (``load_encoder``) or from the ``--feats`` flags."""
    if args.ckpt:
        from ..models.export import load_encoder

        _, info = load_encoder(args.ckpt)
        return dict(info)
    if not args.fingerprint:
        raise UserError("--feats needs --fingerprint naming the model that computed the features")
    return {
        "fingerprint": args.fingerprint,
        "model_id": args.model_id or args.fingerprint,
        "compatible_with": list(args.compatible_with or []),
    }


def features_from_cli(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    """``[N, D]`` float32 features and ``[N]`` labels (or None) for the source the flags name."""
    if args.ckpt:
        from ..eval.features import features_from_args

        feats, labels = features_from_args(args.ckpt, args.data, args.split, args.batch_size)
        return np.asarray(feats, dtype=np.float32), np.asarray(labels)
    feats = _load_npy(args.feats, "features")
    labels = None
    if args.labels:
        labels = _load_npy(args.labels, "labels")
        if labels.shape != (feats.shape[0],):
            raise DataError(f"--labels has shape {labels.shape}, expected ({feats.shape[0]},)")
    return feats, labels


def print_info(info: dict[str, Any]) -> None:
    """Human-readable summary of :func:`selfsup.index.info`."""
    print(f"index      {info['path']}")
    print(
        f"items      {info['count']}  dim {info['dim']}  ({info['faiss_index_type']}, {info['normalization']})"
    )
    print(f"file       {info['index_file']}  sha256 {info['index_sha256'][:16]}…  gen {info['generation']}")
    for m in info["models"]:
        print(
            f"model v{m['version']}   {m['model_id']} ({m['fingerprint'][:12]})  "
            f"{m['items']} items ({100 * m['fraction']:.1f}%)"
        )
    print(f"upgraded   {100 * info['fraction_upgraded']:.1f}% to {info['current_model']}")
