"""``selfsup index upgrade``: re-embed a budgeted fraction of the gallery with a newer compatible model."""

from __future__ import annotations

import argparse

GROUP = "index"
NAME = "upgrade"
HELP = "progressive backfill: re-embed a fraction of the gallery with a newer compatible model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..index.cli_support import add_source_args

    parser.add_argument("--index", required=True, metavar="DIR", help="index folder")
    add_source_args(parser)
    parser.add_argument(
        "--budget",
        type=float,
        default=0.1,
        help="fraction of the gallery to re-embed in this call, in (0, 1] (default: 0.1)",
    )
    parser.add_argument(
        "--commit-every",
        type=int,
        default=None,
        metavar="N",
        help="commit progress every N items (default: once at the end of the call)",
    )
    parser.add_argument(
        "--no-slice",
        action="store_true",
        help="refuse features wider than the index instead of keeping their first (compatible) dims",
    )


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..index import info, upgrade
    from ..index.cli_support import CliSource
    from ..index.manifest import read_manifest

    if not 0.0 < args.budget <= 1.0:
        raise UserError(f"--budget must be a fraction in (0, 1], got {args.budget}")
    if args.commit_every is not None and args.commit_every < 1:
        raise UserError(f"--commit-every must be at least 1 item, got {args.commit_every}")
    # The index's metadata says which items to embed (its own data by default).
    src = CliSource(args, read_manifest(args.index))

    def embed(item_ids: list):
        # The items were checked to be the index's own (upgrade(data=...)), so ids are rows.
        return src.features()[item_ids]

    res = upgrade(
        args.index,
        embed,
        src.model_info,
        args.budget,
        batch_size=args.batch_size,
        commit_every=args.commit_every,
        slice_dims=not args.no_slice,
        progress=True,
        data=src.identity,
        labels=src.labels,
    )
    desc = info(args.index, verify=False)
    name = src.model_info.get("model_id", src.model_info["fingerprint"])
    print(
        f"upgraded {res['upgraded']} items; {100 * res['fraction_upgraded']:.1f}% of {desc['count']} now "
        f"embedded by {name}; {res['remaining']} remaining" + (" (done)" if res["done"] else "")
    )
    return 0
