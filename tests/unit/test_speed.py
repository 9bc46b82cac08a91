"""Training-speed options: channels_last, torch.compile's fallback, and the exact-search backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from selfsup.config import Recipe
from selfsup.engine import speed
from selfsup.eval import search


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
        self.head = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


def _recipe(compile=False, channels_last="auto") -> Recipe:
    r = Recipe()
    r.train.compile, r.train.channels_last = compile, channels_last
    return r


def test_channels_last_on_cuda_only_unless_forced():
    cpu = torch.device("cpu")
    assert not speed.apply(Tiny(), _recipe(), cpu)["channels_last"]
    m = Tiny()
    assert speed.apply(m, _recipe(channels_last="on"), cpu)["channels_last"]
    assert m.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert speed.use_channels_last(_recipe(), torch.device("cuda"))
    assert not speed.use_channels_last(_recipe(channels_last="off"), torch.device("cuda"))


def test_compile_without_a_working_compiler_warns_and_trains_eagerly(monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("Compiler: cc not found\nmore")

    monkeypatch.setattr(torch, "compile", broken)
    assert "cc not found" in speed.compiler_works(torch.device("cpu"))
    state = speed.apply(Tiny(), _recipe(compile=True), torch.device("cpu"))
    assert state["compiled"] == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: train.compile") and "without it" in err[0]


def test_first_step_falls_back_to_eager_with_the_state_before_the_step(capsys):
    torch.manual_seed(0)
    model, ref = Tiny(), Tiny()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(5, 3, 8, 8)
    calls = []

    def failing_compiled_call(*a, **k):
        model.backbone[1].running_mean += 100.0  # a side effect before the failure: undone
        calls.append(1)
        raise RuntimeError("inductor exploded")

    model.backbone._compiled_call_impl = failing_compiled_call
    state = {"channels_last": False, "compiled": [model.backbone]}

    def step(m):
        out = m(x).square().mean()
        out.backward()
        return out

    got = speed.first_step(lambda: step(model), model, state)
    want = step(ref)
    assert calls == [1] and state["compiled"] == [] and model.backbone._compiled_call_impl is None
    assert torch.equal(got, want)
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    assert "warning: train.compile" in capsys.readouterr().err


def test_bad_channels_last_value_is_a_config_error():
    from selfsup.config import validate_core
    from selfsup.errors import ConfigError

    with pytest.raises(ConfigError, match="channels_last"):
        validate_core(_recipe(channels_last="yes"))


def _gallery(n=500, nq=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d)).astype(np.float32)
    q = rng.normal(size=(nq, d)).astype(np.float32)
    return g / np.linalg.norm(g, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("k", [1, 10, 500])
def test_exact_search_backends_find_the_same_neighbours(k):
    import faiss

    g, q = _gallery()
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    ref_s, ref_i = index.search(q, k)
    for backend in ("faiss", "torch", "auto"):
        s, i = search.FlatSearch(g, backend).search(q, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(s, ref_s, atol=1e-5)
    brute = np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]  # an independent reference
    np.testing.assert_array_equal(ref_i, brute)


def test_auto_backend_picks_one_and_caches_the_choice():
    g, q = _gallery(n=800)
    search._CPU_CHOICE.clear()
    fs = search.FlatSearch(g)
    fs.search(q, 5)
    assert fs.backend in ("faiss", "torch") and len(search._CPU_CHOICE) == 1
    with pytest.raises(ValueError, match="backend"):
        search.FlatSearch(g, "annoy")


@pytest.mark.skipif(not search.faiss_gpu_available(), reason="needs faiss-gpu and a GPU")
def test_gpu_faiss_equals_cpu_faiss():
    import faiss

    g, q = _gallery(n=5000)
    cpu = faiss.IndexFlatIP(g.shape[1])
    cpu.add(g)
    gpu = search.to_gpu(cpu)
    np.testing.assert_array_equal(gpu.search(q, 20)[1], cpu.search(q, 20)[1])
    from selfsup.eval.retrieval import build_faiss_index

    ivf = build_faiss_index(g, "ivf", nlist=16, nprobe=16)  # all lists probed: exact
    np.testing.assert_array_equal(search.to_gpu(ivf).search(q, 10)[1], cpu.search(q, 10)[1])
