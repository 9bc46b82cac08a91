"""VICReg's three terms (Bardes, Ponce, LeCun, ICLR 2022, arXiv 2105.04906, Eqs. 1-6) and their sum.

Shapes: ``z``, ``z1``, ``z2`` are ``[N, D]`` embeddings of the local batch; row ``i`` of ``z1`` and
``z2`` are two views of one sample.

- invariance ``s(Z, Z') = 1/(N D) sum_i ||z_i - z'_i||^2`` (mean squared error over the local
  batch: DDP's gradient averaging turns it into the mean over the global batch);
- variance ``v(Z) = 1/D sum_j relu(1 - sqrt(Var(z^j) + eps))``, ``Var`` the unbiased variance of
  dimension ``j`` over the global batch;
- covariance ``c(Z) = 1/D sum_{j != k} C(Z)_{jk}^2``, ``C(Z) = Zc^T Zc / (N - 1)`` over the global
  batch (``Zc`` centred);
- ``vicreg = sim * s + std * (v(Z) + v(Z')) / 2 + cov * (c(Z) + c(Z'))``.

Variance and covariance are statistics of the whole batch, so with ``gather=True`` they are
computed on the embeddings of every process, gathered with gradient
(:func:`selfsup.utils.dist.gather_with_grad`): N processes then compute exactly what one process
computes on the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..utils.dist import gather_with_grad


def _global(z: torch.Tensor, gather: bool) -> torch.Tensor:
    return gather_with_grad(z) if gather else z


def invariance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``1/(N D) sum ||z1_i - z2_i||^2`` over the local batch (Eq. 5); scalar."""
    return F.mse_loss(z1, z2)


def variance(z: torch.Tensor, eps: float = 1e-4, gather: bool = True) -> torch.Tensor:
    """Hinge on the per-dimension standard deviation, ``mean_j relu(1 - sqrt(Var z^j + eps))`` (Eq. 1-2).

    ``Var`` is unbiased (``N - 1``) over the global batch when ``gather``. Scalar.
    """
    z = _global(z, gather)
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


def covariance(z: torch.Tensor, gather: bool = True) -> torch.Tensor:
    """Sum of squared off-diagonal covariances divided by ``D`` (Eq. 3-4); scalar.

    ``C = Zc^T Zc / (N - 1)`` with ``Zc`` centred over the global batch when ``gather``.
    """
    z = _global(z, gather)
    n, d = z.shape
    zc = z - z.mean(dim=0)
    c = zc.T @ zc / (n - 1)
    off = c - torch.diag(torch.diagonal(c))
    return off.pow(2).sum() / d


def vicreg_terms(
    z1: torch.Tensor, z2: torch.Tensor, gather: bool = True, eps: float = 1e-4
) -> dict[str, torch.Tensor]:
    """The unweighted terms: ``inv`` = s(Z, Z'), ``var`` = (v(Z) + v(Z')) / 2, ``cov`` = c(Z) + c(Z')."""
    return {
        "inv": invariance(z1, z2),
        "var": (variance(z1, eps, gather) + variance(z2, eps, gather)) / 2,
        "cov": covariance(z1, gather) + covariance(z2, gather),
    }


def vicreg(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim: float = 25.0,
    std: float = 25.0,
    cov: float = 1.0,
    gather: bool = True,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg loss ``sim * s + std * (v(Z) + v(Z'))/2 + cov * (c(Z) + c(Z'))`` (Eq. 6); scalar.

    Defaults are the paper's ImageNet coefficients (lambda = mu = 25, nu = 1). ``z1``, ``z2``:
    ``[N, D]``. ``gather``: variance and covariance over the batches of every process.
    """
    t = vicreg_terms(z1, z2, gather, eps)
    return sim * t["inv"] + std * t["var"] + cov * t["cov"]
