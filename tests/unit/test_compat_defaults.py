"""Issue 14: the defaults that kept the compat methods from showing their claims.

Each test fails on the previous behaviour: the supervised classifier and BCT's influence loss
worked on raw features (the BT-2/OCA code normalises them), BT² took f and u from the same
backbone features with label smoothing on its pseudo-classifier CE (the BT-2 code: f from the
first d_new of d_new + d_old features, plain CE), and OCA's recipe mapped a 64-d backbone linearly
to its 80-d feature (the OCA code widens the backbone's last stage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.compat.bct import BCTConfig, influence_loss
from selfsup.compat.bt2 import BT2Config, bt2_losses
from selfsup.compat.common import class_means
from selfsup.methods import build_method
from selfsup.models.compat_heads import BT2Head
from selfsup.recipe import load_recipe

from ..conftest import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]


class _Fixed(nn.Module):
    """A stand-in backbone that returns given features whatever the images."""

    def __init__(self, h: torch.Tensor) -> None:
        super().__init__()
        self.h = h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h


def _supervised(**method):
    recipe = tiny_recipe(method={"name": "supervised", "label_smoothing": 0.1, **method}, **{"data.views": 1})
    return build_method(load_recipe(recipe))


def _loss(m, h: torch.Tensor, y: torch.Tensor) -> float:
    m.backbone = _Fixed(h)
    with torch.no_grad():
        return float(m.training_step({"views": [torch.zeros(len(y), 3, 16, 16)], "label": y})["loss"])


def test_supervised_classifier_sees_normalised_features_without_bias_by_default():
    torch.manual_seed(0)
    m = _supervised()
    assert m.classifier.bias is None and m.export_info()["classifier"]["normalize"] is True
    h, y = torch.randn(12, m.feat_dim), torch.arange(12) % 10
    # Only the direction of the feature matters, as for the cosine retrieval that follows.
    assert _loss(m, 5.0 * h, y) == pytest.approx(_loss(m, h, y), rel=1e-6)
    raw = _supervised(normalize=False, bias=True)
    assert raw.classifier.bias is not None
    assert abs(_loss(raw, 5.0 * h, y) - _loss(raw, h, y)) > 1e-3


def test_bct_influence_loss_sees_directions_and_cannot_be_met_by_a_larger_norm():
    torch.manual_seed(0)
    P = class_means(torch.randn(60, 8), torch.arange(60) % 4, 4)  # [4, 8], rows of norm < 1
    feats, y = torch.randn(16, 12), torch.arange(16) % 4
    # BT-2/OCA normalise the new feature: scaling it changes nothing ...
    a, _ = influence_loss(feats, y, P, None, 0.1)
    b, _ = influence_loss(10 * feats, y, P, None, 0.1)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    # ... so the loss keeps pulling directions; on raw features, growing the norm of features that
    # are already classified right drives it towards zero without aligning them further.
    P = 0.8 * torch.eye(4, 8)  # well-separated class means
    right = P[y] + 0.05 * torch.randn(16, 8)
    raw_small, _ = influence_loss(right, y, P, None, 0.0, normalize=False)
    raw_big, _ = influence_loss(100 * right, y, P, None, 0.0, normalize=False)
    unit, _ = influence_loss(100 * right, y, P, None, 0.0)
    assert float(raw_big) < 0.01 < float(raw_small)
    assert float(unit) > 0.5  # logits are cosines times |P_c| <= 1: never saturated
    assert BCTConfig().normalize is None  # None: normalise for the pseudo-classifier (see attach)


def test_bt2_defaults_match_the_official_trainer():
    cfg = BT2Config()
    assert cfg.label_smoothing == 0.0 and cfg.new_dim is None
    torch.manual_seed(0)
    head = BT2Head(in_dim=16, new_dim=8, old_dim=8, extra=2, scale=2.0)
    parts = head.parts(torch.relu(torch.randn(6, 16)))
    y, pseudo = torch.arange(6) % 3, torch.randn(3, 8)
    t = bt2_losses(parts, torch.randn(6, 3), y, pseudo, torch.randn(6, 8), None, cfg.label_smoothing)
    plain = F.cross_entropy(F.normalize(parts["b"], dim=1) @ pseudo.t(), y)
    assert float(t["pseudo_ce"].detach()) == pytest.approx(float(plain.detach()), rel=1e-6)


def test_bt2_f_reads_only_the_first_new_dim_features_and_u_reads_all():
    torch.manual_seed(0)
    head = BT2Head(in_dim=16, new_dim=8, old_dim=8, extra=2, scale=2.0)
    z = torch.relu(torch.randn(4, 16))
    z2 = z.clone()
    z2[:, 8:] += 1.0  # the d_old features BT-2 reserves for the u branch
    p, p2 = head.parts(z), head.parts(z2)
    assert torch.equal(p["f"], p2["f"])
    assert not torch.allclose(p["u"], p2["u"])


def test_bt2_default_new_dim_is_backbone_minus_old_dim(tmp_path):
    from selfsup.compat.bt2 import attach
    from selfsup.errors import ConfigError

    old = _exported_encoder(tmp_path / "old.pt", width=4)  # 32-d
    teacher = _exported_encoder(tmp_path / "teacher.pt", width=4, seed=1)
    wide = _supervised_recipe(channels=[4, 8, 16, 64])
    m = build_method(wide)
    attach(m, wide, BT2Config(old=str(old), teacher=str(teacher)))
    head = m.extra_terms[-1].head
    assert (head.in_dim, head.new_dim, head.out_dim) == (64, 32, 32 + 8)
    narrow = _supervised_recipe()  # 32-d, as wide as the old model: no room for f and u apart
    with pytest.raises(ConfigError, match="d_new \\+ d_old"):
        attach(build_method(narrow), narrow, BT2Config(old=str(old), teacher=str(teacher)))


def _exported_encoder(path: Path, width: int, seed: int = 0) -> Path:
    """An untrained (random) backbone exported as an encoder.pt: enough to attach BT² to."""
    from selfsup.config import to_dict
    from selfsup.models.backbones import create_backbone
    from selfsup.models.export import arch_dict, export_encoder

    r = _supervised_recipe()
    r.model.width = width
    torch.manual_seed(seed)
    export_encoder(path, create_backbone(r.model), arch_dict(r.model), {"recipe": to_dict(r)})
    return path


def _supervised_recipe(channels=None):
    over = {"method": {"name": "supervised"}, "data.views": 1, "data.train_fraction": 0.05}
    if channels:
        over["model.kwargs"] = {"channels": channels}
    return load_recipe(tiny_recipe(**over))


@pytest.mark.parametrize("name, dim", [("new_bt2", 128), ("new_oca", 80), ("new_bct", 64)])
def test_replication_recipes_give_bt2_and_oca_their_own_feature_width(name, dim):
    from selfsup.models.backbones import create_backbone

    r = load_recipe(ROOT / "recipes" / "compat" / f"{name}.yaml")
    assert create_backbone(r.model).num_features == dim
    if name == "new_oca":  # h = the backbone's pooled output, no rank-64 linear map to 80 dims
        from selfsup.models.compat_heads import EmbedHead

        assert isinstance(EmbedHead(dim, 64 + 64 // 4).embed, nn.Identity)
    old = load_recipe(ROOT / "recipes" / "compat" / "old.yaml")
    assert create_backbone(old.model).num_features == 64
    assert set(np.asarray(old.data.classes) // 10) == set(range(7))
    assert set(np.asarray(old.data.classes) % 10) == set(range(7))
