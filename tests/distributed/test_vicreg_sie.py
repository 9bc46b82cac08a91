"""VICReg and SIE: 2 processes (``accelerate launch``, gloo) equal 1 process on the same global batch.

Variance and covariance are statistics of the global batch (embeddings gathered with gradient),
the invariance and prediction terms are local means that DDP's gradient averaging turns into
global ones, and BN is global (SyncBN): losses and weights must match to float rounding.
"""

from __future__ import annotations

import pytest

from .test_equivalence import _recipe, compare_runs

pytestmark = [pytest.mark.dist, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_vicreg_two_processes_equal_one(tmp_path):
    r = _recipe({"name": "vicreg", "mlp": [32, 32, 32], "sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0})
    # The loss is ~20 at 25/25/1: float32 rounding of the two summation orders (1e-6 relative at
    # step 1) grows with every SGD step, so small steps and a loss tolerance relative to its size.
    r["optim"]["lr"] = 0.01
    compare_runs(tmp_path, r, atol=5e-4)


@pytest.mark.timeout(900)
def test_sie_two_processes_equal_one(tmp_path):
    # Pairs of renders: both processes draw the same views as the single process (hash of seed,
    # epoch, object), the prediction variance and the covariance of the concatenation are global.
    from selfsup.data.render3d import render_dataset

    from ..unit.test_pairs import pair_recipe

    root = tmp_path / "render"
    render_dataset(root, 3, 20, 4, 32, seed=0, progress=False)  # 48 train objects: 3 global batches of 16
    # Rotation + colour conditioning and the deep hypernetwork: every path of the paper's SIE and more.
    method = {"name": "sie", "equi_dims": 16, "mlp": [32, 32, 32], "transform": "rotation_color", "hypernetwork": "deep"}
    r = pair_recipe(root, method, image_size=16)
    # A CIFAR-stem ResNet keeps 2x2 maps in layer4: BN over 4 positions x 16 images instead of a
    # 1x1 map, where nearly constant channels amplify float rounding by orders of magnitude.
    r["model"] = {"backbone": "resnet18", "cifar_stem": True, "width": 4}
    r["train"] = {"epochs": 2, "max_steps": 4, "log_every": 1, "progress": False}
    # SGD with small steps, not the paper's Adam: Adam rescales the pure-rounding gradient of the
    # expanders' biases before BN (zero in exact arithmetic) into full-size steps, and large steps
    # amplify float32 rounding (1e-7 relative at step 1) from step to step.
    r["optim"] = {"name": "sgd", "lr": 0.01, "lr_scaling": "none", "schedule": "constant"}
    r["data"]["batch_size"] = 16  # the global batch: 16 on one process, 8 on each of two
    compare_runs(tmp_path, r)
