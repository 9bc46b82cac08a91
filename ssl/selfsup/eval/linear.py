"""Linear probe on frozen features.

Features are extracted once and cached (:mod:`selfsup.eval.features`); a linear classifier is
trained on the cache with SGD + momentum and a cosine schedule. Features are standardised with the
training-set mean and std (equivalent to a BatchNorm without affine before the linear layer, as in
MAE's and solo-learn's probes), which makes one learning rate work across backbones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, 1).indices
    hit = pred.eq(labels[:, None])
    return {k: hit[:, : min(k, maxk)].any(1).float().mean().item() for k in ks}


def linear_probe(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier on ``[N, D]`` features; returns ``linear/top1`` and ``linear/top5``."""
    g = torch.Generator().manual_seed(seed)
    xtr, xte = torch.from_numpy(train_feats).float(), torch.from_numpy(test_feats).float()
    ytr, yte = torch.from_numpy(train_labels).long(), torch.from_numpy(test_labels).long()
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    n_classes = int(max(ytr.max(), yte.max())) + 1
    clf = torch.nn.Linear(xtr.shape[1], n_classes)
    torch.nn.init.normal_(clf.weight, std=0.01, generator=g)
    torch.nn.init.zeros_(clf.bias)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = epochs * max(1, -(-len(xtr) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(clf(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        acc = topk_accuracy(clf(xte), yte, (1, 5))
        train_acc = topk_accuracy(clf(xtr), ytr, (1,))[1]
    return {"linear/top1": acc[1], "linear/top5": acc[5], "linear/train_top1": train_acc}
