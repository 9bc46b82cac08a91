"""Losses against independent references (numpy loops and, when installed, lightly)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import info_nce, negative_cosine, nt_xent


def _np_normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def nt_xent_reference(z1, z2, t):
    """Eq. 1 of SimCLR, written as an explicit loop over the 2N anchors."""
    z = _np_normalize(np.concatenate([z1, z2]).astype(np.float64))
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = np.array([z[i] @ z[k] / t for k in range(2 * n)])
        denom = sum(np.exp(sims[k]) for k in range(2 * n) if k != i)
        total += -(sims[pos] - np.log(denom))
    return total / (2 * n)


def info_nce_reference(q, k, queue, t):
    total = 0.0
    for i in range(len(q)):
        pos = q[i] @ k[i] / t
        negs = [q[i] @ queue[j] / t for j in range(len(queue))]
        total += -(pos - np.log(np.exp(pos) + np.sum(np.exp(negs))))
    return total / len(q)


@pytest.mark.parametrize("n,d,t", [(4, 8, 0.5), (7, 3, 0.1), (16, 32, 0.2)])
def test_nt_xent_matches_loop(n, d, t):
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    ref = nt_xent_reference(z1.numpy(), z2.numpy(), t)
    assert nt_xent(z1, z2, t).item() == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("t", [0.07, 0.5])
def test_nt_xent_matches_lightly(t):
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    ref = lightly_loss.NTXentLoss(temperature=t)(z1, z2).item()
    assert nt_xent(z1, z2, t).item() == pytest.approx(ref, abs=1e-5)


def test_nt_xent_is_symmetric_and_low_for_aligned_pairs():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), abs=1e-6)
    assert nt_xent(z1, z1 + 1e-3).item() < nt_xent(z1, z2).item()


@pytest.mark.parametrize("k_size", [1, 5, 64])
def test_info_nce_matches_loop(k_size):
    g = torch.Generator().manual_seed(k_size)
    q = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    k = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(k_size, 8, generator=g), dim=1)
    ref = info_nce_reference(q.double().numpy(), k.double().numpy(), queue.double().numpy(), 0.2)
    assert info_nce(q, k, queue, 0.2).item() == pytest.approx(ref, abs=1e-5)


def test_info_nce_in_batch_matches_cross_entropy_loop():
    g = torch.Generator().manual_seed(3)
    q = F.normalize(torch.randn(5, 4, generator=g), dim=1).double()
    k = F.normalize(torch.randn(5, 4, generator=g), dim=1).double()
    ref = np.mean(
        [
            -(q[i] @ k[i] / 0.1 - np.log(np.sum([np.exp(q[i] @ k[j] / 0.1) for j in range(5)]))).item()
            for i in range(5)
        ]
    )
    assert info_nce(q, k, None, 0.1).item() == pytest.approx(ref, abs=1e-6)


def test_negative_cosine_matches_lightly_and_stops_gradient():
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(4)
    p = torch.randn(10, 12, generator=g, requires_grad=True)
    z = torch.randn(10, 12, generator=g, requires_grad=True)
    ref = lightly_loss.NegativeCosineSimilarity()(p, z.detach()).item()
    loss = negative_cosine(p, z)
    assert loss.item() == pytest.approx(ref, abs=1e-6)
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None  # stop-gradient on the target branch
    assert negative_cosine(p, p).item() == pytest.approx(-1.0, abs=1e-6)


def test_nt_xent_gradient_matches_reference_autograd():
    g = torch.Generator().manual_seed(5)
    z1 = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)

    def ref(a, b):  # direct transcription with a dense mask, independent of the implementation's indexing
        z = F.normalize(torch.cat([a, b]), dim=1)
        sim = z @ z.T / 0.5
        n = a.shape[0]
        eye = torch.eye(2 * n, dtype=torch.bool)
        pos = torch.cat([torch.arange(n) + n, torch.arange(n)])
        logden = torch.logsumexp(sim.masked_fill(eye, float("-inf")), 1)
        return (logden - sim[torch.arange(2 * n), pos]).mean()

    ga = torch.autograd.grad(nt_xent(z1, z2, 0.5), (z1, z2))
    gb = torch.autograd.grad(ref(z1, z2), (z1, z2))
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-10)
