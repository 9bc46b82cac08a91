"""SIE's equivariance evaluations (Garrido et al., ICML 2023, Sec. 5): metrics and protocols.

All protocols run on a frozen backbone in eval mode: features of every view of every object are
extracted once (and cached, :mod:`selfsup.eval.equivariance_data`), so BN statistics cannot drift
while heads train (the reference code leaves the backbone in train mode). Heads: Adam, lr 1e-3,
no weight decay, batch 256, no schedule, ``epochs`` epochs (300 in the paper). Features are
standardised with the training views' per-dimension mean and std before the heads (an affine
change of variables the heads could learn themselves; without it a fixed lr does not fit encoders
whose features differ in scale by orders of magnitude, e.g. a random init's).

- **Classification** (``linear/top1``, ``linear/top1_inv``, ``linear/top1_equi``): a linear
  classifier on one view per object, re-drawn every epoch (seeded); accuracy is averaged over
  every view of every val object, which is the expected accuracy of the paper's "one random view"
  without its sampling noise.
- **Rotation / colour R²** (``equi/rotation_r2``, ``equi/color_r2`` on the whole representation;
  ``_equi`` and ``_inv`` suffixes on the parts of a split encoder): an MLP ``2d -> hidden -> hidden
  -> out`` on ``concat(repr(v1), repr(v2))`` of two distinct views of an object (re-drawn every
  epoch), regressing the quaternion of ``R1^-1 R2`` (4) or the hue deltas (2) with MSE; scored by
  the pooled R² (:func:`pooled_r2`) on ``val_pairs`` seeded pairs per val object.
- **MRR / Hit@k** (``equi/mrr``, ``equi/hit@k``; ``equi/train/...`` on train): for every view
  ``e`` of an object, the predictor maps the equivariant embedding of view 0 with
  ``t = quat(R_0^-1 R_e)``; the prediction ranks the object's own views (L2-normalised
  embeddings, dot product); the rank of ``e`` is scored (:func:`object_ranks`). ``e = 0`` is
  included, as in the reference.
- **PRE** (``equi/pre``; ``equi/train/pre``; ``equi/pre_all`` = val queries among train + val):
  the same predictions retrieve their nearest neighbour among all embeddings of the split;
  ``PRE = mean(1 - <q_e, q_nn>^2)`` on the absolute quaternions (:func:`pre`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Metrics: pure functions


def pooled_r2(pred, target) -> float:
    """``1 - sum (y - y_hat)^2 / sum (y - y_bar)^2`` with ``y_bar`` ONE mean over every element.

    This is the reference code's R² (and the paper's): not scikit-learn's ``r2_score``, which
    averages one R² per output column. ``pred``, ``target``: ``[N, K]`` arrays or tensors.
    """
    p = torch.as_tensor(pred, dtype=torch.float64)
    y = torch.as_tensor(target, dtype=torch.float64)
    ss_res = ((y - p) ** 2).sum()
    ss_tot = ((y - y.mean()) ** 2).sum()
    return float(1.0 - ss_res / ss_tot)


def l2n(x: torch.Tensor) -> torch.Tensor:
    """``x / (||x|| + 1e-8)`` along the last dimension (the reference's normalisation)."""
    return x / (x.norm(dim=-1, keepdim=True) + 1e-8)


def object_ranks(pred: torch.Tensor, emb: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """1-based rank of view ``e`` among its object's views for the prediction of view ``e``.

    Args:
        pred: ``[N, V, D]`` prediction of every view of every object; emb: ``[N, V, D]`` the
            views' embeddings. Both are L2-normalised here; similarity is the dot product.

    Returns:
        ``[N, V]`` long: ``1 + #{views of the object scoring strictly higher than view e}`` (ties
        count in the target's favour).
    """
    out = []
    for i in range(0, len(pred), chunk):
        sims = l2n(pred[i : i + chunk].float()) @ l2n(emb[i : i + chunk].float()).transpose(1, 2)  # [c, V, V]
        true = torch.diagonal(sims, dim1=1, dim2=2).unsqueeze(-1)
        out.append(1 + (sims > true).sum(-1))
    return torch.cat(out)


def mrr(ranks: torch.Tensor) -> float:
    """Mean reciprocal rank, ``mean(1 / rank)``."""
    return float((1.0 / ranks.double()).mean())


def hit_at_k(ranks: torch.Tensor, k: int) -> float:
    """Fraction of ranks ``<= k``."""
    return float((ranks <= k).double().mean())


def pre(q_true, q_retrieved) -> float:
    """Prediction retrieval error ``mean(1 - <q_true, q_retrieved>^2)`` over ``[M, 4]`` unit quaternions.

    Squaring makes ``q`` and ``-q`` (the same rotation) equal; 0 = the retrieved view has exactly
    the target's pose, 1 = orthogonal quaternions (a half-turn apart).
    """
    a = torch.as_tensor(q_true, dtype=torch.float64)
    b = torch.as_tensor(q_retrieved, dtype=torch.float64)
    return float((1.0 - (a * b).sum(-1) ** 2).mean())


@torch.no_grad()
def nearest(queries: torch.Tensor, keys: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Index of the highest dot product among ``keys`` ``[N, D]`` for each of ``queries`` ``[M, D]``."""
    block = max(1, min(block, (1 << 27) // max(1, len(keys))))  # at most 2^27 scores at a time
    out = []
    for i in range(0, len(queries), block):
        out.append((queries[i : i + block] @ keys.T).argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# Protocols: heads on cached features


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def standardise(train: np.ndarray, val: np.ndarray, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x - mean) / (std + 1e-6)`` with the per-dimension statistics of every training view."""
    xtr, xva = torch.from_numpy(train).float().to(dev), torch.from_numpy(val).float().to(dev)
    flat = xtr.reshape(-1, xtr.shape[-1])
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    return (xtr - mean) / std, (xva - mean) / std


def classification(
    train: np.ndarray,
    train_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    parts: dict[str, slice],
    epochs: int = 300,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Linear classifiers, one per feature part, on one random view per object per epoch.

    Args:
        train, val: ``[N, V, F]`` features of every view; labels ``[N]``.
        parts: part name -> feature slice, e.g. ``{"": slice(None), "_inv": slice(0, 256)}``.

    Returns ``linear/top1{name}`` and ``linear/top5{name}``: accuracy over every view of every val
    object (the expectation of the one-random-view protocol), and ``linear/train_top1{name}``.
    """
    dev = _device()
    g = np.random.default_rng([seed, 0xC1A55])
    xtr, xva = standardise(train, val, dev)
    ytr = torch.from_numpy(train_labels).long().to(dev)
    yva = torch.from_numpy(val_labels).long().to(dev)
    n, v = xtr.shape[:2]
    n_classes = int(max(ytr.max(), yva.max())) + 1
    torch.manual_seed(seed)
    heads = {k: nn.Linear(xtr[..., s].shape[-1], n_classes).to(dev) for k, s in parts.items()}
    opts = {k: torch.optim.Adam(h.parameters(), lr=lr, weight_decay=0.0) for k, h in heads.items()}
    for _ in range(epochs):
        views = torch.from_numpy(g.integers(v, size=n)).to(dev)
        perm = torch.from_numpy(g.permutation(n)).to(dev)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            x = xtr[idx, views[idx]]
            for k, s in parts.items():
                loss = F.cross_entropy(heads[k](x[:, s]), ytr[idx])
                opts[k].zero_grad(set_to_none=True)
                loss.backward()
                opts[k].step()
    out: dict[str, float] = {}
    with torch.no_grad():
        flat_va, yv = xva.reshape(-1, xva.shape[-1]), yva.repeat_interleave(v)
        flat_tr, yt = xtr.reshape(-1, xtr.shape[-1]), ytr.repeat_interleave(v)
        for k, s in parts.items():
            logits = heads[k](flat_va[:, s])
            top = logits.topk(min(5, n_classes), 1).indices
            out[f"linear/top1{k}"] = float((top[:, 0] == yv).float().mean())
            out[f"linear/top5{k}"] = float((top == yv[:, None]).any(1).float().mean())
            out[f"linear/train_top1{k}"] = float((heads[k](flat_tr[:, s]).argmax(1) == yt).float().mean())
    return out


def draw_pairs(rng: np.random.Generator, n: int, v: int) -> tuple[np.ndarray, np.ndarray]:
    """Two distinct views per object: ``v1``, ``v2`` ``[n]`` with ``v1 != v2``, uniform over ordered pairs."""
    v1 = rng.integers(v, size=n)
    v2 = (v1 + rng.integers(1, v, size=n)) % v
    return v1, v2


def pair_targets(
    latents: np.ndarray, obj: np.ndarray, v1: np.ndarray, v2: np.ndarray
) -> dict[str, np.ndarray]:
    """``rotation`` ``[n, 4]`` (quaternion of R1^-1 R2) and ``color`` ``[n, 2]`` (raw hue deltas)."""
    from ..data.iebench import color_delta, relative_quaternion

    l1, l2 = latents[obj, v1], latents[obj, v2]
    return {
        "rotation": relative_quaternion(l1, l2).astype(np.float32),
        "color": color_delta(l1, l2).astype(np.float32),
    }


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_out)
    )


def pair_regression(
    train: np.ndarray,
    train_latents: np.ndarray,
    val: np.ndarray,
    val_latents: np.ndarray,
    parts: dict[str, slice],
    targets: tuple[str, ...] = ("rotation", "color"),
    epochs: int = 300,
    lr: float = 1e-3,
    batch_size: int = 256,
    hidden: int = 1024,
    val_pairs: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """MLP heads predicting the pair's transformation from ``concat(repr(v1), repr(v2))``.

    One head per (target, part), all trained on the same pairs, re-drawn every epoch. Returns
    ``equi/{target}_r2{part}`` (pooled R² on ``val_pairs`` seeded pairs per val object) and
    ``equi/train/{target}_r2{part}`` (on one fresh pair per train object).
    """
    dev = _device()
    g = np.random.default_rng([seed, 0x9A125])
    xtr, xva = standardise(train, val, dev)
    n, v = xtr.shape[:2]
    torch.manual_seed(seed)
    heads, opts = {}, {}
    for t in targets:
        d_out = 4 if t == "rotation" else 2
        for k, s in parts.items():
            heads[(t, k)] = _mlp(2 * xtr[..., s].shape[-1], hidden, d_out).to(dev)
            opts[(t, k)] = torch.optim.Adam(heads[(t, k)].parameters(), lr=lr, weight_decay=0.0)
    objs = np.arange(n)
    for _ in range(epochs):
        v1, v2 = draw_pairs(g, n, v)
        y = {t: torch.from_numpy(a).to(dev) for t, a in pair_targets(train_latents, objs, v1, v2).items()}
        a1, a2 = torch.from_numpy(v1).to(dev), torch.from_numpy(v2).to(dev)
        perm = torch.from_numpy(g.permutation(n)).to(dev)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            x1, x2 = xtr[idx, a1[idx]], xtr[idx, a2[idx]]
            for (t, k), head in heads.items():
                s = parts[k]
                loss = F.mse_loss(head(torch.cat([x1[:, s], x2[:, s]], 1)), y[t][idx])
                opts[(t, k)].zero_grad(set_to_none=True)
                loss.backward()
                opts[(t, k)].step()

    def score(x: torch.Tensor, lat: np.ndarray, reps: int, prefix: str) -> dict[str, float]:
        m = x.shape[0]
        obj = np.tile(np.arange(m), reps)
        gv = np.random.default_rng([seed, 0x7E57, reps])
        v1, v2 = draw_pairs(gv, len(obj), x.shape[1])
        y = pair_targets(lat, obj, v1, v2)
        o, a1, a2 = (torch.from_numpy(a).to(dev) for a in (obj, v1, v2))
        res = {}
        with torch.no_grad():
            for (t, k), head in heads.items():
                s = parts[k]
                pred = torch.cat(
                    [
                        head(
                            torch.cat(
                                [
                                    x[o[j : j + 8192], a1[j : j + 8192]][:, s],
                                    x[o[j : j + 8192], a2[j : j + 8192]][:, s],
                                ],
                                1,
                            )
                        )
                        for j in range(0, len(obj), 8192)
                    ]
                )
                res[f"equi/{prefix}{t}_r2{k}"] = pooled_r2(pred.cpu(), y[t])
        return res

    out = score(xva, val_latents, max(1, val_pairs), "")
    out.update(score(xtr, train_latents, 1, "train/"))
    return out


# ---------------------------------------------------------------------------------------------
# The SIE predictor: MRR, Hit@k, PRE


def quaternions(latents: np.ndarray) -> np.ndarray:
    """Absolute quaternions (x, y, z, w) of ``Rotation.from_euler("xyz", latent[:3])``, any leading shape."""
    from scipy.spatial.transform import Rotation

    flat = np.asarray(latents, dtype=np.float64).reshape(-1, latents.shape[-1])[:, :3]
    return Rotation.from_euler("xyz", flat).as_quat(canonical=False).reshape(*latents.shape[:-1], 4)


@torch.no_grad()
def predictions(
    emb: torch.Tensor, latents: np.ndarray, predictor: nn.Module, transform: str = "rotation", source: int = 0
) -> torch.Tensor:
    """``[N, V, D]`` predicted embedding of every view from view ``source`` of its object.

    ``emb`` ``[N, V, D]`` raw (unnormalised) equivariant embeddings; the transformation for view
    ``e`` is ``quat(R_source^-1 R_e)`` (+ hue deltas for ``rotation_color``).
    """
    from ..data.iebench import color_delta, relative_quaternion

    n, v = emb.shape[:2]
    l1 = np.repeat(latents[:, source : source + 1], v, axis=1).reshape(-1, latents.shape[-1])
    l2 = latents.reshape(-1, latents.shape[-1])
    t = relative_quaternion(l1, l2)
    if transform == "rotation_color":
        t = np.concatenate([t, color_delta(l1, l2)], 1)
    t = torch.from_numpy(t.astype(np.float32)).to(emb.device)
    src = emb[:, source].repeat_interleave(v, 0)
    out = [predictor(src[i : i + 8192], t[i : i + 8192]) for i in range(0, len(src), 8192)]
    return torch.cat(out).view(n, v, -1)


@torch.no_grad()
def predictor_metrics(
    emb: dict[str, torch.Tensor],
    latents: dict[str, np.ndarray],
    predictor: nn.Module,
    transform: str = "rotation",
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """MRR, Hit@1/2/5/10 and PRE on ``train`` and ``val`` and PRE val-all (see the module docstring).

    ``emb[split]``: ``[N, V, D]`` equivariant embeddings; ``latents[split]``: ``[N, V, 7]``. Also
    returns the val ranks ``[N, V]`` and predictions (for the retrieval picture).
    """
    out: dict[str, float] = {}
    keep: dict[str, torch.Tensor] = {}
    normed = {s: l2n(e.float()) for s, e in emb.items()}
    quats = {s: torch.from_numpy(quaternions(lat)) for s, lat in latents.items()}
    for split in ("train", "val"):
        if split not in emb:
            continue
        e = emb[split]
        n, v, d = e.shape
        pred = predictions(e, latents[split], predictor, transform)
        ranks = object_ranks(pred, normed[split]).reshape(-1)
        pre_key = "equi/pre" if split == "val" else "equi/train/pre"
        prefix = "equi/" if split == "val" else "equi/train/"
        out[f"{prefix}mrr"] = mrr(ranks)
        for k in (1, 2, 5, 10):
            out[f"{prefix}hit@{k}"] = hit_at_k(ranks, k)
        q = l2n(pred.view(-1, d).float())
        nn_idx = nearest(q, normed[split].view(-1, d)).cpu()
        out[pre_key] = pre(quats[split].view(-1, 4), quats[split].view(-1, 4)[nn_idx])
        if split == "val":
            keep = {"ranks": ranks.view(n, v).cpu(), "pred": pred.cpu()}
            if "train" in emb:
                keys = torch.cat([normed["train"].view(-1, d), normed["val"].view(-1, d)])
                qk = torch.cat([quats["train"].view(-1, 4), quats["val"].view(-1, 4)])
                out["equi/pre_all"] = pre(quats["val"].view(-1, 4), qk[nearest(q, keys).cpu()])
    return out, keep
