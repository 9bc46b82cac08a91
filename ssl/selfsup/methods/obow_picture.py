"""What OBoW's vocabulary captured: for a few words, the image patches assigned to them most.

Probe images (the evaluation split, else the training split) are shown to the teacher as plain
views; every location of each level's border-cropped map is soft-assigned to the current
vocabulary as in training. Words are picked among the most used ones (largest summed BoW mass),
skipping near-duplicates; for each, the probe images whose best location is most strongly
assigned to it are shown, cropped around that location (three strides wide).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.augment import plain_transform
from ..data.catalog import build_source
from ..errors import DataError
from ..losses.bow import bow_pool, soft_assign, squared_distances
from ..report.patches import plot_patch_grid
from .obow_parts import stage_maps


def _probe(recipe, n: int) -> torch.Tensor:
    data = recipe.data
    try:
        src = build_source(data, "test")
    except DataError:
        src = build_source(data, "train")
    idx = np.unique(np.linspace(0, len(src) - 1, min(n, len(src))).astype(int))
    t = plain_transform(
        data.augment, data.augment.plain_size or data.image_size, data.mean, data.std, flip=False
    )
    imgs = [torch.from_numpy(np.ascontiguousarray(src[int(i)][0])).permute(2, 0, 1) for i in idx]
    return torch.stack([t(im) for im in imgs])


def _pick_words(mass: torch.Tensor, words: torch.Tensor, count: int) -> list[int]:
    """The most used words, skipping any within cosine 0.95 of one already picked."""
    unit = F.normalize(words, dim=1)
    picked: list[int] = []
    for k in mass.argsort(descending=True).tolist():
        if mass[k] <= 0 or len(picked) == count:
            break
        if picked and (unit[picked] @ unit[k]).max() > 0.95:
            continue
        picked.append(k)
    return picked


@torch.no_grad()
def draw_vocabulary(
    method, path: Path, epoch: int, images: int = 256, words: int = 6, patches: int = 8
) -> Path | None:
    recipe, cfg = method.recipe, method.cfg
    device = next(method.teacher.parameters()).device
    x = _probe(recipe, images)
    size = x.shape[-1]
    mean = torch.tensor(recipe.data.mean).view(3, 1, 1)
    std = torch.tensor(recipe.data.std).view(3, 1, 1)
    shown = (x * std + mean).clamp(0, 1)
    teacher = method.teacher
    teacher.eval()  # running statistics: no collective, no state change (only rank 0 draws)
    try:
        per_chunk = [stage_maps(teacher, c.to(device), method.stages)[0] for c in x.split(64)]
    finally:
        teacher.train()
    rows, labels = [], []
    b = cfg.border
    for lvl, vocab in enumerate(method.vocab):
        best, where, mass = [], [], 0.0
        for maps in per_chunk:
            fmap = maps[lvl].float()
            full = fmap.shape[-1]
            if b:
                fmap = fmap[:, :, b:-b, b:-b]
            codes = soft_assign(squared_distances(fmap, vocab.words), cfg.inv_delta, vocab.mu)
            mass = mass + bow_pool(codes, cfg.bow_pool).sum(0)
            top, arg = codes.flatten(2).max(2)  # [N, K]: best location of each word in each image
            best.append(top.cpu())
            where.append(arg.cpu())
        best_all, where_all = torch.cat(best), torch.cat(where)
        w = fmap.shape[3]
        stride = size / full
        for k in _pick_words(mass.cpu(), vocab.words.cpu(), words):
            order = best_all[:, k].argsort(descending=True)[:patches]
            row = []
            for i in order.tolist():
                loc = int(where_all[i, k])
                cy, cx = (loc // w + b + 0.5) * stride, (loc % w + b + 0.5) * stride
                half = max(2.0, 1.5 * stride)
                y0, x0 = int(max(0, cy - half)), int(max(0, cx - half))
                y1, x1 = int(min(size, cy + half)), int(min(size, cx + half))
                crop = shown[i, :, y0:y1, x0:x1][None]
                crop = F.interpolate(crop, size=(32, 32), mode="nearest")[0]
                row.append(crop.permute(1, 2, 0).numpy())
            rows.append(row)
            labels.append(f"{method.stages[lvl]} word {k}\nused {float(mass[k]) / len(x):.3f}")
    title = (
        f"OBoW vocabulary after epoch {epoch}: probe patches most assigned to the most used words "
        f"(teacher, {len(x)} images)"
    )
    return plot_patch_grid(rows, labels, path, title)
