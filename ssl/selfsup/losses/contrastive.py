"""Contrastive losses: NT-Xent (SimCLR) and InfoNCE (MoCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..utils.dist import gather_with_grad, rank


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, gather: bool = True
) -> torch.Tensor:
    """Normalised-temperature cross entropy, SimCLR (Chen et al. 2020, Eq. 1).

    Args:
        z1, z2: ``[N, D]`` projections of two views; row ``i`` of each is a positive pair.
            Not required to be normalised (normalised here).
        temperature: tau in ``exp(sim / tau)``.
        gather: use the views of every process as negatives (with gradient). On one process this
            changes nothing.

    Returns:
        scalar: mean over the ``2N`` local anchors of
        ``-log exp(s_ip / tau) / sum_{k != i} exp(s_ik / tau)`` where ``k`` runs over all
        ``2 N_global`` views. Equals the single-process loss on the global batch.
    """
    z1 = F.normalize(z1, dim=1)
    z2 = F.normalize(z2, dim=1)
    n = z1.shape[0]
    a1 = gather_with_grad(z1) if gather else z1
    a2 = gather_with_grad(z2) if gather else z2
    n_all = a1.shape[0]
    offset = rank() * n if (gather and n_all != n) else 0
    candidates = torch.cat([a1, a2], 0)  # [2 N_all, D]
    anchors = torch.cat([z1, z2], 0)  # [2 N, D]
    logits = anchors @ candidates.T / temperature
    local = torch.arange(n, device=z1.device) + offset
    self_idx = torch.cat([local, local + n_all])
    pos_idx = torch.cat([local + n_all, local])
    logits = logits.masked_fill(F.one_hot(self_idx, 2 * n_all).bool(), torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, pos_idx)


def info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor | None = None, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE, MoCo (He et al. 2020, Eq. 1).

    Args:
        q: ``[N, D]`` queries, L2-normalised by the caller.
        k: ``[N, D]`` positive keys (normalised, no gradient in MoCo).
        queue: ``[K, D]`` negative keys, or ``None`` to use the other rows of ``k`` as negatives
            (in-batch form; then logits are ``q @ k.T`` with targets on the diagonal).
        temperature: tau.

    Inputs are not re-normalised, so feature transformations that act on scores (FT's
    extrapolated positives, interpolated negatives) are seen as they are.

    Returns:
        scalar: mean over ``N`` of ``-log exp(q.k+ / tau) / (exp(q.k+ / tau) + sum exp(q.k- / tau))``.
    """
    if queue is None:
        logits = q @ k.T / temperature
        return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))
    l_pos = (q * k).sum(1, keepdim=True)
    l_neg = q @ queue.T
    logits = torch.cat([l_pos, l_neg], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
