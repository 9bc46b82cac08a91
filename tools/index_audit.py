"""Audit a gallery index: do the slots a model upgraded hold that model's embedding of their item?

Indexes upgraded before the index recorded its data could have been written with another dataset's
embeddings, by position (issue 11). This embeds candidate data with the upgrading checkpoint and,
for every slot that checkpoint wrote, finds which candidate item the stored vector is (cosine
> 0.9999): the slot's own item (right), another item (wrong), or none. With labels on both sides
it also reports how many upgraded slots hold an item of the slot's label.

    python tools/index_audit.py --index runs/idx --ckpt runs/new/encoder.pt --data digits --split test

``--data`` defaults to the index's recorded data (as ``selfsup index upgrade`` does); pass the
data an old upgrade may have used instead to see whether it did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True)
    p.add_argument("--ckpt", required=True, help="the checkpoint whose upgrade to audit")
    p.add_argument("--data", default=None, help="candidate items (default: the index's own data)")
    p.add_argument("--split", default=None)
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args(argv)

    import faiss

    from selfsup.index.cli_support import CliSource
    from selfsup.index.manifest import read_manifest

    meta = read_manifest(args.index)
    args.feats = args.labels = args.fingerprint = args.model_id = None
    args.compatible_with = []
    src = CliSource(args, meta)
    fp = src.model_info["fingerprint"]
    versions = [m["version"] for m in meta["models"] if m["fingerprint"] == fp]
    if not versions:
        print(f"{args.ckpt} ({fp}) wrote no slot of {args.index}")
        return 1
    slots = np.flatnonzero(np.asarray(meta["item_versions"]) == versions[0])
    idx = faiss.read_index(str(Path(args.index) / meta["index_file"]))
    stored = faiss.rev_swig_ptr(idx.get_xb(), idx.ntotal * idx.d).reshape(idx.ntotal, idx.d)[slots]
    cand = src.features()[:, : idx.d]
    cand = cand / np.maximum(np.linalg.norm(cand, axis=1, keepdims=True), 1e-12)
    sims = stored @ cand.T  # [slots, candidates]
    best, best_sim = sims.argmax(1), sims.max(1)
    exact = best_sim > 0.9999
    right = exact & (best == slots)
    out = {
        "upgraded_slots": int(len(slots)),
        "candidates": int(len(cand)),
        "own_item": float(right.mean()),
        "another_item": float((exact & ~right).mean()),
        "no_candidate": float((~exact).mean()),
    }
    labels = meta.get("labels")
    if labels is not None and src.labels is not None:
        out["label_of_slot"] = float((src.labels[best[exact]] == np.asarray(labels)[slots][exact]).mean())
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
