"""OBoW: BoW targets, soft assignment, vocabulary queue, dynamic head, teacher schedule, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.losses.bow import bow_loss, bow_pool, perplexity, soft_assign, squared_distances
from selfsup.methods import build_method
from selfsup.methods.obow_parts import Vocabulary, WeightGenerator, sample_local_features
from selfsup.recipe import load_recipe

from ..conftest import tiny_recipe


def obow_recipe(**over):
    """16 px digits for the student, a 24 px plain view for the teacher (layer3 6x6, layer4 3x3)."""
    r = tiny_recipe(
        **{
            "method": {"name": "obow", "num_words": 48, "inv_delta": 10.0, "kappa": 5.0, "border": 0},
            "data.augment.local_views": 2,
            "data.augment.local_size": 8,
            "data.augment.plain_views": 1,
            "data.augment.plain_size": 24,
        }
    )
    for k, v in over.items():
        node = r
        *path, last = k.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    return load_recipe(r)


def _batch(recipe, n: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    a, d = recipe.data.augment, recipe.data
    sizes = [d.image_size] * d.views + [a.local_size] * a.local_views + [a.plain_size] * a.plain_views
    return {
        "views": [torch.randn(n, 3, s, s, generator=g) for s in sizes],
        "label": torch.zeros(n, dtype=torch.long),
        "index": torch.arange(n),
    }


# -- pure target and loss functions ---------------------------------------------------------------
def test_soft_assignment_equals_hand_computation():
    # One image, 2 channels, a 1x2 map; 3 words.
    feats = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # locations u0 = (1, 0), u1 = (0, 2)
    words = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d = squared_distances(feats, words)
    hand_d = [[0.0, 2.0, 1.0], [5.0, 1.0, 2.0]]  # ||u - w||^2 for u0, u1
    assert d.shape == (1, 3, 1, 2)
    for u in range(2):
        for k in range(3):
            assert d[0, k, 0, u].item() == pytest.approx(hand_d[u][k], abs=1e-6)
    inv_delta, mu = 10.0, 4.0  # softmax_k(-(10 / 4) d)
    codes = soft_assign(d, inv_delta, mu)
    for u in range(2):
        e = [math.exp(-2.5 * x) for x in hand_d[u]]
        for k in range(3):
            assert codes[0, k, 0, u].item() == pytest.approx(e[k] / sum(e), rel=1e-5)
    # max over the two locations, then L1 normalisation
    mx = [max(codes[0, k, 0, 0].item(), codes[0, k, 0, 1].item()) for k in range(3)]
    bow = bow_pool(codes, "max")
    assert bow[0].tolist() == pytest.approx([m / sum(mx) for m in mx], rel=1e-5)
    hard = soft_assign(d, None, mu)  # nearest word: u0 -> w0, u1 -> w1
    assert hard[0, :, 0, 0].tolist() == [1, 0, 0] and hard[0, :, 0, 1].tolist() == [0, 1, 0]


@pytest.mark.parametrize("pool,inv_delta", [("max", 15.0), ("avg", 10.0), ("max", None)])
def test_bow_targets_are_non_negative_and_l1_normalised(pool, inv_delta):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 8, 4, 3, generator=g).relu()
    words = torch.randn(32, 8, generator=g).clamp(min=0)
    d = squared_distances(feats, words)
    ref = ((feats.permute(0, 2, 3, 1)[:, :, :, None, :] - words) ** 2).sum(-1).permute(0, 3, 1, 2)
    torch.testing.assert_close(d, ref, atol=1e-4, rtol=1e-5)
    bow = bow_pool(soft_assign(d, inv_delta, d.amin(1).mean()), pool)
    assert bow.shape == (5, 32)
    assert (bow >= 0).all()
    torch.testing.assert_close(bow.sum(1), torch.ones(5))
    perp_batch, perp_image = perplexity(bow)
    assert 1.0 <= perp_image <= perp_batch <= 32.0 + 1e-3


def test_bow_loss_is_kl_and_soft_cross_entropy_up_to_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 10, generator=g)
    target = F.softmax(torch.randn(6, 10, generator=g), 1)
    ce = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    entropy = -(target * target.log()).sum(1).mean()
    assert bow_loss(logits, target).item() == pytest.approx((ce - entropy).item(), rel=1e-5)
    assert bow_loss(target.log(), target).item() == pytest.approx(0.0, abs=1e-6)


# -- vocabulary queue ---------------------------------------------------------------------------
def test_vocabulary_queue_is_fifo_in_global_batch_blocks():
    torch.manual_seed(0)
    v = Vocabulary(num_words=12, dim=3)
    assert v.words.shape == (12, 3) and (v.words >= 0).all()  # N(0, 1) clamped at 0
    assert int(v.ptr) == 0 and float(v.mu) == 0.5
    blocks = [torch.full((4, 3), float(i + 1)) for i in range(5)]
    for i, blk in enumerate(blocks):
        v.enqueue(blk)
        assert v.words.shape == (12, 3)  # the size never changes
        assert int(v.ptr) == (4 * (i + 1)) % 12
    # after 5 blocks of 4 in 12 slots: the oldest blocks (1, 2) were overwritten by 4, 5
    assert v.words[:, 0].tolist() == [4.0] * 4 + [5.0] * 4 + [3.0] * 4
    with pytest.raises(RuntimeError):
        v.enqueue(torch.zeros(5, 3))  # 12 is not a multiple of 5
    v.update_mu(torch.tensor(1.5))
    assert float(v.mu) == pytest.approx(0.99 * 0.5 + 0.01 * 1.5)


def test_local_average_sample_is_the_3x3_mean_at_the_drawn_location():
    g = torch.Generator().manual_seed(2)
    fmap = torch.randn(2, 4, 5, 6, generator=g)
    where = torch.tensor([0, 11])  # pooled map is 3x4: image 0 at (0, 0), image 1 at (2, 3)
    got = sample_local_features(fmap, "local_average", where)
    torch.testing.assert_close(got[0], fmap[0, :, 0:3, 0:3].mean((1, 2)))
    torch.testing.assert_close(got[1], fmap[1, :, 2:5, 3:6].mean((1, 2)))
    torch.testing.assert_close(sample_local_features(fmap, "no_averaging", where)[1], fmap[1, :, 1, 5])


def test_one_step_order_distances_with_old_words_then_mu_then_enqueue():
    recipe = obow_recipe()
    torch.manual_seed(0)
    m = build_method(recipe)
    m.total_steps = 10
    batch = _batch(recipe)
    old = [v.words.clone() for v in m.vocab]
    old_mu = [float(v.mu) for v in m.vocab]
    seen = {}
    targets_fn = m.targets

    def spy(x):
        seen["teacher"] = [p.clone() for p in m.teacher.parameters()]
        t, pooled, logs = targets_fn(x)
        seen["targets"] = t
        return t, pooled, logs

    m.targets = spy
    m.train()
    student_before = [p.detach().clone() for p in m.backbone.parameters()]
    teacher_before = [p.clone() for p in m.teacher.parameters()]
    m(batch)
    # EMA happened before the targets, with alpha(0) = 0.99
    for s, t0, t in zip(student_before, teacher_before, seen["teacher"]):
        torch.testing.assert_close(t, 0.99 * t0 + 0.01 * s)
    # recompute the step by hand with the updated teacher and the OLD vocabulary
    from selfsup.methods.obow_parts import stage_maps

    with torch.no_grad():
        maps, _ = stage_maps(m.teacher, batch["views"][-1], m.stages)
    m.step.zero_()  # the locations were drawn for step 0
    for lvl, (fmap, vocab) in enumerate(zip(maps, m.vocab)):
        d = squared_distances(fmap, old[lvl])
        mu = 0.99 * old_mu[lvl] + 0.01 * d.amin(1).mean().item()
        assert float(vocab.mu) == pytest.approx(mu, rel=1e-5)
        expected = bow_pool(soft_assign(d, 10.0, mu), "max")
        torch.testing.assert_close(seen["targets"][lvl], expected, atol=1e-5, rtol=1e-4)
        assert int(vocab.ptr) == 16  # one row per image
        torch.testing.assert_close(vocab.words[16:], old[lvl][16:])  # the rest untouched
        where = m._location_draws(lvl, 16, (fmap.shape[2] - 2) * (fmap.shape[3] - 2))
        torch.testing.assert_close(vocab.words[:16], sample_local_features(fmap, "local_average", where))


# -- dynamic head and teacher --------------------------------------------------------------------
def test_generated_weights_are_l2_normalised_and_kappa_scales_logits():
    torch.manual_seed(0)
    gen = WeightGenerator(in_dim=6, out_dim=5, hidden=10, kappa=5.0)
    words = torch.randn(40, 6).clamp(min=0) * 7
    w = gen.weights(words)
    assert w.shape == (40, 5)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(40))
    f = torch.randn(3, 5) * 3  # the student's feature is not normalised
    torch.testing.assert_close(gen(f, words), 5.0 * f @ w.T)
    assert not gen.kappa.requires_grad  # fixed, as in the paper
    assert WeightGenerator(6, 5, 10, 5.0, learn_kappa=True).kappa.requires_grad
    # the generator is trained: the loss reaches its layers but never the vocabulary
    words.requires_grad_(False)
    gen(f, words).sum().backward()
    assert gen.fc1.weight.grad is not None and gen.fc2.weight.grad.abs().sum() > 0


def test_teacher_momentum_follows_the_cosine_schedule():
    recipe = obow_recipe()
    m = build_method(recipe)
    m.total_steps = 8
    expected = [1 - 0.01 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(9)]
    assert [m.teacher_momentum(k) for k in range(9)] == pytest.approx(expected)
    assert m.teacher_momentum(0) == pytest.approx(0.99) and m.teacher_momentum(8) == pytest.approx(1.0)
    assert m.teacher_momentum(4) == pytest.approx(0.995)
    # the EMA really applies alpha(step) at each step
    batch = _batch(recipe)
    for k in range(3):
        s = [p.detach().clone() for p in m.backbone.parameters()]
        t0 = [p.clone() for p in m.teacher.parameters()]
        out = m(batch)
        assert out["teacher_momentum"] == pytest.approx(expected[k])
        a = expected[k]
        # parameters changed only through the EMA (no optimizer step here)
        for p_s, p_t0, p_t in zip(s, t0, m.teacher.parameters()):
            torch.testing.assert_close(p_t, a * p_t0 + (1 - a) * p_s)
        with torch.no_grad():  # move the student so that the next EMA has something to do
            for p in m.backbone.parameters():
                p.add_(0.01)
    const = build_method(obow_recipe(**{"method.momentum_cosine": False}))
    const.total_steps = 8
    assert const.teacher_momentum(5) == 0.99


def test_loss_shapes_and_backward_reach_student_and_generators_only():
    recipe = obow_recipe()
    torch.manual_seed(0)
    m = build_method(recipe)
    m.total_steps = 4
    out = m(_batch(recipe))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert out["loss"].item() == pytest.approx((out["loss_global"] + out["loss_local"]).item(), rel=1e-6)
    out["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())
    assert all(g.fc1.weight.grad is not None for g in m.generators)
    assert {"perp_batch_l0", "perp_image_l1"} <= set(out)


# -- bad input ----------------------------------------------------------------------------------
def test_vocabulary_size_must_divide_by_the_global_batch():
    build_method(obow_recipe(**{"method.num_words": 48}))  # 48 = 3 x 16
    for bad, batch in ((48, 32), (40, 16)):  # the global batch, whatever the number of processes
        with pytest.raises(
            ConfigError, match=rf"num_words={bad} must be a multiple of the global batch"
        ) as e:
            obow_recipe(**{"method.num_words": bad, "data.batch_size": batch})
        assert "\n" not in str(e.value)
    build_method(obow_recipe(**{"method.num_words": 64, "data.batch_size": 32}))


@pytest.mark.parametrize(
    "over,match",
    [
        ({"data.augment.local_views": 0}, "local_views"),
        ({"data.augment.plain_views": 0}, "plain_views=1"),
        ({"method.border": 1}, "too small"),  # layer4 3x3 at 24 px, 1x1 after the border
        ({"method.levels": [-2, 7]}, "method.levels"),
        ({"method.bow_pool": "sum"}, "bow_pool"),
        (
            {"model.backbone": "vit_tiny_patch16_224", "model.cifar_stem": False, "model.width": None},
            "ResNet",
        ),
    ],
)
def test_bad_configs_are_refused_with_one_sentence(over, match):
    with pytest.raises(ConfigError, match=match) as e:
        build_method(obow_recipe(**over))
    assert "\n" not in str(e.value)
