"""Feature Transformation (Zhu et al., ICCV 2021): closed forms, gradients, queue, gating, stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.methods import build_method
from selfsup.positives.attach import attach_positives
from selfsup.positives.feature_transform import (
    FeatureTransform,
    FeatureTransformConfig,
    extrapolated_positive_score,
)
from selfsup.positives.hooks import simclr_loss
from selfsup.positives.score_stats import STAT_KEYS, ScoreTracker, score_stats
from selfsup.recipe import load_recipe

TINY = {"backbone": "resnet18", "cifar_stem": True, "width": 4}


def recipe(method: dict, positives: list | None = None):
    return load_recipe(
        {
            "data": {"source": "digits", "batch_size": 4},
            "model": TINY,
            "method": method,
            "positives": positives or [],
        }
    )


def moco(positives=None, seed=0, **over):
    r = recipe({"name": "moco", "queue_size": 32, "dim": 16, **over}, positives)
    torch.manual_seed(seed)
    m = build_method(r)
    attach_positives(m, r)
    return m


def unit_pair(c: float, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors with cosine exactly c (float64)."""
    e1, e2 = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    e1[0], e2[1] = 1.0, 1.0
    return e1[None], (c * e1 + (1 - c**2) ** 0.5 * e2)[None]


def beta_draw(alpha: float) -> float:
    a = torch.tensor(alpha)
    return float(torch.distributions.Beta(a, a).sample())


def test_paper_numbers_of_the_closed_form():
    assert extrapolated_positive_score(0.8825, 1.2) == pytest.approx(0.826, abs=5e-4)
    assert extrapolated_positive_score(0.8825, 1.5) == pytest.approx(0.706, abs=5e-4)


@pytest.mark.parametrize("c", [0.95, 0.5, -0.3])
def test_extrapolated_positive_score_equals_closed_form(c):
    ft = FeatureTransform(FeatureTransformConfig(target="pos"))
    q, k = unit_pair(c)
    torch.manual_seed(11)
    q_hat, k_hat = ft.extrapolate(q, k)
    torch.manual_seed(11)
    lam = 1.0 + beta_draw(2.0)  # lambda_ex = 1 + Beta(pos_alpha, pos_alpha), one per step
    assert 1 < lam < 2
    score = float((q_hat * k_hat).sum())
    assert score == pytest.approx((lam**2 + (1 - lam) ** 2) * c + 2 * lam * (1 - lam), abs=1e-12)
    assert score < c  # extrapolation makes the positive harder
    assert float(q_hat.norm()) > 1  # no re-normalisation after mixing


def test_gradient_flows_through_k_hat_into_q():
    ft = FeatureTransform(FeatureTransformConfig(target="pos"))
    torch.manual_seed(0)
    q = F.normalize(torch.randn(3, 5, dtype=torch.float64), dim=1).requires_grad_()
    k = F.normalize(torch.randn(3, 5, dtype=torch.float64), dim=1)
    torch.manual_seed(2)
    q_hat, k_hat = ft.extrapolate(q, k)
    torch.manual_seed(2)
    lam = 1.0 + beta_draw(2.0)
    (g,) = torch.autograd.grad((q_hat * k_hat).sum(), q, retain_graph=True)
    # Card: d<q_hat, k_hat>/dq = lam k_hat + (1 - lam) q_hat (k_hat NOT detached).
    torch.testing.assert_close(g, lam * k_hat.detach() + (1 - lam) * q_hat.detach())
    (g_det,) = torch.autograd.grad((q_hat * k_hat.detach()).sum(), q)
    assert not torch.allclose(g, g_det)


def test_negative_interpolation_mixes_with_a_permutation_and_leaves_input_alone():
    ft = FeatureTransform(FeatureTransformConfig(target="neg"))
    queue = F.normalize(torch.randn(50, 4), dim=1)
    before = queue.clone()
    torch.manual_seed(5)
    mixed = ft.interpolate(queue)
    torch.manual_seed(5)
    perm = torch.randperm(50)
    lam = beta_draw(1.6)
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, lam * queue + (1 - lam) * queue[perm])
    assert torch.equal(queue, before)
    assert mixed.norm(dim=1).mean() < 1  # interpolated random unit vectors shrink


def test_per_element_lambdas():
    cfg = FeatureTransformConfig(per_element="both")
    ft = FeatureTransform(cfg)
    q = F.normalize(torch.randn(6, 8, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(6, 8, dtype=torch.float64), dim=1)
    q_hat, _ = ft.extrapolate(q, k)
    lam = (q_hat - k) / (q - k)
    assert lam.min() > 1 and lam.max() < 2 and lam.std() > 0.05
    neg = torch.randn(40, 8, dtype=torch.float64)
    torch.manual_seed(1)
    mixed = ft.interpolate(neg)
    torch.manual_seed(1)
    perm = torch.randperm(40)
    moved = perm != torch.arange(40)  # rows the permutation left in place cannot reveal lambda
    lam_in = ((mixed - neg[perm]) / (neg - neg[perm]))[moved]
    assert lam_in.min() > 0 and lam_in.max() < 1 and lam_in.std() > 0.05


def test_postmix_norm_returns_unit_vectors():
    ft = FeatureTransform(FeatureTransformConfig(postmix_norm=True))
    q, k = F.normalize(torch.randn(4, 6), dim=1), F.normalize(torch.randn(4, 6), dim=1)
    q_hat, k_hat = ft.extrapolate(q, k)
    torch.testing.assert_close(q_hat.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(ft.interpolate(q).norm(dim=1), torch.ones(4))


def test_moco_queue_gets_unmixed_keys_and_keys_get_no_gradient():
    x = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    base, with_ft = moco(), moco(["ft"])
    out_b = base({"views": x})
    out_f = with_ft({"views": x})
    assert not torch.allclose(out_b["loss"], out_f["loss"])  # FT changed the scores...
    assert torch.equal(base.queue, with_ft.queue)  # ...but not what the queue received
    assert int(with_ft.queue_ptr) == 4
    out_f["loss"].backward()
    assert all(p.grad is None for p in with_ft.backbone_k.parameters())
    assert all(p.grad is None for p in with_ft.head_k.parameters())
    assert with_ft.backbone.conv1.weight.grad.abs().sum() > 0
    assert "feats" in out_f and out_f["feats"].shape == (4, with_ft.feat_dim)


def test_start_epoch_gate_and_checkpointed_epoch(tmp_path):
    x = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    base, gated = moco(), moco([{"name": "ft", "start_epoch": 1}])
    assert not gated.feature_transform.active  # epoch 1 is not > start_epoch 1
    assert torch.equal(base({"views": x})["loss"], gated({"views": x})["loss"])
    gated.on_epoch_end(1, tmp_path)
    assert gated.feature_transform.active and int(gated.state_dict()["feature_transform.epoch"]) == 2
    rec = json.loads((tmp_path / "scores.json").read_text())
    assert rec["epochs"][0]["ft_active"] is False and rec["generators"] == ["ft"]


def test_simclr_ft_equals_reference_scores():
    """Anchors scored as a_hat . p_hat (positive) and a_hat . c_hat_j (negatives)."""

    class Host(nn.Module):
        def __init__(self):
            super().__init__()
            self.feature_transform = FeatureTransform(FeatureTransformConfig())
            self.scores = ScoreTracker()

    n, t = 3, 0.5
    torch.manual_seed(0)
    z1 = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(8)
    loss, stats = simclr_loss(Host(), z1, z2, t)
    torch.manual_seed(8)
    lam_ex = 1.0 + beta_draw(2.0)
    perm = torch.randperm(2 * n)
    lam_in = beta_draw(1.6)
    rows = F.normalize(torch.cat([z1, z2]), dim=1)
    mixed = lam_in * rows + (1 - lam_in) * rows[perm]
    terms, pos_scores = [], []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        a_hat = lam_ex * rows[i] + (1 - lam_ex) * rows[p]
        p_hat = lam_ex * rows[p] + (1 - lam_ex) * rows[i]
        pos = a_hat @ p_hat
        c = float((rows[i] @ rows[p]).detach())
        assert float(pos.detach()) == pytest.approx(extrapolated_positive_score(c, lam_ex), abs=1e-10)
        negs = [a_hat @ mixed[j] for j in range(2 * n) if j not in (i, p)]
        s = torch.stack([pos, *negs]) / t
        terms.append(torch.logsumexp(s, 0) - s[0])
        pos_scores.append(float(pos.detach()))
    ref = torch.stack(terms).mean()
    torch.testing.assert_close(loss, ref)
    # Gradients (through both sides of the positive pair and the mixed candidates) match too.
    g, g_ref = torch.autograd.grad(loss, (z1, z2)), torch.autograd.grad(ref, (z1, z2))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)
    assert float(stats["score/pos_mean"]) == pytest.approx(np.mean(pos_scores), abs=1e-6)


@pytest.mark.parametrize(
    "method,positives,needle",
    [
        ({"name": "simsiam", "proj_dim": 8, "proj_hidden": 8, "pred_hidden": 4}, ["ft"], "no negatives"),
        ({"name": "moco", "queue_size": 16}, [{"name": "ft", "target": "both"}], "positives[0].target"),
        ({"name": "moco", "queue_size": 16}, [{"name": "ft", "neg_alpha": 0.0}], "neg_alpha"),
        ({"name": "moco", "queue_size": 16}, ["ft", {"name": "feature_transform"}], "duplicate"),
        (
            {"name": "moco", "queue_size": 16},
            [{"name": "ft", "target": "neg", "per_element": "pos"}],
            "per_element",
        ),
        ({"name": "simclr"}, [{"name": "ft", "start_epoch": -1}], "start_epoch"),
    ],
)
def test_invalid_ft_configs_raise_one_line_config_error(method, positives, needle):
    r = recipe(method, positives)
    m = build_method(r)
    with pytest.raises(ConfigError) as e:
        attach_positives(m, r)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_both_generators_together_on_moco():
    m = moco(["hallucinator", "ft"])
    out = m({"views": [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]})
    out["loss"].backward()
    assert int(m.queue_ptr) == 8 and m.hallucinator.mlp[0].weight.grad is not None
    assert {f"score/{k}" for k in ("pos_mean", "neg_mean", "neg_var", "pos_exp", "neg_exp")} <= set(out)
    assert all(out[k].ndim == 0 for k in out if k.startswith("score/"))


def test_score_stats_match_numpy_with_mask():
    rng = np.random.default_rng(0)
    pos, neg = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, (5, 7))
    valid = rng.uniform(size=(5, 7)) > 0.3
    valid[:, 0] = True
    got = score_stats(torch.tensor(pos), torch.tensor(neg), 0.2, torch.tensor(valid)).numpy()
    rows = [neg[i][valid[i]] for i in range(5)]
    want = [
        pos.mean(),
        pos.var(),
        np.mean([r.mean() for r in rows]),
        np.mean([r.var() for r in rows]),
        np.exp(pos / 0.2).mean(),
        np.mean([np.exp(r / 0.2).mean() for r in rows]),
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert len(STAT_KEYS) == 6


def test_tracker_writes_epochs_and_resumed_epochs_replace_old_ones(tmp_path):
    tr = ScoreTracker(bins=10)
    for _ in range(3):
        tr.update(
            torch.tensor([0.9, 0.8]),
            torch.tensor([[0.1, -0.2], [0.05, 0.3]]),
            0.2,
            torch.tensor([0.9, 0.8]),
            torch.tensor([[0.1, -0.2], [0.05, 0.3]]),
        )
    tr.write_epoch(1, tmp_path, {"method": "moco"})
    tr.update(torch.tensor([0.5]), torch.tensor([[0.0]]), 0.2, torch.tensor([0.5]), torch.tensor([[0.0]]))
    tr.write_epoch(2, tmp_path)
    tr.update(torch.tensor([0.6]), torch.tensor([[0.0]]), 0.2, torch.tensor([1.0001]), torch.tensor([[0.0]]))
    tr.write_epoch(2, tmp_path)  # a resumed run redoes epoch 2
    d = json.loads((tmp_path / "scores.json").read_text())
    assert [e["epoch"] for e in d["epochs"]] == [1, 2]
    e1 = d["epochs"][0]
    assert e1["steps"] == 3 and e1["pos_mean"] == pytest.approx(0.85)
    assert sum(e1["hist_pos"]) == 6 and sum(e1["hist_neg"]) == 12 and len(d["bins"]) == 11
    assert d["epochs"][1]["pos_mean"] == pytest.approx(0.6)
    assert d["epochs"][1]["hist_pos"][-1] == 1  # a cosine rounded above 1 still counts
