"""Training-step overhead of the positive generators (``selfsup bench step``).

For each method (MoCo v2, SimCLR) three variants are built from the same seed, so they share the
backbone and heads: the baseline, ``+hallucinator`` and ``+ft``. Each times forward + backward +
SGD step on the same random batch. Timed steps are interleaved (baseline, +hallucinator, +ft,
baseline, ...) and summarised by the median, so load from other processes on a shared machine hits
all variants alike. Reported as images per second and as overhead fractions against the baseline
of the same run; nothing here asserts a speed.
"""

from __future__ import annotations

import statistics
import time

import torch

METHOD_RECIPES: dict[str, dict] = {
    "mocov2": {"name": "moco", "version": "v2"},
    "simclr": {"name": "simclr"},
}
VARIANTS: dict[str, list] = {"": [], "+hallucinator": ["hallucinator"], "+ft": ["ft"]}


def _build(method: dict, positives: list, args: dict, seed: int, device: torch.device):
    from .methods import build_method
    from .positives.attach import attach_positives
    from .recipe import load_recipe

    recipe = load_recipe(
        {
            "seed": seed,
            "data": {"source": "digits", "batch_size": args["batch"], "image_size": args["size"]},
            "model": {"backbone": args["backbone"], "cifar_stem": args["cifar_stem"], "width": args["width"]},
            "method": method,
            "positives": positives,
        }
    )
    torch.manual_seed(seed)  # same initial weights for every variant of a method
    model = build_method(recipe)
    attach_positives(model, recipe)
    model.to(device).train()
    opt = torch.optim.SGD(model.param_groups(1e-4), lr=1e-3, momentum=0.9)
    return model, opt


def _step(model, opt, batch: dict, device: torch.device, bf16: bool = False) -> float:
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(batch)
    out["loss"].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _head_ms(model, batch: int, steps: int, device: torch.device) -> float:
    """Median ms of the contrastive head alone (generators, scores, loss; forward + backward).

    Much less noisy than whole steps on a shared machine: the generators' extra cost is the
    difference between a variant's head time and the baseline's.
    """
    from .positives.hooks import moco_loss, simclr_loss

    gen = torch.Generator().manual_seed(0)
    d = model.cfg.dim if model.name == "moco" else model.cfg.proj_dim
    z1 = torch.randn(batch, d, generator=gen).to(device).requires_grad_()
    z2 = torch.randn(batch, d, generator=gen).to(device)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        if model.name == "moco":
            k = torch.nn.functional.normalize(z2, dim=1)
            loss = moco_loss(model, z1, k, model.queue.clone(), model.temperature)[0]
        else:
            loss = simclr_loss(model, z1, z2.requires_grad_(), model.cfg.temperature)[0]
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return 1000 * statistics.median(times[1:])


def bench_step(
    backbone: str = "resnet18",
    batch: int = 256,
    size: int = 32,
    steps: int = 10,
    warmup: int = 3,
    cifar_stem: bool = True,
    width: int | None = None,
    queue_size: int = 65536,
    methods: tuple[str, ...] = ("mocov2", "simclr"),
    seed: int = 0,
    device: str | None = None,
    bf16: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    variants: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """Median step throughput of each method with and without each generator.

    ``bf16``: bf16 autocast (what training uses on CUDA); ``channels_last``: NHWC weights and
    inputs; ``compile``: the backbone compiled with ``torch.compile`` (warm-up steps include the
    compilation); ``variants``: a subset of ``("", "+hallucinator", "+ft")``.

    Returns a flat dict: ``step/<method><variant>/img_per_s``, ``.../ms`` and, for the generators,
    ``step/<method>+<generator>/overhead`` = ``t_variant / t_baseline - 1`` (median step times) and
    ``.../head_overhead`` = the extra time of the contrastive head alone (generators, scores, loss,
    forward + backward; ``head/<method><variant>/ms``) over the baseline step time: the same cost
    measured without the backbone's noise.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args = {"backbone": backbone, "batch": batch, "size": size, "cifar_stem": cifar_stem, "width": width}
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    views = [torch.randn(batch, 3, size, size, generator=gen).to(dev, memory_format=fmt) for _ in range(2)]
    data = {"views": views, "labels": torch.zeros(batch, dtype=torch.long, device=dev)}
    out: dict[str, float] = {}
    for mname in methods:
        method = dict(METHOD_RECIPES[mname])
        if method["name"] == "moco":
            method["queue_size"] = queue_size
        chosen = {v: pos for v, pos in VARIANTS.items() if variants is None or v in variants}
        runs = {v: _build(method, pos, args, seed, dev) for v, pos in chosen.items()}
        for model, _ in runs.values():
            if channels_last:
                model.to(memory_format=torch.channels_last)
            if compile:
                model.backbone.compile()
        for model, opt in runs.values():
            for _ in range(warmup):
                _step(model, opt, data, dev, bf16)
        times: dict[str, list[float]] = {v: [] for v in runs}
        for _ in range(steps):
            for v, (model, opt) in runs.items():
                times[v].append(_step(model, opt, data, dev, bf16))
        med = {v: statistics.median(t) for v, t in times.items()}
        head = {v: _head_ms(model, batch, max(steps, 5), dev) for v, (model, _) in runs.items()}
        for v, t in med.items():
            out[f"step/{mname}{v}/img_per_s"] = batch / t
            out[f"step/{mname}{v}/ms"] = 1000 * t
            out[f"head/{mname}{v}/ms"] = head[v]
            if v and "" in med:
                out[f"step/{mname}{v}/overhead"] = t / med[""] - 1.0
                # The generator's own cost, as a fraction of the baseline step.
                out[f"step/{mname}{v}/head_overhead"] = (head[v] - head[""]) / (1000 * med[""])
        del runs
    out.update({"bench/batch": float(batch), "bench/size": float(size), "bench/steps": float(steps)})
    return out
