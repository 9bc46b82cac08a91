"""``selfsup data info``: validate a ``.beton`` against its sidecar and describe it."""

from __future__ import annotations

import argparse

GROUP = "data"
NAME = "info"
HELP = "describe a .beton (fields, count, image sizes) after checking it against its sidecar"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("beton", metavar="FILE.beton", help="file written by `selfsup data write`")
    p.add_argument("--json", action="store_true", help="print the whole description as JSON")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check every row: its checksum and its image (reads and decodes the whole file)",
    )


def format_info(info: dict) -> str:
    """Human-readable summary of :func:`selfsup.data.beton.beton_info`."""
    lines = [
        f"file:     {info['path']} ({info['file_size'] / 2**20:.1f} MiB, schema {info['schema']})",
        f"source:   {info['source']} ({info.get('split') or 'split unknown'}), {info['num_classes']} classes",
        f"count:    {info['count']} images"
        + (f", {len(info['skipped'])} skipped" if info.get("skipped") else ""),
        "fields:",
    ]
    for name, desc in info["fields"].items():
        extra = ", ".join(f"{k}={v}" for k, v in desc.items() if k != "type" and v is not None)
        lines.append(f"  {name:<10} {desc['type']}" + (f" ({extra})" if extra else ""))
    sizes = info.get("sizes") or {}
    if sizes:
        lines.append(
            f"sizes:    min {sizes['min_hw'][0]}x{sizes['min_hw'][1]}, max {sizes['max_hw'][0]}x{sizes['max_hw'][1]}, "
            f"mean {sizes['mean_hw'][0]:.0f}x{sizes['mean_hw'][1]:.0f} (HxW); {sizes['jpeg']} JPEG, {sizes['raw']} raw"
        )
    for s in info.get("skipped") or []:
        lines.append(f"skipped:  {s.get('path') or 'sample ' + str(s['index'])}: {s['error']}")
    lines.append(
        f"checksums: {'per row' if info.get('row_checksums') else 'none (written by an older selfsup)'}"
    )
    v = info.get("verify")
    if v:
        state = (
            "all rows intact"
            if not v["bad_count"]
            else f"{v['bad_count']} corrupt, first {v['first_problem']}"
        )
        how = "checksums and JPEG decoding" if v["checksums"] else "JPEG decoding only"
        lines.append(f"verified: {v['rows']} rows ({how}): {state}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    from ..data.beton import beton_info, verify_beton
    from ..errors import DataError

    info = beton_info(args.beton)
    info["row_checksums"] = bool(info.pop("row_crc32", None))  # thousands of numbers: not shown
    if args.verify:
        info["verify"] = verify_beton(args.beton, progress=not args.json)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    v = info.get("verify")
    if v and v["bad_count"]:
        raise DataError(
            f"'{args.beton}': {v['bad_count']} of {v['rows']} rows are corrupt (first: {v['first_problem']}); "
            f"rewrite it with `selfsup data write --out {args.beton} ...`"
        )
    return 0
