"""``selfsup bench retrieval``: faiss vs torch exact search; IVF-Flat / HNSW speed and recall."""

from __future__ import annotations

import argparse

GROUP = "bench"
NAME = "retrieval"
HELP = "retrieval speed: faiss exact vs torch matmul+topk (100k), IVF-Flat and HNSW speed/recall (1M)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="write the results as flat JSON (metrics.json form)")
    parser.add_argument("--n-gallery", type=int, default=100_000, help="exact-search gallery size (100000)")
    parser.add_argument("--dim", type=int, default=128, help="feature dimension (128)")
    parser.add_argument("--n-queries", type=int, default=2_000, help="queries for exact search (2000)")
    parser.add_argument("--n-large", type=int, default=1_000_000, help="IVF/HNSW gallery size (1000000)")
    parser.add_argument("--n-large-queries", type=int, default=1_000, help="queries at --n-large (1000)")
    parser.add_argument("-k", type=int, default=10, help="neighbours per query; recall@k (10)")
    parser.add_argument("--n-clusters", type=int, default=1_000, help="Gaussian mixture components (1000)")
    parser.add_argument("--noise", type=float, default=0.5, help="within-cluster std in latent space (0.5)")
    parser.add_argument("--intrinsic-dim", type=int, default=16, help="latent dimension of the data (16)")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: ~sqrt(n-large))")
    parser.add_argument("--nprobe", type=int, default=16, help="IVF lists probed per query (16)")
    parser.add_argument("--hnsw-m", type=int, default=12, help="HNSW links per node (12)")
    parser.add_argument("--ef-construction", type=int, default=32, help="HNSW build beam (32)")
    parser.add_argument("--ef-search", type=int, default=64, help="HNSW search beam (64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    for flag in (
        "n_gallery",
        "dim",
        "n_queries",
        "n_large",
        "n_large_queries",
        "k",
        "n_clusters",
        "nprobe",
        "intrinsic_dim",
    ):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.k > min(args.n_gallery, args.n_large):
        raise UserError(f"-k {args.k} exceeds the gallery size; use a smaller -k or larger galleries")
    if args.noise <= 0:
        raise UserError(f"--noise must be positive, got {args.noise}")

    from ..eval.bench_retrieval import bench_retrieval
    from ..utils.io import write_metrics

    res = bench_retrieval(
        n_gallery=args.n_gallery,
        dim=args.dim,
        n_queries=args.n_queries,
        n_large=args.n_large,
        n_large_queries=args.n_large_queries,
        k=args.k,
        n_clusters=args.n_clusters,
        noise=args.noise,
        intrinsic_dim=args.intrinsic_dim,
        nlist=args.nlist,
        nprobe=args.nprobe,
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        seed=args.seed,
        progress=not args.no_progress,
    )
    width = max(len(k) for k in res)
    for key, v in res.items():
        print(f"{key:<{width}}  {v:.4g}")
    if args.json:
        write_metrics(args.json, res, merge=False)
    return 0
