"""FT's collapse: the first-order mechanism, the invariance gate, collapse warnings and plots."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from selfsup.methods import build_method
from selfsup.positives.attach import attach_positives
from selfsup.positives.feature_transform import (
    FeatureTransform,
    FeatureTransformConfig,
    critical_invariance,
    mean_stretch,
)
from selfsup.positives.hooks import epoch_end
from selfsup.positives.score_stats import ScoreTracker
from selfsup.recipe import load_recipe
from selfsup.report.collapse import collapse_summary, collapsed_epochs, is_collapsed, view_invariance
from selfsup.report.scores import plot_scores, run_warnings


def near_collapse(rho: float, d: int = 16, k: int = 256, eps: float = 1e-3, seed: int = 0):
    """Unit vectors within ``eps`` of e_0: a query (raw, with grad), its key, a queue.

    The query's and key's deviations have unit norm and correlation ``rho``; the queue's
    deviations come in +- pairs, so their mean is exactly 0.
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.zeros(d, dtype=torch.float64)
    v[0] = 1.0

    def tangent(n):
        x = torch.randn(n, d, dtype=torch.float64, generator=g)
        x[:, 0] = 0
        return F.normalize(x, dim=1)

    dq, z = tangent(2)
    z = F.normalize(z - (z @ dq) * dq, dim=0)
    dk = rho * dq + (1 - rho**2) ** 0.5 * z
    dev = tangent(k // 2)
    queue = F.normalize(v + eps * torch.cat([dev, -dev]), dim=1)
    q_raw = (v + eps * dq).clone().requires_grad_()
    return q_raw, F.normalize(v + eps * dk, dim=0), queue, dq


def growth(rho: float, lam: float | None, t: float = 0.2) -> float:
    """Rate at which one gradient-descent step grows the query's deviation (> 0: grows)."""
    q_raw, k, queue, dq = near_collapse(rho)
    q = F.normalize(q_raw, dim=0)[None]
    k = k[None]
    if lam is not None:
        ft = FeatureTransform(FeatureTransformConfig(target="pos"))
        ft._draw = lambda alpha, shape=(), device=None: lam - 1.0  # lam_ex = 1 + draw, fixed
        q, k = ft.extrapolate(q, k)
    logits = torch.cat([(q * k).sum(1), (q @ queue.T)[0]]) / t
    loss = -torch.log_softmax(logits, 0)[0]
    (g,) = torch.autograd.grad(loss, q_raw)
    return float(-(g @ dq))


@pytest.mark.parametrize("lam", [1.25, 1.5, 2.0])
def test_extrapolation_contracts_a_near_collapse_below_the_critical_invariance(lam):
    crit = critical_invariance(lam=lam)
    assert crit == pytest.approx(1 - lam / (lam**2 + (1 - lam) ** 2))
    assert growth(crit - 0.08, lam) < 0 < growth(crit + 0.08, lam)
    # Plain InfoNCE spreads the embedding at any positive correlation of the views.
    assert growth(0.05, None) > 0 and growth(-0.05, None) < 0
    assert growth(0.05, lam) < 0  # where FT pulls the same embedding into the collapse


def test_mean_stretch_and_critical_invariance_match_monte_carlo():
    torch.manual_seed(0)
    for cfg in (FeatureTransformConfig(), FeatureTransformConfig(pos_alpha=0.5, distribution="uniform")):
        if cfg.distribution == "uniform":
            u = torch.rand(400_000, dtype=torch.float64)
        else:
            a = torch.tensor(cfg.pos_alpha, dtype=torch.float64)
            u = torch.distributions.Beta(a, a).sample((400_000,))
        lam = 1 + u
        s = lam**2 + (1 - lam) ** 2
        assert mean_stretch(cfg) == pytest.approx(float(s.mean()), rel=2e-3)
        assert critical_invariance(cfg) == pytest.approx(1 - float(lam.mean() / s.mean()), abs=2e-3)
    assert critical_invariance(FeatureTransformConfig()) == pytest.approx(1 - 1.5 / 2.6)
    assert critical_invariance(FeatureTransformConfig(target="neg")) == 0.0


def rec(epoch: int, pos: float, neg: float, **extra) -> dict:
    return {"epoch": epoch, "pos_cos": pos, "neg_cos": neg, **extra}


def test_collapse_check_and_view_invariance():
    assert is_collapsed(rec(1, 0.99, 0.98)) and not is_collapsed(rec(1, 0.99, 0.5))
    assert not is_collapsed(rec(1, 0.5, 0.95))
    assert is_collapsed({"epoch": 1, "pos_mean": 0.95, "neg_mean": 0.93})  # files without cosines
    assert view_invariance(rec(1, 0.8, 0.0)) == pytest.approx(0.8)
    assert view_invariance(rec(1, 0.5, 0.5)) == pytest.approx(0.0)
    assert view_invariance(rec(1, 1.0, 1.0)) is None
    data = {"epochs": [rec(1, 0.9, 0.5), rec(2, 0.99, 0.97, ft_active=True), rec(3, 1.0, 1.0)]}
    assert collapsed_epochs(data) == [2, 3]
    line = collapse_summary(data)
    assert line.startswith("2 of 3 epochs collapsed (epochs 2..3)") and "FT" in line
    assert collapse_summary({"epochs": [rec(1, 0.9, 0.5)]}) is None


def tiny(positives, method=None):
    r = load_recipe(
        {
            "data": {"source": "digits", "batch_size": 4},
            "model": {"backbone": "resnet18", "cifar_stem": True, "width": 4},
            "method": method or {"name": "moco", "queue_size": 32, "dim": 16},
            "positives": positives,
            "train": {"epochs": 3},
        }
    )
    torch.manual_seed(0)
    m = build_method(r)
    attach_positives(m, r)
    return m


def feed(tracker: ScoreTracker, pos: float, neg: float) -> None:
    p = torch.full((4,), pos)
    n = torch.full((4, 6), neg)
    tracker.update(p, n, 0.2, p, n)


def test_invariance_gate_opens_and_closes_with_the_statistics_and_is_checkpointed(tmp_path):
    m = tiny([{"name": "ft", "min_invariance": 0.5}])
    ft = m.feature_transform
    assert not ft.active  # closed until an epoch has shown enough invariance
    feed(m.scores, 0.8, 0.2)  # rho = 1 - 0.2 / 0.8 = 0.75
    epoch_end(m, 1, tmp_path)
    assert ft.active and int(ft.epoch) == 2
    state = {k: v.clone() for k, v in m.state_dict().items()}
    feed(m.scores, 0.5, 0.2)  # rho = 0.375
    epoch_end(m, 2, tmp_path)
    assert not ft.active
    feed(m.scores, 0.999, 0.997)  # collapsed: rho (0.67 here) is noise and must not open the gate
    epoch_end(m, 3, tmp_path)
    assert not ft.active
    resumed = tiny([{"name": "ft", "min_invariance": 0.5}])
    resumed.load_state_dict(state)
    assert resumed.feature_transform.active  # the gate's state is part of the checkpoint
    d = json.loads((tmp_path / "scores.json").read_text())
    assert [e["invariance"] for e in d["epochs"]][:2] == pytest.approx([0.75, 0.375])
    assert d["ft_critical_invariance"] == pytest.approx(critical_invariance(FeatureTransformConfig()))


def test_ungated_ft_is_unchanged_by_the_statistics(tmp_path):
    m = tiny(["ft"])
    feed(m.scores, 0.3, 0.2)
    epoch_end(m, 1, tmp_path)
    assert m.feature_transform.active  # official behaviour: start_epoch alone decides
    assert "feature_transform.gate_open" not in m.state_dict()  # old checkpoints still resume


def test_collapse_and_invariance_warnings_go_to_the_log_scores_and_report(tmp_path, capsys):
    m = tiny(["ft"])
    feed(m.scores, 0.6, 0.5)  # rho = 0.2 < 0.42: FT contracts; warned once
    epoch_end(m, 1, tmp_path)
    feed(m.scores, 0.99, 0.97)  # collapsed
    epoch_end(m, 2, tmp_path)
    feed(m.scores, 0.999, 0.999)
    epoch_end(m, 3, tmp_path)
    err = capsys.readouterr().err.splitlines()
    warn = [e for e in err if e.startswith("warning: ")]
    assert len(warn) == 3, err
    assert "view invariance 0.20 is below 0.42" in warn[0]
    assert "collapse at epoch 2" in warn[1] and "FT" in warn[1]
    assert warn[2] == "warning: epoch 3 still collapsed (mean cosine pos 0.999, neg 0.999)"
    d = json.loads((tmp_path / "scores.json").read_text())
    assert [e["collapsed"] for e in d["epochs"]] == [False, True, True]
    notes = run_warnings(tmp_path)
    assert notes[0].startswith("2 of 3 epochs collapsed (epochs 2..3)") and "view invariance" in notes[1]
    assert (tmp_path / "scores.png").stat().st_size > 10_000  # drawn at the recipe's last epoch


def test_plot_scores_marks_collapse_and_reads_old_files(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    bins = torch.linspace(-1, 1, 11).tolist()
    epochs = [
        {"epoch": e, "pos_mean": p, "neg_mean": n, "pos_var": 0.0, "neg_var": 0.0, "pos_exp": 1.0,
         "neg_exp": 1.0, "hist_pos": [0] * 9 + [5], "hist_neg": [0] * 9 + [5]}
        for e, p, n in [(1, 0.8, 0.4), (2, 0.99, 0.99)]
    ]  # fmt: skip
    (run / "scores.json").write_text(json.dumps({"bins": bins, "epochs": epochs}))
    out = plot_scores([run], tmp_path / "s.png")
    assert out.stat().st_size > 10_000
    assert run_warnings(run)[0].startswith("1 of 2 epochs collapsed (epoch 2)")
    # The run report leads with the warning.
    from selfsup.report.run_report import write_run_report

    (run / "metrics.json").write_text(json.dumps({"train/steps": 2.0}))
    report = write_run_report(run).read_text()
    assert "## Warnings" in report and "collapse at epoch 2" in report
    assert report.index("## Warnings") < report.index("## Training")


def test_moco_negative_cosines_skip_queue_slots_never_written():
    m = tiny([])
    x = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    m({"views": x})  # step 0 writes slots 0..3
    seen = {}
    orig = m.scores.update

    def spy(pos, neg, temperature, pos_cos, neg_cos, **kw):
        seen["neg_cos"] = neg_cos
        return orig(pos, neg, temperature, pos_cos, neg_cos, **kw)

    m.scores.update = spy
    queue = m.queue.clone()
    m.eval()  # same BN statistics for the reference projection below
    with torch.no_grad():
        q = F.normalize(m.query(x[0]), dim=1)
    m({"views": x})
    # Only the 4 keys written by step 0 are real negatives; the other 28 are random vectors.
    torch.testing.assert_close(seen["neg_cos"], q @ queue[:4].T)
