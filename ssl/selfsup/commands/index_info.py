"""``selfsup index info``: describe a gallery index and verify its checksum."""

from __future__ import annotations

import argparse

GROUP = "index"
NAME = "info"
HELP = "describe a gallery index (models, fraction upgraded) and verify its checksum"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, metavar="DIR", help="index folder")
    parser.add_argument("--json", action="store_true", help="print the description as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from ..index import info
    from ..index.cli_support import print_info

    desc = info(args.index, verify=True)
    if args.json:
        print(json.dumps(desc, indent=2))
    else:
        print_info(desc)
    return 0
