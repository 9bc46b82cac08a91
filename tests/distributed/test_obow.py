"""OBoW under ``accelerate launch``: 2 processes equal 1, and a few steps lower the loss.

Reuses the launch-and-compare helpers of :mod:`tests.distributed.test_equivalence`. What must hold for
the runs to match: vocabulary rows gathered in rank order, the random enqueue locations drawn for
the global batch, ``mu`` from the all-reduced mean distance, student and teacher BN over the global
batch, and the queue's divisibility checked against the global batch.
"""

from __future__ import annotations

import pytest
import torch

from ..conftest import write_recipe
from .test_equivalence import _launch, _losses, _recipe, compare_runs

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def _obow(num_words: int = 64) -> dict:
    r = _recipe({"name": "obow", "num_words": num_words, "inv_delta": 10.0, "kappa": 5.0, "border": 0})
    aug = r["data"]["augment"]
    aug.update({"local_views": 2, "local_size": 8, "plain_views": 1, "plain_size": 24})
    return r


@pytest.mark.timeout(900)
def test_obow_two_processes_equal_one(tmp_path):
    # 4 steps of 16 images into 64-word queues: the queues wrap exactly once.
    s1, s2 = compare_runs(tmp_path, _obow())  # global batch 16: 16 on one process, 8 each on two
    for lvl in (0, 1):
        assert torch.allclose(s1[f"vocab.{lvl}.words"], s2[f"vocab.{lvl}.words"], atol=1e-4)
        assert torch.allclose(s1[f"vocab.{lvl}.mu"], s2[f"vocab.{lvl}.mu"], atol=1e-6)
        assert int(s1[f"vocab.{lvl}.ptr"]) == int(s2[f"vocab.{lvl}.ptr"]) == 0
    assert any(k.startswith("teacher.") for k in s1)


@pytest.mark.timeout(600)
def test_obow_a_few_steps_lower_the_loss(tmp_path):
    r = _obow(num_words=128)
    r["train"]["max_steps"] = 24
    r["train"]["epochs"] = 2  # 16 steps of 16 per epoch at train_fraction 0.2
    r["optim"]["lr"] = 0.05
    path = write_recipe(tmp_path / "r.yaml", r)
    _launch(path, tmp_path / "run", 1, [])
    losses = _losses(tmp_path / "run")
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.7 * first, losses
