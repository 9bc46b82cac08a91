"""``selfsup index build``: embed a gallery and write a backfill-free index."""

from __future__ import annotations

import argparse

GROUP = "index"
NAME = "build"
HELP = "embed a gallery with a checkpoint (or load features) and write a faiss index + metadata"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..index.cli_support import add_source_args

    parser.add_argument("--index", required=True, metavar="DIR", help="index folder to create")
    add_source_args(parser, default_data="the checkpoint's training data")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index (atomically)")


def run(args: argparse.Namespace) -> int:
    from ..index import build
    from ..index.cli_support import CliSource, print_info
    from ..utils.io import check_folder

    check_folder(args.index, "--index")
    src = CliSource(args)
    feats = src.features()
    info = build(
        args.index,
        feats,
        list(range(feats.shape[0])),
        src.model_info,
        labels=src.labels,
        overwrite=args.overwrite,
        data=src.identity,
    )
    print_info(info)
    return 0
