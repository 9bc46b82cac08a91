"""VICReg loss against lightly, the SIE predictor against the explicit W(z) x, the VICReg-style ResNet,
and the equivariance metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.eval.equivariance import hit_at_k, mrr, nearest, object_ranks, pooled_r2, pre
from selfsup.losses import vicreg
from selfsup.losses.vicreg import covariance, invariance, variance
from selfsup.models.backbones import build_backbone
from selfsup.models.hypernet import HyperPredictor


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (10.0, 10.0, 1.0), (1.0, 0.0, 3.0)])
def test_vicreg_equals_lightly(coeffs):
    from lightly.loss import VICRegLoss

    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(32, 24, generator=g, dtype=torch.float64) * 0.7
    z2 = z1 + 0.3 * torch.randn(32, 24, generator=g, dtype=torch.float64)
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ours = vicreg(a, b, *coeffs)
    ours.backward()
    ra, rb = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ref = VICRegLoss(*coeffs)(ra, rb)
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)
    assert torch.allclose(a.grad, ra.grad, atol=1e-5) and torch.allclose(b.grad, rb.grad, atol=1e-5)


def test_vicreg_terms_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 1.0]])
    # Per-dimension unbiased variance: both dims have mean 1 and var 1 -> std sqrt(1 + 1e-4) > 1.
    assert variance(z).item() == pytest.approx(0.0, abs=1e-7)
    assert variance(z * 0.5).item() == pytest.approx(1 - 0.5 * np.sqrt(1 + 4e-4), abs=1e-6)
    # Centred: [[0,-1],[-1,1],[1,0]] -> C_01 = (0 - 1 + 0) / 2 = -0.5 -> 2 * 0.25 / 2 dims.
    assert covariance(z).item() == pytest.approx(0.25, abs=1e-7)
    assert invariance(z, z + 1).item() == pytest.approx(1.0)


@pytest.mark.parametrize("kind,bias", [("linear", False), ("deep", False), ("linear", True)])
def test_predictor_equals_explicit_matrix(kind, bias):
    torch.manual_seed(0)
    pred = HyperPredictor(16, 6, kind, bias)
    x, z = torch.randn(9, 16), torch.randn(9, 6)
    w = pred.matrix(z)  # [B, D, D], rows = outputs, materialised by the hypernetwork itself
    explicit = torch.einsum("bij,bj->bi", w, x)
    assert torch.allclose(pred(x, z), explicit, atol=1e-5)
    if kind == "linear" and not bias:
        # W(z) = sum_k z_k A_k with A_k the k-th column of the hypernetwork's weight.
        a = pred.hypernet.net[0].weight.T.reshape(6, 16, 16)
        assert torch.allclose(torch.einsum("bk,kij->bij", z, a), w, atol=1e-6)
        # Linear in z: W(2z) x = 2 W(z) x.
        assert torch.allclose(pred(x, 2 * z), 2 * pred(x, z), atol=1e-5)


def test_predictor_gradients_match_explicit():
    torch.manual_seed(1)
    pred = HyperPredictor(8, 4)
    x, z = torch.randn(5, 8, requires_grad=True), torch.randn(5, 4)
    pred(x, z).pow(2).sum().backward()
    g_lazy = (x.grad.clone(), pred.hypernet.net[0].weight.grad.clone())
    x.grad = None
    pred.zero_grad()
    torch.einsum("bij,bj->bi", pred.matrix(z), x).pow(2).sum().backward()
    assert torch.allclose(g_lazy[0], x.grad, atol=1e-5)
    assert torch.allclose(g_lazy[1], pred.hypernet.net[0].weight.grad, atol=1e-5)


def _reference_vicreg_resnet_forward(m, x):
    """The VICReg ResNet written out with functional ops on the module's weights."""
    import torch.nn.functional as F

    def bn(mod, t):
        return F.batch_norm(t, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0.0, mod.eps)

    def block(b, t):
        out = F.relu(bn(b.bn1, F.conv2d(t, b.conv1.weight, padding=1)))
        if b.stride == 2:
            out = F.conv2d(F.pad(out, (0, 1, 0, 1)), b.conv2.weight, stride=2)
        else:
            out = F.conv2d(out, b.conv2.weight, padding=1)
        out = bn(b.bn2, out)
        idt = (
            t
            if b.downsample is None
            else bn(b.downsample[1], F.conv2d(t, b.downsample[0].weight, stride=b.stride))
        )
        return F.relu(out + idt)

    t = F.relu(bn(m.bn1, F.conv2d(F.pad(x, (2, 3, 2, 3)), m.conv1.weight, stride=2)))
    t = F.max_pool2d(F.pad(t, (0, 1, 0, 1), value=-1e4), 3, 2)
    for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
        for b in layer:
            t = block(b, t)
    return t.mean((2, 3))


def test_vicreg_resnet_matches_functional_reference():
    torch.manual_seed(0)
    m = build_backbone({"backbone": "resnet18_vicreg", "width": 8})
    assert m.num_features == 64
    # Every stage (layer1 included) has a projection shortcut; residual BNs start at zero.
    assert all(layer[0].downsample is not None for layer in (m.layer1, m.layer2, m.layer3, m.layer4))
    assert all(float(layer[1].bn2.weight.detach().abs().sum()) == 0 for layer in (m.layer1, m.layer4))
    for mod in m.modules():  # non-trivial BN so the residual branches count
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.1, 0.1)
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(m(x), _reference_vicreg_resnet_forward(m, x), atol=1e-5)


def test_vicreg_resnet_rebuilds_from_export(tmp_path):
    from selfsup.models.export import export_encoder, load_encoder

    enc = build_backbone({"backbone": "resnet18_vicreg", "width": 4, "cifar_stem": True})
    arch = {"backbone": "resnet18_vicreg", "cifar_stem": True, "width": 4, "kwargs": {}}
    export_encoder(tmp_path / "encoder.pt", enc, arch, {"model_id": "t"})
    back, info = load_encoder(tmp_path / "encoder.pt")
    x = torch.randn(2, 3, 16, 16)
    assert info["dim"] == 32 and torch.allclose(back(x), enc.eval()(x))


# --- equivariance metrics ---------------------------------------------------------------------


def test_pooled_r2_is_not_the_per_column_average():
    y = np.array([[0.0, 10.0], [1.0, 12.0], [2.0, 14.0]])
    p = np.array([[0.0, 11.0], [2.0, 12.0], [2.0, 13.0]])
    # Pooled: one mean (6.5) over all six targets. ss_res = 0 + 1 + 1 + 0 + 0 + 1 = 3.
    ss_tot = ((y - 6.5) ** 2).sum()
    assert pooled_r2(p, y) == pytest.approx(1 - 3 / ss_tot)
    # scikit-learn's uniform average of per-column R^2 gives a clearly different number here.
    per_col = np.mean([1 - 1 / 2.0, 1 - 2 / 8.0])
    assert abs(pooled_r2(p, y) - per_col) > 0.2
    assert pooled_r2(y, y) == 1.0


def test_ranks_mrr_hits_by_hand():
    # One object, three views; embeddings on the unit circle at 0, 90 and 180 degrees.
    emb = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    # Predictions for views 0, 1, 2: exact, slightly off towards view 0, and pointing at view 1.
    pred = torch.tensor([[[2.0, 0.0], [0.6, 0.8], [0.1, 1.0]]])
    ranks = object_ranks(pred, emb)
    # view 0: rank 1; view 1: sims (0.6, 0.8, -0.6) -> rank 1; view 2: sims (.1,1,-.1)/|.| -> rank 3.
    assert ranks.tolist() == [[1, 1, 3]]
    r = ranks.view(-1)
    assert mrr(r) == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert hit_at_k(r, 1) == pytest.approx(2 / 3) and hit_at_k(r, 2) == pytest.approx(2 / 3)
    assert hit_at_k(r, 5) == 1.0


def test_pre_by_hand():
    s = np.sqrt(0.5)
    q_true = np.array([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, s, s]])
    q_ret = np.array([[0.0, 0.0, 0.0, -1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    # Same rotation (sign flip) -> 0; orthogonal -> 1; 90 degrees about z -> 1 - 0.5.
    assert pre(q_true, q_ret) == pytest.approx((0 + 1 + 0.5) / 3)


def test_nearest_matches_argmax():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(50, 8, generator=g), torch.randn(70, 8, generator=g)
    assert torch.equal(nearest(q, k, block=7), (q @ k.T).argmax(1))


def test_rotation_heads_learn_the_pose_and_only_the_column_means_without_it():
    # Learning signal of the R^2 protocol: views whose features hold their rotation matrix give
    # a high rotation R^2; features of pure noise only reach the pooled R^2 of predicting each
    # quaternion component's mean (about 0.2 here, not 0: w's mean is far from the pooled mean).
    from scipy.spatial.transform import Rotation

    from selfsup.eval.equivariance import pair_regression

    rng = np.random.default_rng(0)
    n, v = 300, 10
    lat = np.zeros((n, v, 7))
    lat[..., :3] = rng.uniform(-np.pi / 2, np.pi / 2, (n, v, 3))
    lat[..., 3:] = rng.uniform(0, 1, (n, v, 4))
    rot = Rotation.from_euler("xyz", lat[..., :3].reshape(-1, 3)).as_matrix().reshape(n, v, 9)
    noise = rng.normal(size=(n, v, 5))
    posed = np.concatenate([rot, lat[..., [3, 6]], noise], -1).astype(np.float32)
    tr, va = slice(0, 240), slice(240, None)
    kw = {"epochs": 60, "hidden": 128, "seed": 0}
    m = pair_regression(posed[tr], lat[tr], posed[va], lat[va], {"": slice(None)}, **kw)
    assert m["equi/rotation_r2"] > 0.7 and m["equi/color_r2"] > 0.9, m
    blind = noise.astype(np.float32)
    m0 = pair_regression(blind[tr], lat[tr], blind[va], lat[va], {"": slice(None)}, **kw)
    assert 0.0 < m0["equi/rotation_r2"] < 0.35 and m0["equi/color_r2"] < 0.1, m0
