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
    from ..errors import DataError
    from ..index import info, upgrade
    from ..index.cli_support import features_from_cli, model_info_from_args

    model_info = model_info_from_args(args)
    cache: dict = {}

    def embed(item_ids: list):
        # The dataset helpers embed a whole split; do it once, lazily (nothing to do = no embedding).
        if "feats" not in cache:
            cache["feats"], _ = features_from_cli(args)
        feats = cache["feats"]
        bad = [i for i in item_ids if not isinstance(i, int) or not 0 <= i < feats.shape[0]]
        if bad:
            raise DataError(
                f"index item {bad[0]!r} is not a row of the {feats.shape[0]} embedded items; "
                "upgrade with the same --data/--split the index was built from"
            )
        return feats[item_ids]

    res = upgrade(
        args.index,
        embed,
        model_info,
        args.budget,
        batch_size=args.batch_size,
        commit_every=args.commit_every,
        slice_dims=not args.no_slice,
        progress=True,
    )
    desc = info(args.index, verify=False)
    print(
        f"upgraded {res['upgraded']} items; {100 * res['fraction_upgraded']:.1f}% of {desc['count']} now "
        f"embedded by {model_info.get('model_id', model_info['fingerprint'])}; {res['remaining']} remaining"
        + (" (done)" if res["done"] else "")
    )
    return 0
