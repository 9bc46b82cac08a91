"""Bag-of-visual-words targets and loss of OBoW (Gidaris et al., CVPR 2021, arXiv 2012.11552).

The teacher side, per feature level (paper Sec. 3.1, Eqs. 1-3):

- ``d[b, k, u] = ||F[b, :, u] - V[k]||^2`` squared distance of every local feature to every word;
- ``codes = softmax_k(-d / delta)`` with ``delta = mu / inv_delta`` (``mu``: running mean of the
  distance to the nearest word, so the assignment's sharpness adapts as the features change);
- ``bow[b, k] = max_u codes[b, k, u]``, then L1-normalised over ``k``: a distribution over words.

The student side: a soft cross-entropy between that distribution and ``softmax(logits)``
(paper Eq. 5), computed as the KL divergence, which differs from the cross-entropy only by the
target's entropy (constant for the student).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def squared_distances(feats: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """``||f_u - w_k||^2`` for every location ``u`` and word ``k``.

    Args:
        feats: ``[B, C, H, W]`` feature map.
        words: ``[K, C]`` vocabulary.

    Returns:
        ``[B, K, H, W]``, computed as ``|f|^2 + |w|^2 - 2 <f, w>`` (a 1x1 convolution), clamped
        at 0 against rounding.
    """
    dots = torch.einsum("bchw,kc->bkhw", feats, words)
    d = feats.pow(2).sum(1, keepdim=True) + words.pow(2).sum(1)[None, :, None, None] - 2 * dots
    return d.clamp_min(0)


def soft_assign(d: torch.Tensor, inv_delta: float | None, mu: torch.Tensor | float) -> torch.Tensor:
    """Assignment codes over the words (dim 1) from squared distances.

    Args:
        d: ``[B, K, H, W]`` squared distances.
        inv_delta: base inverse temperature; ``codes = softmax_k(-(inv_delta / mu) d)``.
            ``None`` gives hard assignment (one-hot of the nearest word).
        mu: running mean of the minimum distance (scalar).

    Returns:
        ``[B, K, H, W]`` non-negative codes summing to 1 over ``K`` at every location.
    """
    if inv_delta is None:
        return F.one_hot(d.argmin(1), d.shape[1]).permute(0, 3, 1, 2).to(d.dtype)
    return F.softmax(-(inv_delta / mu) * d, dim=1)


def bow_pool(codes: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """Bag of words: pool the codes over locations (``max`` or ``avg``), then L1-normalise.

    ``[B, K, H, W] -> [B, K]``; every row is non-negative and sums to 1.
    """
    flat = codes.flatten(2)
    bow = flat.amax(2) if pool == "max" else flat.mean(2)
    return F.normalize(bow, p=1, dim=1)


def bow_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``KL(target || softmax(logits))``, mean over rows (paper Eq. 5 up to the target entropy).

    Args:
        logits: ``[M, K]`` student predictions (``M`` = batch x crops of one kind).
        target: ``[M, K]`` BoW distributions (rows sum to 1, no gradient).
    """
    return F.kl_div(F.log_softmax(logits.float(), dim=1), target.float(), reduction="batchmean")


@torch.no_grad()
def perplexity(bow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity ``exp(H)`` of the batch's summed BoW and mean per-image perplexity.

    Low values mean few words are used (collapse of the vocabulary's use); ``bow``: ``[B, K]``.
    """
    eps = 1e-5
    p = F.normalize(bow, p=1, dim=1)
    per_image = torch.exp(-(p * torch.log(p + eps)).sum(1)).mean()
    q = F.normalize(bow.sum(0), p=1, dim=0)
    return torch.exp(-(q * torch.log(q + eps)).sum()), per_image
