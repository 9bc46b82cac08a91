"""The body of tools/gpu_check.sh: GPU step, loader and search numbers into one flat JSON.

Each part runs under its own time budget and records ``<part>/error`` instead of stopping the
check. Keys: ``gpu/*`` (device, versions), ``step/<impl>/<method>[<variant>]/img_per_s`` with
impl = selfsup | lightly and variant = "" (bf16 + channels_last), ``-fp32``, ``-nchw``,
``-compiled``, ``+hallucinator``, ``+ft`` (with ``.../overhead``), ``loader/*`` (``selfsup bench
loader`` at 224 px), ``search/*`` (1M x 128 exact search, faiss-gpu vs torch, IVF recall@10).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ssl"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

BATCH, SIZE, STEPS, WARMUP = 256, 224, 12, 4


def _sync() -> None:
    torch.cuda.synchronize()


def _timed(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def lightly_models(method: str, dev: torch.device):
    """lightly's MoCo v2 / SimCLR (its heads and NT-Xent loss) on the same timm ResNet-50."""
    import copy

    import timm
    from lightly.loss import NTXentLoss
    from lightly.models.modules.heads import MoCoProjectionHead, SimCLRProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    torch.manual_seed(0)
    backbone = timm.create_model("resnet50", num_classes=0).to(dev)
    if method == "simclr":
        head = SimCLRProjectionHead(2048, 2048, 128).to(dev)
        loss_fn = NTXentLoss(temperature=0.5)
        params = list(backbone.parameters()) + list(head.parameters())

        def step(views):
            n = views[0].shape[0]
            z = head(backbone(torch.cat(views)))
            return loss_fn(z[:n], z[n:])

    else:
        head = MoCoProjectionHead(2048, 2048, 128).to(dev)
        kb, kh = copy.deepcopy(backbone), copy.deepcopy(head)
        deactivate_requires_grad(kb)
        deactivate_requires_grad(kh)
        loss_fn = NTXentLoss(temperature=0.2, memory_bank_size=(65536, 128))
        params = list(backbone.parameters()) + list(head.parameters())

        def step(views):
            update_momentum(backbone, kb, 0.999)
            update_momentum(head, kh, 0.999)
            q = head(backbone(views[0]))
            with torch.no_grad():
                k = kh(kb(views[1]))
            return loss_fn(q, k)

    opt = torch.optim.SGD(params, lr=0.03, momentum=0.9)
    return step, opt, [backbone, head]


def part_steps(out: dict, dev: torch.device, budget_s: float) -> None:
    """selfsup vs lightly, interleaved, plus selfsup's precision / layout / compile variants."""
    from selfsup.bench_step import bench_step

    t_start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    views = [
        torch.randn(BATCH, 3, SIZE, SIZE, generator=gen).to(dev, memory_format=torch.channels_last)
        for _ in range(2)
    ]
    for method in ("mocov2", "simclr"):
        step, opt, mods = lightly_models("simclr" if method == "simclr" else "moco", dev)
        for m in mods:
            m.to(memory_format=torch.channels_last)

        def run(step=step, opt=opt):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step(views)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        t = _timed(run, STEPS, WARMUP)
        out[f"step/lightly/{method}/img_per_s"] = BATCH / t
        run = step = opt = mods = None
        torch.cuda.empty_cache()
    settings = {
        "": dict(bf16=True, channels_last=True),
        "-nchw": dict(bf16=True, channels_last=False),
        "-fp32": dict(bf16=False, channels_last=True),
        "-compiled": dict(bf16=True, channels_last=True, compile=True),
    }
    for suffix, kw in settings.items():
        if time.perf_counter() - t_start > budget_s:
            out[f"step/skipped{suffix}"] = 1.0
            continue
        variants = ("", "+hallucinator", "+ft") if suffix == "" else ("",)
        res = bench_step(
            backbone="resnet50", batch=BATCH, size=SIZE, steps=STEPS, warmup=WARMUP if "compile" not in kw else 3,
            cifar_stem=False, device="cuda", variants=variants, **kw,
        )  # fmt: skip
        for key, v in res.items():
            if key.startswith("step/") and key.endswith(("/img_per_s", "/overhead")):
                parts = key.split("/")
                out[f"step/selfsup/{parts[1]}{suffix}/{parts[2]}"] = v
        torch.cuda.empty_cache()
    for method in ("mocov2", "simclr"):
        a, b = out.get(f"step/selfsup/{method}/img_per_s"), out.get(f"step/lightly/{method}/img_per_s")
        if a and b:
            out[f"step/{method}/selfsup_vs_lightly"] = a / b


def part_loader(out: dict) -> None:
    from selfsup.data.bench import bench_loader

    res = bench_loader(size=224, images=2048, workers=os.cpu_count() or 2, batch_size=128,
                       pipelines=("decode-once",), timeout=240)  # fmt: skip
    out.update(res)


def part_search(out: dict, dev: torch.device) -> None:
    import faiss

    from selfsup.eval.bench_retrieval import mixture, recall_at_k
    from selfsup.eval.retrieval import build_faiss_index
    from selfsup.eval.search import faiss_gpu_available, to_gpu, torch_search

    rng = np.random.default_rng(0)
    n, d, nq, k = 1_000_000, 128, 10_000, 10
    g, basis = mixture(n, d, 1000, 0.5, rng)
    q, _ = mixture(nq, d, 1000, 0.5, rng, basis)
    out["search/n"], out["search/dim"], out["search/queries"] = float(n), float(d), float(nq)
    t = _timed(lambda: torch_search(g, q, k, device="cuda", block=2048), 3, 1)
    out["search/torch_gpu_qps"] = nq / t
    truth = torch_search(g, q, k, device="cuda", block=2048)[1]
    out["search/faiss_gpu"] = float(faiss_gpu_available())
    if faiss_gpu_available():
        flat = faiss.IndexFlatIP(d)
        flat.add(g)
        gflat = to_gpu(flat)
        t = _timed(lambda: gflat.search(q, k), 3, 1)
        out["search/faiss_gpu_qps"] = nq / t
        out["search/faiss_gpu_vs_torch"] = out["search/faiss_gpu_qps"] / out["search/torch_gpu_qps"]
        out["search/faiss_torch_agreement"] = recall_at_k(gflat.search(q, k)[1], truth)
        del gflat, flat
    t0 = time.perf_counter()
    ivf = to_gpu(build_faiss_index(g, "ivf", nlist=4096, nprobe=32))
    out["search/ivf_build_s"] = time.perf_counter() - t0
    t = _timed(lambda: ivf.search(q, k), 3, 1)
    out["search/ivf_qps"] = nq / t
    out["search/ivf_recall@10"] = recall_at_k(ivf.search(q, k)[1], truth)
    out["search/ivf_nlist"], out["search/ivf_nprobe"] = 4096.0, 32.0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--step-budget-s", type=float, default=240.0)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("error: torch sees no CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    out: dict = {
        "gpu/name": torch.cuda.get_device_name(0),
        "gpu/torch": torch.__version__,
        "gpu/cuda": torch.version.cuda,
        "gpu/cpu_cores": os.cpu_count(),
    }
    t_all = time.perf_counter()
    for name, fn in (
        ("step", lambda: part_steps(out, dev, args.step_budget_s)),
        ("search", lambda: part_search(out, dev)),
        ("loader", lambda: part_loader(out)),
    ):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - record and go on with the other parts
            out[f"{name}/error"] = f"{type(e).__name__}: {e}"[:500]
            traceback.print_exc()
        out[f"{name}/wall_s"] = time.perf_counter() - t0
        Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True))  # partial results too
        torch.cuda.empty_cache()
    out["gpu/wall_s"] = time.perf_counter() - t_all
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True))
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
