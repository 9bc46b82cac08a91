"""Backfill-free gallery index: build, query, progressive upgrade, crash safety, corruption, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from selfsup import index as ix
from selfsup.errors import IndexError_, UserError

N, D_OLD, D_NEW = 60, 8, 12
OLD = {"model_id": "old", "fingerprint": "fp-old", "dim": D_OLD, "compatible_with": []}
NEW = {"model_id": "new", "fingerprint": "fp-new", "dim": D_NEW, "compatible_with": ["fp-old"]}
OTHER = {"model_id": "other", "fingerprint": "fp-other", "dim": D_OLD, "compatible_with": []}


@pytest.fixture()
def feats():
    rng = np.random.default_rng(0)
    old = rng.normal(size=(N, D_OLD)).astype(np.float32)
    # The new model's first D_OLD dims live in the old space (compatible), then 4 extra dims.
    new = np.concatenate([old + 0.05 * rng.normal(size=old.shape), rng.normal(size=(N, 4))], 1)
    return old, new.astype(np.float32)


@pytest.fixture()
def built(tmp_path, feats):
    d = tmp_path / "idx"
    ix.build(d, feats[0], [f"item{i}" for i in range(N)], OLD, labels=np.arange(N) % 3)
    return d


def _self_top1(d, q, model):
    res = ix.query(d, q, model, k=1)
    return res.item_ids[:, 0].tolist() == [f"item{i}" for i in range(len(q))]


def test_build_and_query(built, feats):
    info = ix.info(built)
    assert info["count"] == N and info["dim"] == D_OLD and info["fraction_upgraded"] == 1.0
    assert info["models"][0]["fingerprint"] == "fp-old" and info["verified"]
    res = ix.query(built, feats[0], OLD, k=5)
    assert res.scores.shape == (N, 5) and res.item_ids.shape == (N, 5)
    assert _self_top1(built, feats[0], OLD)
    np.testing.assert_allclose(res.scores[:, 0], 1.0, atol=1e-5)  # cosine of an item with itself
    assert (np.diff(res.scores, axis=1) <= 1e-6).all()  # best first


def test_build_from_embed_callable_and_refuses_overwrite(tmp_path, feats):
    calls = []

    def embed(ids):
        calls.append(len(ids))
        return feats[0][ids]

    d = tmp_path / "cb"
    ix.build(d, embed, list(range(N)), OLD, batch_size=16)
    assert calls == [16, 16, 16, 12]
    assert ix.query(d, feats[0][:3], OLD, k=1).item_ids[:, 0].tolist() == [0, 1, 2]
    with pytest.raises(IndexError_, match="already exists"):
        ix.build(d, feats[0], list(range(N)), OLD)


def test_progressive_upgrade_killed_midway_then_completed(built, feats):
    old, new = feats
    state = {"batches": 0}

    def flaky_embed(ids):
        state["batches"] += 1
        if state["batches"] == 2:
            raise KeyboardInterrupt  # the process is killed while embedding the second batch
        return new[[int(i[4:]) for i in ids]]

    with pytest.raises(KeyboardInterrupt):
        ix.upgrade(built, flaky_embed, NEW, budget_fraction=0.5, batch_size=10, commit_every=10)
    info = ix.info(built)  # verifies checksums: still a valid index
    assert info["fraction_upgraded"] == pytest.approx(10 / N)  # first batch committed
    # Mixed old/new index answers queries from the new (compatible) model.
    res = ix.query(built, new, NEW, k=1)
    assert set(res.versions.ravel()) <= {0, 1}
    assert _self_top1(built, new, NEW)

    def embed(ids):
        return new[[int(i[4:]) for i in ids]]

    r = ix.upgrade(built, embed, NEW, budget_fraction=0.5, batch_size=10)
    assert r["upgraded"] == 30 and r["fraction_upgraded"] == pytest.approx(40 / N) and not r["done"]
    r = ix.upgrade(built, embed, NEW, budget_fraction=0.5)
    assert r["done"] and r["fraction_upgraded"] == 1.0 and r["upgraded"] == 20
    assert ix.upgrade(built, embed, NEW, budget_fraction=0.5)["upgraded"] == 0
    res = ix.query(built, new, NEW, k=1)
    assert (res.versions == 1).all() and _self_top1(built, new, NEW)
    # Stored vectors are the new model's compatible sub-space, normalised.
    expect = new[:, :D_OLD] / np.linalg.norm(new[:, :D_OLD], axis=1, keepdims=True)
    np.testing.assert_allclose(res.scores[:, 0], (expect * expect).sum(1), atol=1e-5)
    # The old model can no longer query a gallery embedded by the new one.
    with pytest.raises(IndexError_, match="not compatible"):
        ix.query(built, old, OLD, k=1)


def test_upgrade_killed_at_commit_leaves_old_index(built, feats, monkeypatch):
    _, new = feats
    before = ix.info(built)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("index.json"):
            raise OSError("killed before the metadata rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="killed"):
        ix.upgrade(built, (["item0", "item1", "item2"], new[:3]), NEW, budget_fraction=1.0)
    monkeypatch.setattr(os, "replace", real_replace)
    after = ix.info(built)
    assert after["index_sha256"] == before["index_sha256"] and after["fraction_upgraded"] == 1.0
    assert after["current_model"] == "old"
    assert _self_top1(built, feats[0], OLD)
    # The next call continues; a given subset limits the candidates to those items.
    r = ix.upgrade(built, (["item0", "item1", "item2"], new[:3]), NEW, budget_fraction=1.0)
    assert r["upgraded"] == 3 and r["fraction_upgraded"] == pytest.approx(3 / N)
    assert sorted(p.name for p in built.glob("index-*.faiss")) == [
        before["index_file"],
        ix.info(built)["index_file"],
    ]  # orphans cleaned, current + previous generation kept


def test_incompatible_model_refused(built, feats):
    with pytest.raises(IndexError_, match="not compatible"):
        ix.query(built, feats[0], OTHER, k=3)
    with pytest.raises(IndexError_, match="not compatible"):
        ix.upgrade(built, lambda ids: feats[0][: len(ids)], OTHER, 0.5)
    assert ix.info(built)["fraction_upgraded"] == 1.0


def test_wrong_dim_refused(built, feats):
    small = {**OTHER, "fingerprint": "fp-old", "dim": 6}
    with pytest.raises(IndexError_, match="dim 6 vs index dim 8 cannot be compared"):
        ix.query(built, feats[0][:, :6], small, k=1)
    with pytest.raises(IndexError_, match="cannot be compared"):
        ix.query(built, feats[1], NEW, k=1, slice_dims=False)
    with pytest.raises(UserError, match="declares dim"):
        ix.query(built, feats[1][:, :10], NEW, k=1)
    assert ix.query(built, feats[1], NEW, k=1).scores.shape == (N, 1)  # compatible, sliced


def test_corrupted_metadata_refused(built, feats):
    meta_path = built / "index.json"
    good = meta_path.read_text()
    meta = json.loads(good)
    meta["item_ids"][0] = "tampered"  # valid JSON, wrong content
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IndexError_, match="checksum mismatch"):
        ix.query(built, feats[0], OLD, k=1)
    meta_path.write_text(good[: len(good) // 2])
    for call in (lambda: ix.info(built), lambda: ix.query(built, feats[0], OLD, 1)):
        with pytest.raises(IndexError_, match="corrupt"):
            call()
    with pytest.raises(IndexError_, match="corrupt"):
        ix.upgrade(built, lambda ids: feats[1][: len(ids)], NEW, 0.5)
    meta_path.write_text(good)
    assert _self_top1(built, feats[0], OLD)  # nothing else was touched


def test_corrupted_index_file_refused(built, feats):
    path = built / ix.info(built)["index_file"]
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexError_, match="corrupt"):
        ix.query(built, feats[0], OLD, k=1)
    with pytest.raises(IndexError_, match="corrupt"):
        ix.info(built)
    with pytest.raises(IndexError_, match="no gallery index"):
        ix.info(built.parent / "missing")


def test_failed_rebuild_keeps_existing_index(built, feats):
    def broken(ids):
        raise RuntimeError("embedding failed")

    with pytest.raises(RuntimeError):
        ix.build(built, broken, list(range(N)), OTHER, overwrite=True)
    assert ix.info(built)["current_model"] == "old" and _self_top1(built, feats[0], OLD)


def test_cli_build_query_upgrade_info(tmp_path, feats, capsys):
    from selfsup.cli import main

    old, new = feats
    np.save(tmp_path / "old.npy", old)
    np.save(tmp_path / "new.npy", new)
    np.save(tmp_path / "y.npy", np.arange(N) % 3)
    d, out = str(tmp_path / "idx"), tmp_path / "q"
    src_old = ["--feats", str(tmp_path / "old.npy"), "--fingerprint", "fp-old"]
    src_new = ["--feats", str(tmp_path / "new.npy"), "--fingerprint", "fp-new"]
    assert main(["index", "build", "--index", d, *src_old, "--labels", str(tmp_path / "y.npy")]) == 0
    assert main(["index", "upgrade", "--index", d, *src_new, "--budget", "0.5"]) == 2  # not compatible
    assert "not compatible" in capsys.readouterr().err
    assert (
        main(["index", "upgrade", "--index", d, *src_new, "--compatible-with", "fp-old", "--budget", "0.5"])
        == 0
    )
    rc = main(
        [
            "index",
            "query",
            "--index",
            d,
            *src_new,
            "--compatible-with",
            "fp-old",
            "--labels",
            str(tmp_path / "y.npy"),
            "-k",
            "5",
            "--exclude-self",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["index/fraction_upgraded"] == pytest.approx(0.5)
    assert 0.0 <= metrics["index/top1"] <= metrics["index/top5"] <= 1.0
    hits = np.load(out / "neighbours.npz")["item_ids"]
    assert hits.shape == (N, 5) and not (hits == np.arange(N)[:, None]).any()  # own item excluded
    capsys.readouterr()
    assert main(["index", "info", "--index", d, "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["fraction_upgraded"] == pytest.approx(0.5) and len(desc["models"]) == 2


# ---------------------------------------------------------------------------------------------
# concurrent readers, a writer killed mid-upgrade, stray temporaries

_UPGRADE_THEN_HANG = """
import sys, time
import numpy as np
from selfsup import index as ix

d, stop_at = sys.argv[1], int(sys.argv[2])
new = np.load(sys.argv[3])

def embed(ids):
    if int(ids[0]) >= stop_at:
        print("hanging", flush=True)
        time.sleep(1000)  # a model that hangs: killed here with uncommitted work in memory
    return new[[int(i) for i in ids]]

print("started", flush=True)
ix.upgrade(d, embed, {"fingerprint": "fp-new", "model_id": "new", "compatible_with": ["fp-old"]},
           budget_fraction=1.0, batch_size=2, commit_every=2)  # back-to-back commits
"""


def test_readers_during_upgrade_and_kill_then_resume(tmp_path):
    import subprocess
    import sys
    import time

    n, d, stop_at = 1000, 16, 600
    rng = np.random.default_rng(1)
    old = rng.normal(size=(n, d)).astype(np.float32)
    new = (old + 0.05 * rng.normal(size=old.shape)).astype(np.float32)
    np.save(tmp_path / "new.npy", new)
    idx = tmp_path / "idx"
    ix.build(idx, old, list(range(n)), {"fingerprint": "fp-old", "model_id": "old"}, labels=np.arange(n) % 7)
    # temporaries of an earlier writer that was killed: the next writer removes them
    (idx / ".index.json.dead1.tmp").write_text("{")
    (idx / ".index-000042.faiss.dead2.tmp").write_bytes(b"\0")
    new_model = {"fingerprint": "fp-new", "model_id": "new", "compatible_with": ["fp-old"]}

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _UPGRADE_THEN_HANG, str(idx), str(stop_at), str(tmp_path / "new.npy")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "started"
        # Read while the writer commits every 2 items (~300 commits). Before readers opened the
        # generation right after the metadata, ~2% of such reads failed ("missing; rebuild it").
        gens, upgraded, reads = [], [], 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (reads >= 150 and gens[-1] == 1 + stop_at // 2):
            info = ix.info(idx, verify=True)  # checks the checksum of the generation it describes
            res = ix.query(idx, new[:50], new_model, k=1)
            hit_new = res.versions[:, 0] == 1  # stored new-model items find themselves
            assert (res.item_ids[hit_new, 0] == np.arange(50)[hit_new]).all()
            gens.append(info["generation"])
            upgraded.append(sum(m["items"] for m in info["models"] if m["fingerprint"] == "fp-new"))
            reads += 1
        assert proc.poll() is None and len(set(gens)) >= 10, (reads, gens[::15])
        assert gens == sorted(gens) and upgraded == sorted(upgraded)  # never an older state
    finally:
        proc.kill()  # SIGKILL while it hangs in the embedding, uncommitted items in memory
        proc.wait()
    assert (
        not (idx / ".index.json.dead1.tmp").exists() and not (idx / ".index-000042.faiss.dead2.tmp").exists()
    )

    # the last committed generation stands: exactly the items committed before the hang
    info = ix.info(idx, verify=True)
    assert round(info["fraction_upgraded"] * n) == stop_at
    r = ix.upgrade(idx, (list(range(n)), new), new_model, budget_fraction=1.0)  # continues
    assert r["done"] and r["upgraded"] == n - stop_at
    assert not list(idx.glob("*.tmp")) and not list(idx.glob(".*.tmp"))  # nothing stray
    res = ix.query(idx, new, new_model, k=1)
    assert (res.versions == 1).all() and (res.item_ids[:, 0] == np.arange(n)).all()
    assert len(list(idx.glob("index-*.faiss"))) == 2  # current + previous generation only


def test_build_records_data_identity_and_upgrade_refuses_other_items(tmp_path, feats):
    from selfsup.index.identity import features_identity

    old, new = feats
    y = np.arange(N) % 3
    ident = {**features_identity(None, N, y), "source": "digits", "split": "test", "path": None}
    ix.build(tmp_path / "i", old, list(range(N)), OLD, labels=y, data=ident)
    assert ix.info(tmp_path / "i")["data"]["fingerprint"] == ident["fingerprint"]
    other = {**ident, "fingerprint": "0" * 16}
    before = ix.info(tmp_path / "i")["index_sha256"]
    with pytest.raises(IndexError_, match=r"holds digits \(test split, 60 items"):
        ix.upgrade(tmp_path / "i", (list(range(N)), new), NEW, 1.0, data=other)
    with pytest.raises(IndexError_, match="has 61 items"):
        ix.upgrade(tmp_path / "i", (list(range(N)), new), NEW, 1.0, data={**ident, "count": 61})
    assert ix.info(tmp_path / "i")["index_sha256"] == before  # nothing written
    assert ix.upgrade(tmp_path / "i", (list(range(N)), new), NEW, 1.0, data=ident)["done"]
