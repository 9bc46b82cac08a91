"""Backbones, heads, momentum encoders, global BN, optimizers and schedules."""

import math

import pytest
import timm
import torch

from selfsup.engine.optim import LARS, WarmupCosine
from selfsup.errors import CheckpointError, ConfigError
from selfsup.models.backbones import create_backbone
from selfsup.models.export import arch_dict, export_encoder, load_backbone, load_encoder, timm_kwargs
from selfsup.models.momentum import momentum_copy, momentum_update
from selfsup.recipe import load_recipe
from selfsup.utils.dist import GlobalBatchNorm, convert_sync_bn


def test_width_and_cifar_stem():
    r = load_recipe({"model": {"backbone": "resnet18", "width": 8, "cifar_stem": True}})
    m = create_backbone(r.model)
    assert m.num_features == 64
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity)
    out = m(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 64)


def test_exported_plain_backbone_loads_into_timm(tmp_path):
    r = load_recipe({"model": {"backbone": "resnet18"}})
    m = create_backbone(r.model)
    export_encoder(tmp_path / "encoder.pt", m, arch_dict(r.model), {"model_id": "x"})
    sd = torch.load(tmp_path / "encoder.pt", weights_only=False)["encoder"]
    fresh = timm.create_model("resnet18", num_classes=0)
    fresh.load_state_dict(sd)  # strict: every key and shape matches plain timm
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(fresh.eval()(x), m.eval()(x))
    loaded, info = load_encoder(tmp_path / "encoder.pt")
    assert info["dim"] == 512 and len(info["fingerprint"]) == 16


@pytest.mark.parametrize("cifar_stem", [False, True])
def test_any_export_loads_with_one_call_as_plain_timm(tmp_path, cifar_stem):
    """Width and CIFAR stem included: load_backbone returns a timm ResNet giving the same features."""
    r = load_recipe({"model": {"backbone": "resnet18", "width": 8, "cifar_stem": cifar_stem}})
    m = create_backbone(r.model).eval()
    with torch.no_grad():  # move BN statistics away from their init so a mismatch would show
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
    export_encoder(tmp_path / "encoder.pt", m, arch_dict(r.model), {"model_id": "x"})
    loaded = load_backbone(tmp_path / "encoder.pt")
    assert isinstance(loaded, timm.models.resnet.ResNet) and not loaded.training
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x), m(x))
    if not cifar_stem:  # without the stem swap plain timm takes the weights too
        ckpt = torch.load(tmp_path / "encoder.pt", weights_only=False)
        plain = timm.create_model("resnet18", num_classes=0, **timm_kwargs(ckpt["arch"])).eval()
        plain.load_state_dict(ckpt["encoder"])
        assert torch.equal(plain(x), m(x))


def test_wrong_architecture_checkpoint_is_refused(tmp_path):
    small = load_recipe({"model": {"width": 4}}).model
    m = create_backbone(small)
    arch = arch_dict(small)
    arch["width"] = 8  # claims another architecture than its weights
    export_encoder(tmp_path / "e.pt", m, arch, {})
    with pytest.raises(CheckpointError, match="another architecture"):
        load_encoder(tmp_path / "e.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_encoder(tmp_path / "junk.pt")


def test_unknown_backbone_suggests():
    with pytest.raises(ConfigError, match="resnet18"):
        create_backbone(load_recipe({"model": {"backbone": "resnet-18"}}).model)


def test_momentum_update_formula():
    online = torch.nn.Linear(3, 2)
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    momentum_update(online, target, 0.9)
    for b, o, t in zip(before, online.parameters(), target.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)


def test_global_bn_is_plain_bn_on_one_process():
    bn = torch.nn.BatchNorm1d(4)
    bn.weight.data.uniform_()
    gbn = convert_sync_bn(torch.nn.Sequential(bn))[0]
    assert isinstance(gbn, GlobalBatchNorm)
    x = torch.randn(16, 4)
    assert torch.allclose(gbn(x), bn(x), atol=1e-6)
    assert torch.allclose(gbn.running_mean, bn.running_mean)
    assert gbn.weight.requires_grad and gbn.bias.requires_grad
    frozen = momentum_copy(torch.nn.Sequential(torch.nn.BatchNorm1d(4)))  # a teacher's BN stays frozen
    assert not any(p.requires_grad for p in convert_sync_bn(frozen).parameters())


def test_warmup_cosine_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "base_lr": 1.0}], lr=1.0)
    s = WarmupCosine(opt, total_steps=110, warmup_steps=10)
    lrs = []
    for _ in range(110):
        lrs.append(s.get_lr())
        s.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 100)))
    assert lrs[-1] < 0.01
    sd = s.state_dict()
    s2 = WarmupCosine(opt, 110, 10)
    s2.load_state_dict(sd)
    assert s2.get_lr() == s.get_lr()


def test_step_schedule_drops_at_milestones_after_warmup():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "base_lr": 0.03}], lr=0.03)
    s = WarmupCosine(opt, 200, 5, schedule="step", milestones=[120, 160], gamma=0.1)
    lrs = []
    for _ in range(200):
        lrs.append(s.get_lr())
        s.step()
    assert lrs[2] == pytest.approx(0.03 * 3 / 5)
    assert lrs[119] == pytest.approx(0.03) and lrs[120] == pytest.approx(0.003)
    assert lrs[159] == pytest.approx(0.003) and lrs[160] == pytest.approx(0.0003)


def test_lars_trust_ratio():
    w = torch.nn.Parameter(torch.full((4,), 2.0))
    b = torch.nn.Parameter(torch.full((1,), 2.0))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True}], lr=1.0, momentum=0.0, eta=0.1)
    w.grad, b.grad = torch.full((4,), 10.0), torch.full((1,), 10.0)
    opt.step()
    # adapted step = lr * eta * ||w|| / ||g|| * g = 0.1 * 4 / 20 * 10 = 0.2 per coordinate
    assert torch.allclose(w, torch.full((4,), 1.8))
    assert torch.allclose(b, torch.full((1,), -8.0))  # excluded: plain SGD step
