"""Compatibility matrix, AC/AM, criterion flags, update gain, heat map and the `compat matrix` CLI."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from selfsup.errors import DataError
from selfsup.eval.compatibility import (
    ac_am,
    compat_matrices,
    compat_matrix,
    compat_metrics,
    criterion_flags,
    plot_compat_matrix,
    update_gain,
)
from selfsup.eval.retrieval import retrieval_metrics

NAN = float("nan")
# Hand-made: (1,0) 0.6 > 0.5 yes; (2,0) 0.4 > 0.5 no; (2,1) 0.8 > 0.7 yes.
M = np.array([[0.5, NAN, NAN], [0.6, 0.7, NAN], [0.4, 0.8, 0.9]])


def test_ac_am_hand_made():
    ac, am = ac_am(M)
    assert ac == pytest.approx(2 / 3)
    assert am == pytest.approx((0.5 + 0.6 + 0.7 + 0.4 + 0.8 + 0.9) / 6)
    flags = criterion_flags(M)
    assert flags.tolist() == [[False, False, False], [True, False, False], [False, True, False]]


def test_criterion_is_strict_and_upper_triangle_ignored():
    tie = np.array([[0.5, 123.0], [0.5, 0.7]])  # M[1][0] == M[0][0]: not compatible
    ac, am = ac_am(tie)
    assert ac == 0.0
    assert am == pytest.approx((0.5 + 0.5 + 0.7) / 3)
    single = ac_am(np.array([[0.3]]))
    assert np.isnan(single[0]) and single[1] == pytest.approx(0.3)
    with pytest.raises(DataError):
        ac_am(np.array([[0.5, NAN], [NAN, 0.7]]))  # a missing lower-triangle cell


def test_update_gain():
    assert update_gain(0.4, 0.3, 0.6) == pytest.approx(1 / 3)
    assert update_gain(0.2, 0.3, 0.6) == pytest.approx(-1 / 3)
    assert np.isnan(update_gain(0.4, 0.3, 0.3))


def _models(n=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    centers = rng.normal(size=(5, 8))
    old = centers[y] + 1.2 * rng.normal(size=(n, 8))
    # A "compatible" new model: the old space (less noisy) plus 4 extra dims.
    new = np.concatenate([centers[y] + 0.6 * rng.normal(size=(n, 8)), rng.normal(size=(n, 4))], 1)
    indep = rng.normal(size=(n, 10))  # unrelated space
    return [old.astype(np.float32), new.astype(np.float32), indep.astype(np.float32)], y


def test_matrix_cells_equal_retrieval_protocol():
    feats, y = _models()
    mats = compat_matrices(feats, y)
    top1 = mats["top1"]
    assert np.isnan(top1[np.triu_indices(3, 1)]).all()
    for t in range(3):
        for i in range(t + 1):
            r = retrieval_metrics(feats[t], y, feats[i], y, slice_dims=True)
            assert top1[t, i] == pytest.approx(r["retrieval/top1"])
            assert mats["map"][t, i] == pytest.approx(r["retrieval/map"])
    np.testing.assert_allclose(compat_matrix(feats, y, "map"), mats["map"])
    flags = criterion_flags(top1)
    assert flags[1, 0]  # the compatible model beats old/old on the old gallery
    assert not flags[2, 0] and not flags[2, 1]  # the unrelated one does not


def test_matrix_refuses_mismatched_items_and_unsliced_dims():
    feats, y = _models()
    with pytest.raises(DataError, match="same test set"):
        compat_matrices([feats[0], feats[1][:-1]], y)
    with pytest.raises(DataError, match="cannot be compared"):
        compat_matrices(feats[:2], y, slice_dims=False)


def test_metrics_keys():
    mats = {"top1": M, "map": M * 0.5}
    out = compat_metrics(mats)
    assert out["compat/ac"] == pytest.approx(2 / 3)
    assert out["compat/am"] == pytest.approx(0.65)
    assert out["compat/top1/q2_g1"] == pytest.approx(0.8)
    assert out["compat/map/q1_g0"] == pytest.approx(0.3)
    assert out["compat/criterion/q2_g0"] == 0.0 and out["compat/criterion/q1_g0"] == 1.0
    assert "compat/top1/q0_g1" not in out  # upper triangle is not a cell
    json.dumps(out, allow_nan=False)  # metrics.json stays valid JSON


def test_heat_map_png(tmp_path):
    path = plot_compat_matrix(M, ["old", "mid", "new"], tmp_path / "compat.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(DataError, match="names"):
        plot_compat_matrix(M, ["a", "b"], tmp_path / "x.png")


def test_cli_compat_matrix(tmp_path, monkeypatch):
    """`selfsup compat matrix` wiring, with the checkpoint helpers replaced by fakes."""
    from selfsup.cli import main

    feats, y = _models()
    by_path = {"old.pt": feats[0], "new.pt": feats[1], "indep.pt": feats[2]}
    fake_features = types.ModuleType("selfsup.eval.features")
    fake_features.features_from_args = lambda ckpt, data, split, bs: (by_path[ckpt], y)
    fake_ckpt = types.ModuleType("selfsup.models.export")
    fake_ckpt.load_encoder = lambda path: (None, {"model_id": path[:-3], "fingerprint": path})
    monkeypatch.setitem(sys.modules, "selfsup.eval.features", fake_features)
    monkeypatch.setitem(sys.modules, "selfsup.models.export", fake_ckpt)

    out = tmp_path / "run"
    argv = ["compat", "matrix", "--models", "old.pt", "new.pt", "--data", "digits", "--out", str(out)]
    assert main(argv + ["--independent", "indep.pt"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ref = compat_matrices(feats[:2], y)
    assert metrics["compat/top1/q1_g0"] == pytest.approx(ref["top1"][1, 0])
    assert metrics["compat/ac"] == 1.0
    ind = retrieval_metrics(feats[2], y)["retrieval/top1"]
    assert metrics["compat/gain"] == pytest.approx(update_gain(ref["top1"][1, 0], ref["top1"][0, 0], ind))
    assert (out / "compat_top1.png").stat().st_size > 0 and (out / "compat_map.png").exists()
    assert main(["compat", "matrix", "--models", "old.pt", "--data", "digits", "--out", str(out)]) == 2
