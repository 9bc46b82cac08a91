"""``selfsup index build``: embed a gallery and write a backfill-free index."""

from __future__ import annotations

import argparse

GROUP = "index"
NAME = "build"
HELP = "embed a gallery with a checkpoint (or load features) and write a faiss index + metadata"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..index.cli_support import add_source_args

    parser.add_argument("--index", required=True, metavar="DIR", help="index folder to create")
    add_source_args(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index (atomically)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..index import build
    from ..index.cli_support import features_from_cli, model_info_from_args, print_info

    model_info = model_info_from_args(args)
    feats, labels = features_from_cli(args)
    info = build(
        args.index,
        feats,
        list(range(feats.shape[0])),
        model_info,
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        overwrite=args.overwrite,
    )
    print_info(info)
    return 0
