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
    r["optim"]["lr"] = 0.02  # VICReg's terms are large at 25/25/1; keep the steps small and comparable
    compare_runs(tmp_path, r, ["data.batch_size=16"], ["data.batch_size=8"])
