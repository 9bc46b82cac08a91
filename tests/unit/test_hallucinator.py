"""Hallucinator (Wu et al., ICCV 2023): generator formula, plug-in points, gradients, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.losses.contrastive import info_nce, nt_xent
from selfsup.losses.regression import negative_cosine
from selfsup.methods import build_method
from selfsup.positives.attach import attach_positives
from selfsup.positives.hallucinator import Hallucinator
from selfsup.positives.hooks import moco_loss, simclr_loss, simsiam_hallucinate
from selfsup.recipe import load_recipe

TINY_MODEL = {"backbone": "resnet18", "cifar_stem": True, "width": 4}
METHODS = {
    "moco": {"name": "moco", "queue_size": 32, "dim": 16},
    "simclr": {"name": "simclr", "proj_hidden": 16, "proj_dim": 12},
    "simsiam": {"name": "simsiam", "proj_dim": 20, "proj_hidden": 16, "pred_hidden": 8},
}


def recipe(method: str, positives: list | None = None, **method_over):
    return load_recipe(
        {
            "data": {"source": "digits", "batch_size": 4},
            "model": TINY_MODEL,
            "method": {**METHODS[method], **method_over},
            "positives": positives or [],
        }
    )


def built(method: str, positives: list | None = None, seed: int = 0, **method_over):
    r = recipe(method, positives, **method_over)
    torch.manual_seed(seed)
    m = build_method(r)
    attach_positives(m, r)
    return m


class Host(nn.Module):
    """A stand-in method for the hooks: only the attached generator matters."""

    def __init__(self, hal: Hallucinator | None = None, **cfg) -> None:
        super().__init__()
        if hal is not None:
            from selfsup.positives.hallucinator import HallucinatorConfig

            hal.cfg = HallucinatorConfig(**cfg)
            self.hallucinator = hal


def reference_mlp(g: Hallucinator, inp: torch.Tensor) -> torch.Tensor:
    l1, l2, l3 = (m for m in g.mlp if isinstance(m, nn.Linear))
    h = F.relu(F.linear(inp, l1.weight, l1.bias))
    h = F.relu(F.linear(h, l2.weight, l2.bias))
    return F.linear(h, l3.weight, l3.bias)


def test_generator_output_equals_paper_formula():
    torch.manual_seed(1)
    g = Hallucinator(dim=6, r_max=0.1)
    x, a = torch.randn(5, 6), torch.randn(5, 6)
    torch.manual_seed(7)
    out = g(x, a)
    torch.manual_seed(7)
    r = float(torch.rand(())) * 0.1  # one U(0, r_max) draw from the global generator
    expected_h = reference_mlp(g, torch.cat([x, x + r * (x - a)], 1))
    assert out.shape == (10, 6)
    assert torch.equal(out[:5], x)  # originals first, untouched
    torch.testing.assert_close(out[5:], expected_h)
    assert g.last_r == pytest.approx(r) and 0 <= r < 0.1


def test_one_r_shared_by_every_sample_and_dimension():
    torch.manual_seed(0)
    g = Hallucinator(dim=8, r_max=0.5)
    seen = {}
    g.mlp.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0].detach()))
    x, a = torch.randn(16, 8, dtype=torch.float64), torch.randn(16, 8, dtype=torch.float64)
    g.double()(x, a)
    assert torch.equal(seen["inp"][:, :8], x)
    r_each = (seen["inp"][:, 8:] - x) / (x - a)
    torch.testing.assert_close(r_each, torch.full_like(r_each, g.last_r))
    # A fresh draw per call: two steps get different r (almost surely).
    r1 = g.last_r
    g(x, a)
    assert g.last_r != r1


def test_architecture_three_linear_layers_without_bn():
    g = Hallucinator(dim=128)
    linears = [m for m in g.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 256), (256, 256), (256, 128)]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in g.modules())
    assert isinstance(g.mlp[-1], nn.Linear)  # no output activation / normalisation


@pytest.mark.parametrize("method,dim", [("moco", 16), ("simclr", 12), ("simsiam", 20)])
def test_dimensions_derived_from_the_model(method, dim):
    m = built(method, ["hallucinator"])
    first = m.hallucinator.mlp[0]
    assert (first.in_features, m.hallucinator.mlp[-1].out_features) == (2 * dim, dim)
    # A submodule: trained by the optimizer, saved in checkpoints.
    assert any(k.startswith("hallucinator.mlp.0.") for k in m.state_dict())
    ids = {id(p) for g in m.param_groups(1e-4) for p in g["params"]}
    assert all(id(p) in ids for p in m.hallucinator.parameters())


def test_moco_hook_doubles_queries_and_duplicates_keys():
    torch.manual_seed(0)
    g = Hallucinator(dim=8)
    q = torch.randn(4, 8, requires_grad=True)
    k = F.normalize(torch.randn(4, 8), dim=1).requires_grad_()  # grad only to prove it is cut
    queue = F.normalize(torch.randn(32, 8), dim=1)
    torch.manual_seed(3)
    loss, enq, stats = moco_loss(Host(g), q, k, queue, 0.2)
    torch.manual_seed(3)
    q2 = F.normalize(g(q, k.detach()), dim=1)
    ref = info_nce(q2, torch.cat([k, k]), queue, 0.2)
    torch.testing.assert_close(loss, ref)
    assert len(enq) == 2 and all(torch.equal(e, k.detach()) for e in enq)  # official: k enqueued twice
    loss.backward()
    assert k.grad is None  # the anchor (key branch) gets no gradient
    assert q.grad.abs().sum() > 0 and all(p.grad is not None for p in g.parameters())
    # Clean option: each key enqueued once; the loss is the same.
    _, enq_clean, _ = moco_loss(Host(g, enqueue_duplicates=False), q, k, queue, 0.2)
    assert len(enq_clean) == 1 and torch.equal(enq_clean[0], k.detach())


def test_moco_method_enqueues_per_option():
    x = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    m = built("moco", ["hallucinator"])
    m({"views": x})
    assert int(m.queue_ptr) == 8
    m = built("moco", [{"name": "hallucinator", "enqueue_duplicates": False}])
    m({"views": x})
    assert int(m.queue_ptr) == 4


def test_simclr_faithful_equals_nt_xent_on_doubled_batch_and_anchor_gets_gradient():
    torch.manual_seed(0)
    g = Hallucinator(dim=6)
    z1, z2 = torch.randn(5, 6, requires_grad=True), torch.randn(5, 6, requires_grad=True)
    torch.manual_seed(4)
    loss, _ = simclr_loss(Host(g), z1, z2, 0.5)
    torch.manual_seed(4)
    ref = nt_xent(g(z1, z2), torch.cat([z2, z2]), 0.5)
    torch.testing.assert_close(loss, ref)
    # Gradient reaches z2 through the anchor of G as well: compare with a detached anchor.
    (gz2,) = torch.autograd.grad(loss, z2)
    torch.manual_seed(4)
    f1 = torch.cat([z1, g.mlp(torch.cat([z1, z1 + g.last_r * (z1 - z2.detach())], 1))])
    (gz2_det,) = torch.autograd.grad(nt_xent(f1, torch.cat([z2, z2]), 0.5), z2)
    assert not torch.allclose(gz2, gz2_det)


def test_simclr_clean_option_drops_same_image_copies_from_denominator():
    torch.manual_seed(0)
    g = Hallucinator(dim=6)
    n, t = 4, 0.5
    z1, z2 = torch.randn(n, 6), torch.randn(n, 6)
    torch.manual_seed(9)
    loss, _ = simclr_loss(Host(g, duplicate_negatives=False), z1, z2, t)
    torch.manual_seed(9)
    f1, f2 = F.normalize(g(z1, z2), dim=1), F.normalize(torch.cat([z2, z2]), dim=1)
    rows = torch.cat([f1, f2])  # [4n]: z1, h, z2, z2-copy
    ids = torch.arange(n).repeat(4)
    pos = torch.cat([torch.arange(2 * n) + 2 * n, torch.arange(2 * n)])
    terms = []
    for i in range(4 * n):
        keep = [j for j in range(4 * n) if ids[j] != ids[i] or j == pos[i]]
        s = torch.stack([rows[i] @ rows[j] for j in keep]) / t
        terms.append(torch.logsumexp(s, 0) - rows[i] @ rows[pos[i]] / t)
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    torch.manual_seed(9)
    official, _ = simclr_loss(Host(g), z1, z2, t)
    assert official > loss  # the identical copy in the denominator raises the official loss


def test_simsiam_hook_independent_r_original_anchor_and_detached_targets():
    torch.manual_seed(0)
    g = Hallucinator(dim=6)
    p1, p2 = torch.randn(3, 6, requires_grad=True), torch.randn(3, 6, requires_grad=True)
    z1, z2 = torch.randn(3, 6, requires_grad=True), torch.randn(3, 6, requires_grad=True)
    torch.manual_seed(5)
    p1h, p2h, z1d, z2d = simsiam_hallucinate(Host(g), p1, p2, z1, z2)
    torch.manual_seed(5)
    r1 = float(torch.rand(())) * 0.1
    r2 = float(torch.rand(())) * 0.1
    assert r1 != r2
    torch.testing.assert_close(p1h, g(p1, p2, r=r1))
    torch.testing.assert_close(p2h, g(p2, p1, r=r2))  # anchor: the ORIGINAL p1
    assert torch.equal(z1d, torch.cat([z1, z1])) and torch.equal(z2d, torch.cat([z2, z2]))
    loss = 0.5 * (negative_cosine(p1h, z2d) + negative_cosine(p2h, z1d))
    loss.backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient on z
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


def test_simsiam_method_with_hallucinator_trains_generator():
    m = built("simsiam", ["hallucinator"])
    x = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    out = m({"views": x})
    out["loss"].backward()
    assert "feats" in out and out["feats"].shape[0] == 4
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.hallucinator.parameters())


def test_no_positives_paths_equal_the_plain_losses_exactly():
    torch.manual_seed(0)
    q, k = torch.randn(6, 8), F.normalize(torch.randn(6, 8), dim=1)
    queue = F.normalize(torch.randn(20, 8), dim=1)
    loss, enq, _ = moco_loss(Host(), q, k, queue, 0.2)
    assert torch.equal(loss, info_nce(F.normalize(q, dim=1), k, queue, 0.2))
    assert len(enq) == 1 and torch.equal(enq[0], k)
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    loss, _ = simclr_loss(Host(), z1, z2, 0.5)
    assert torch.equal(loss, nt_xent(z1, z2, 0.5))


@pytest.mark.parametrize(
    "method,positives,needle",
    [
        ("moco", [{"name": "hallucinator", "dim": 128}], "positives[0].dim=128"),
        ("simsiam", [{"name": "hallucinator", "dim": 8}], "predictor output"),
        ("moco", ["hallucinator", "hallucinator"], "positives[1]: duplicate generator"),
        ("simclr", [{"name": "hallucinator", "enqueue_duplicates": False}], "enqueue_duplicates"),
        ("moco", [{"name": "hallucinator", "duplicate_negatives": False}], "duplicate_negatives"),
        ("moco", [{"name": "hallucinator", "r_max": -0.1}], "r_max"),
    ],
)
def test_invalid_hallucinator_configs_raise_one_line_config_error(method, positives, needle):
    r = recipe(method, positives)
    m = build_method(r)
    with pytest.raises(ConfigError) as e:
        attach_positives(m, r)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unknown_generator_and_key_rejected_at_load():
    with pytest.raises(ConfigError, match="unknown generator"):
        recipe("moco", ["halucinator"])
    with pytest.raises(ConfigError, match="r_maxx"):
        recipe("moco", [{"name": "hallucinator", "r_maxx": 0.1}])


@pytest.mark.parametrize(
    "method,width,hidden", [("moco", 128, 256), ("simsiam", 512, 1024), ("simsiam", 2048, 1024)]
)
def test_default_generator_width_is_capped_at_the_official_size(method, width, hidden):
    """2d at the official widths (MoCo 128, SimSiam 512); SimSiam's paper width 2048 stays at 1024."""
    key = "dim" if method == "moco" else "proj_dim"
    r = recipe(method, ["hallucinator"], **{key: width})
    assert r.positives[0].dim == width and r.positives[0].hidden == hidden
    from selfsup.positives.hallucinator import Hallucinator

    n = sum(p.numel() for p in Hallucinator(width, r.positives[0].hidden).parameters())
    assert n < 8_000_000  # 2d at 2048 dims would be 42M


def test_matching_explicit_dim_is_accepted():
    m = built("moco", [{"name": "hallucinator", "dim": 16, "hidden": 24}])
    assert m.hallucinator.mlp[0].out_features == 24


def test_simclr_two_simulated_processes_equal_one(monkeypatch):
    """Hallucinator + FT (per-element lambdas) + clean mask: 2 ranks x N rows == 1 rank x 2N rows.

    The ranks are simulated in one process: rank/world_size are patched and the differentiable
    gather returns the rows each rank would contribute (recorded in a first pass). Each rank sees
    the same global RNG state, as under ``accelerate`` with one seed.
    """
    import selfsup.positives.feature_transform as ft_mod
    import selfsup.positives.hooks as hooks
    from selfsup.positives.feature_transform import FeatureTransform, FeatureTransformConfig
    from selfsup.positives.hallucinator import HallucinatorConfig
    from selfsup.positives.score_stats import ScoreTracker

    torch.manual_seed(0)
    host = Host()
    host.hallucinator = Hallucinator(dim=6)
    host.hallucinator.cfg = HallucinatorConfig(duplicate_negatives=False)
    host.feature_transform = FeatureTransform(FeatureTransformConfig(per_element="both"))
    host.scores = ScoreTracker()
    n, w = 3, 2
    z1, z2 = torch.randn(n * w, 6, dtype=torch.float64), torch.randn(n * w, 6, dtype=torch.float64)
    host.double()

    torch.manual_seed(42)
    ref, _ = simclr_loss(host, z1, z2, 0.5)

    def patch(r: int, gather) -> None:
        for mod in (hooks, ft_mod):
            monkeypatch.setattr(mod, "rank", lambda r=r: r)
            monkeypatch.setattr(mod, "world_size", lambda: w)
        monkeypatch.setattr(hooks, "gather_with_grad", gather)

    recorded: dict[int, list] = {0: [], 1: []}
    for r in range(w):  # pass 1: what each rank feeds the gather (f1, then f2)
        patch(r, lambda x, r=r: recorded[r].append(x.detach()) or torch.cat([x] * w))
        torch.manual_seed(42)
        simclr_loss(host, z1[r * n : (r + 1) * n], z2[r * n : (r + 1) * n], 0.5)
    losses = []
    for r in range(w):  # pass 2: the real gather
        calls = iter(range(2))

        def gather(x, r=r, calls=calls):
            j = next(calls)
            return torch.cat([x if i == r else recorded[i][j] for i in range(w)])

        patch(r, gather)
        torch.manual_seed(42)
        losses.append(simclr_loss(host, z1[r * n : (r + 1) * n], z2[r * n : (r + 1) * n], 0.5)[0])
    torch.testing.assert_close(torch.stack(losses).mean(), ref)
