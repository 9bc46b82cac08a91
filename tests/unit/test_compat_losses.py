"""Compatible-training building blocks: orthogonal layers, BT²'s identity, pseudo-classifier, losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.compat.bct import BCTTerm, influence_loss
from selfsup.compat.bt2 import bt2_losses
from selfsup.compat.common import class_means
from selfsup.compat.hotrefresh import new_to_old_nce
from selfsup.compat.oca import OCAConfig, OCATerm
from selfsup.models.compat_heads import BT2Head, EmbedHead, build_head


def _assert_orthogonal(w: torch.Tensor) -> None:
    eye = torch.eye(w.shape[0])
    assert torch.allclose(w @ w.t(), eye, atol=1e-5), (w @ w.t() - eye).abs().max()


def test_orthogonal_layers_stay_orthogonal_after_optimizer_steps():
    torch.manual_seed(0)
    head = BT2Head(in_dim=24, new_dim=16, old_dim=12, extra=6, scale=2.0)
    oca = OCATerm(EmbedHead(24, 20), num_classes=5, protos=torch.randn(5, 16), cfg=OCAConfig())
    params = list(head.parameters()) + list(oca.parameters())
    before = [head.P.weight.detach().clone(), head.O.weight.detach().clone(), oca.T.weight.detach().clone()]
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(30):
        z = torch.randn(32, 24)
        phi = head(z)
        h = oca.head(z)
        # An arbitrary loss that pulls the weights away from their start.
        loss = (phi[:, :5] - 1.0).pow(2).mean() + (oca.T(h)[:, :3] + 2.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = [head.P.weight.detach(), head.O.weight.detach(), oca.T.weight.detach()]
    for b, a in zip(before, after):
        assert not torch.allclose(a, b, atol=1e-3)  # they did train
        _assert_orthogonal(a)
    assert oca.T.bias is not None and oca.T.bias.abs().sum() > 0  # OCA's free bias trains too


def test_bt2_inner_product_identity_and_norm():
    torch.manual_seed(1)
    C = 2.0
    head = BT2Head(in_dim=40, new_dim=32, old_dim=32, extra=8, scale=C)
    with torch.no_grad():  # move off the initialisation so the identity is not trivially met
        head.P.parametrizations.weight.original.add_(0.3 * torch.randn(32, 32))
        head.O.parametrizations.weight.original.add_(0.3 * torch.randn(32, 32))
    z = torch.relu(torch.randn(10, 40))
    parts = head.parts(z)
    phi, u, f = parts["phi"], parts["u"], parts["f"]
    assert phi.shape == (10, 40)
    lhs = phi @ phi.t()
    rhs = u @ u.t() + C**2 * (f @ f.t())
    assert torch.allclose(lhs, rhs, atol=1e-5)
    assert torch.allclose(phi.norm(dim=1), torch.full((10,), math.sqrt(1 + C**2)), atol=1e-5)
    # the old-compatible part b is an orthogonal map of the first d_old dims of v = [u, P(C f)]
    assert torch.allclose(parts["b"].norm(dim=1), parts["v"][:, :32].norm(dim=1), atol=1e-5)


def test_exported_bt2_head_matches_training_head():
    torch.manual_seed(2)
    head = BT2Head(in_dim=20, new_dim=16, old_dim=12, extra=4, scale=2.0)
    plain = head.export()
    rebuilt = build_head(head.spec())
    rebuilt.load_state_dict(plain.state_dict())
    assert not any("parametrizations" in k for k in rebuilt.state_dict())
    z = torch.randn(6, 20)
    assert torch.allclose(rebuilt(z), head(z), atol=1e-6)


def test_class_means_match_independent_loop():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(50, 7)).astype(np.float32)
    labels = rng.integers(0, 4, size=50)
    labels[labels == 3] = 2  # class 3 absent: a zero row
    P = class_means(torch.from_numpy(feats), torch.from_numpy(labels), 5).numpy()
    for c in range(5):
        rows = feats[labels == c]
        want = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).mean(0) if len(rows) else np.zeros(7)
        np.testing.assert_allclose(P[c], want, atol=1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_bct_influence_loss_makes_new_features_classifiable_by_old_pseudo_classifier(normalize):
    torch.manual_seed(0)
    n_cls, d_in, d_old = 4, 10, 8
    centers = 3 * torch.randn(n_cls, d_in)
    y = torch.arange(n_cls).repeat_interleave(40)
    x = centers[y] + torch.randn(len(y), d_in)
    old = nn.Sequential(nn.Linear(d_in, d_old), nn.ReLU())  # frozen "old model"
    with torch.no_grad():
        P = class_means(old(x), y, n_cls)
    term = BCTTerm(P, None, lam=10.0, smoothing=0.1, normalize=normalize)
    new = nn.Sequential(nn.Linear(d_in, 32), nn.ReLU(), nn.Linear(32, 12))  # wider than d_old
    opt = torch.optim.Adam(new.parameters(), lr=1e-2)
    batch = {"label": y}
    first = term(None, batch, {"feats": new(x)})
    for _ in range(150):
        out = term(None, batch, {"feats": new(x)})
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    last = term(None, batch, {"feats": new(x)})
    assert last["bct_acc"] > 0.95 and first["bct_acc"] < 0.6
    if normalize:  # cosine logits scaled by |P_c| <= 1: the loss falls but stays bounded away from 0
        assert last["bct_loss"] < first["bct_loss"] - 0.05 and last["bct_loss"] > 0.5
    else:  # raw logits grow with the feature norm: the loss can be driven down freely
        assert last["bct_loss"] < 0.5 * first["bct_loss"]
    # only the first d_old dims are used: the rest of the new feature gets no gradient
    feats = new(x).detach().requires_grad_(True)
    influence_loss(feats, y, P, None, 0.1)[0].backward()
    assert feats.grad[:, d_old:].abs().sum() == 0 and feats.grad[:, :d_old].abs().sum() > 0


def test_bt2_losses_are_zero_at_their_optimum_and_positive_otherwise():
    torch.manual_seed(0)
    head = BT2Head(in_dim=16, new_dim=16, old_dim=16, extra=4, scale=2.0)
    with torch.no_grad():
        parts = head.parts(torch.randn(8, 16))
    y = torch.arange(8) % 3
    b_hat = F.normalize(parts["b"], dim=1)
    t = bt2_losses(parts, torch.randn(8, 3), y, torch.randn(3, 16), b_hat, parts["f"], 0.1)
    assert abs(float(t["old_align"])) < 1e-5 and abs(float(t["distill"])) < 1e-5
    t = bt2_losses(parts, torch.randn(8, 3), y, torch.randn(3, 16), -b_hat, None, 0.1)
    assert float(t["old_align"]) == pytest.approx(2.0, abs=1e-5) and float(t["distill"]) == 0.0


def test_hotrefresh_nce_matches_reference():
    torch.manual_seed(0)
    new = F.normalize(torch.randn(6, 5), dim=1)
    old = F.normalize(torch.randn(6, 5), dim=1)
    T = 0.01
    ref = 0.0
    for i in range(6):
        logits = torch.tensor([float(new[i] @ old[j]) / T for j in range(6)], dtype=torch.float64)
        ref += float(torch.logsumexp(logits, 0) - logits[i])
    assert float(new_to_old_nce(new, old, T)) == pytest.approx(ref / 6, rel=1e-4)


def test_frozen_old_model_stays_in_eval_mode_and_keeps_its_batchnorm_statistics():
    from selfsup.compat.hotrefresh import HotRefreshConfig, HotRefreshTerm

    torch.manual_seed(0)
    old = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    for p in old.parameters():
        p.requires_grad_(False)
    term = HotRefreshTerm(old, d_old=4, cfg=HotRefreshConfig(), head=None)
    wrapper = nn.ModuleList([term]).train()  # what the trainer's model.train() would do
    assert wrapper.training and term.training and not old.training
    stats = old[1].running_mean.clone()
    x = torch.randn(8, 3, 8, 8)
    out = term(None, {"views": [x]}, {"feats": torch.randn(8, 6, requires_grad=True)})
    out["loss"].backward()
    assert torch.equal(old[1].running_mean, stats)
    assert all(p.grad is None for p in old.parameters())
