"""Similarities against brute-force references; blockwise computation; gradients."""

from __future__ import annotations

import pytest
import torch

from ahop import sorting
from ahop.similarity import (
    SIMILARITIES,
    AdaptiveSimilarity,
    ManhattanSimilarity,
    build_similarity,
    plan_blocks,
)

DOUBLE = torch.float64


def pairs(*leading: int, n: int = 9, q: int = 5, d: int = 7, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(*leading, n, d, generator=generator, dtype=DOUBLE)
    queries = torch.randn(*leading, q, d, generator=generator, dtype=DOUBLE)
    return keys, queries


def diff(keys, queries):
    return queries.unsqueeze(-2) - keys.unsqueeze(-3)


REFERENCES = {
    "dot": lambda k, q: (q.unsqueeze(-2) * k.unsqueeze(-3)).sum(-1),
    "cosine": lambda k, q: (
        (q.unsqueeze(-2) * k.unsqueeze(-3)).sum(-1)
        / (q.norm(dim=-1).unsqueeze(-1) * k.norm(dim=-1).unsqueeze(-2))
    ),
    "euclidean": lambda k, q: -diff(k, q).pow(2).sum(-1).sqrt(),
    "manhattan": lambda k, q: -diff(k, q).abs().sum(-1),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("leading", [(), (3,), (2, 3)])
def test_fixed_similarities_match_brute_force(name: str, leading: tuple[int, ...]) -> None:
    keys, queries = pairs(*leading)
    scores = build_similarity(name)(keys, queries)
    assert scores.shape == (*leading, 5, 9)
    torch.testing.assert_close(scores, REFERENCES[name](keys, queries))


def test_squared_euclidean_and_broadcast_keys() -> None:
    keys, _ = pairs()
    _, queries = pairs(4, seed=1)
    scores = build_similarity("euclidean", squared=True)(keys, queries)
    torch.testing.assert_close(scores, -diff(keys, queries).pow(2).sum(-1))
    manhattan = build_similarity("manhattan")(keys, queries)
    torch.testing.assert_close(manhattan, REFERENCES["manhattan"](keys, queries))


def literal_adaptive(sim: AdaptiveSimilarity, keys, queries):
    total = 0
    bases = {
        "distance": -diff(keys, queries).pow(2),
        "dot": queries.unsqueeze(-2) * keys.unsqueeze(-3),
    }
    for i, base in enumerate(sim.bases):
        values = bases[base]
        if sim.sort:
            values = values.sort(dim=-1, descending=True).values
        if sim.cumulative:
            values = values.cumsum(-1)  # the footprint
        total = total + sim.betas[i] * (values * sim.weights[i]).sum(-1)
    return total


ABLATIONS = [
    {},
    {"sort": False},
    {"cumulative": False},
    {"bases": ("dot",)},
    {"bases": ("distance",), "sort": False, "cumulative": False},
]


@pytest.mark.parametrize("options", ABLATIONS)
def test_adaptive_matches_literal_footprint_definition(options: dict) -> None:
    keys, queries = pairs(2)
    sim = AdaptiveSimilarity(7, init="uniform", **options).double()
    with torch.no_grad():
        sim.weights.normal_()
        sim.betas.uniform_(0.5, 2.0)
    torch.testing.assert_close(sim(keys, queries), literal_adaptive(sim, keys, queries))


def test_adaptive_total_init_is_distance_plus_dot() -> None:
    keys, queries = pairs()
    sim = AdaptiveSimilarity(7, beta_dis=2.0, beta_dot=0.5).double()
    want = 2.0 * -diff(keys, queries).pow(2).sum(-1) + 0.5 * (queries @ keys.T)
    torch.testing.assert_close(sim(keys, queries), want)
    assert float(sim.beta_dis) == 2.0 and float(sim.beta_dot) == 0.5
    fixed = AdaptiveSimilarity(7, learn_betas=False)
    assert "betas" in dict(fixed.named_buffers())
    assert AdaptiveSimilarity(7, bases=("dot",)).beta_dis is None


@pytest.mark.parametrize("options", ABLATIONS)
def test_adaptive_gradcheck(options: dict) -> None:
    keys, queries = pairs(n=4, q=3, d=5)
    keys.requires_grad_(True)
    queries.requires_grad_(True)
    sim = AdaptiveSimilarity(5, init="uniform", memory_budget=2000, **options).double()
    assert torch.autograd.gradcheck(lambda k, q: sim(k, q), (keys, queries))


@pytest.mark.parametrize("options", ABLATIONS)
@pytest.mark.parametrize("budget", [2000, 2**30])
@pytest.mark.parametrize("sorter", ["numpy", "torch"])
def test_adaptive_float32_gradients_match_float64_footprint_definition(
    options: dict, budget: int, sorter: str, monkeypatch
) -> None:
    if sorter == "torch":  # the path GPUs take: torch.sort instead of NumPy's row sorts
        monkeypatch.setattr(sorting, "_numpy_path", lambda values: False)
    # the float32 CPU path (NumPy sorts, packed sort keys, blocks) against autograd through the
    # literal footprint in float64, for inputs, weights and betas, with broadcast keys
    keys, queries = pairs(n=40, q=9, d=16)
    queries = queries.expand(3, -1, -1)
    sim64 = AdaptiveSimilarity(16, init="uniform", **options).double()
    with torch.no_grad():
        sim64.weights.normal_()
        sim64.betas.uniform_(0.5, 2.0)
    sim32 = AdaptiveSimilarity(16, memory_budget=budget, **options)
    sim32.load_state_dict(sim64.state_dict())
    weight = torch.linspace(-1, 1, 3 * 9 * 40, dtype=DOUBLE).reshape(3, 9, 40)

    def grads(sim, literal: bool, dtype):
        k = keys.to(dtype).requires_grad_(True)
        q = queries.to(dtype).requires_grad_(True)
        scores = literal_adaptive(sim, k, q) if literal else sim(k, q)
        loss = (scores.double() * weight).sum()
        return [scores, *torch.autograd.grad(loss, [k, q, sim.weights, sim.betas])]

    for got, want in zip(grads(sim32, False, torch.float32), grads(sim64, True, DOUBLE)):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_manhattan_gradcheck_blockwise() -> None:
    keys, queries = pairs(2, n=6, q=3, d=4)
    keys.requires_grad_(True)
    queries.requires_grad_(True)
    sim = ManhattanSimilarity(memory_budget=200)
    assert torch.autograd.gradcheck(lambda k, q: sim(k, q), (keys, queries))


def grads(sim, keys, queries):
    keys = keys.clone().requires_grad_(True)
    queries = queries.clone().requires_grad_(True)
    scores = sim(keys, queries)
    weight = torch.linspace(-1, 1, scores.numel(), dtype=scores.dtype).reshape(scores.shape)
    params = [p for p in sim.parameters()]
    out = torch.autograd.grad((scores * weight).sum(), [keys, queries, *params])
    return scores.detach(), out


@pytest.mark.parametrize("budget", [64, 3000])  # 64: blocks of queries; 3000: blocks of keys
def test_blockwise_equals_unblocked_values_and_gradients(budget: int) -> None:
    keys, queries = pairs(2, n=30, q=11, d=6)
    for make in (
        lambda b: AdaptiveSimilarity(6, init="uniform", memory_budget=b),
        lambda b: ManhattanSimilarity(memory_budget=b),
    ):
        small, large = make(budget).double(), make(2**30).double()
        large.load_state_dict(small.state_dict())
        with torch.no_grad():
            for p_small, p_large in zip(small.parameters(), large.parameters()):
                p_small.normal_()
                p_large.copy_(p_small)
        s1, g1 = grads(small, keys, queries)
        s2, g2 = grads(large, keys, queries)
        torch.testing.assert_close(s1, s2)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b)


def test_plan_blocks_fits_budget() -> None:
    for queries, keys, per_pair, budget in [
        (256, 10_000, 784 * 4, 2**20),
        (4, 10, 100, 50),
        (3, 5, 10, 10**9),
    ]:
        q_block, k_block = plan_blocks(queries, keys, per_pair, budget)
        assert 1 <= q_block <= queries and 1 <= k_block <= keys
        assert q_block * k_block * per_pair <= max(budget, per_pair)
    with pytest.raises(ValueError, match="memory_budget"):
        plan_blocks(1, 1, 1, 0)


def test_euclidean_gradient_is_finite_when_query_equals_memory() -> None:
    keys = torch.randn(5, 3, requires_grad=True)
    queries = keys.detach()[:2].clone().requires_grad_(True)
    build_similarity("euclidean")(keys, queries).sum().backward()
    assert torch.isfinite(keys.grad).all() and torch.isfinite(queries.grad).all()


def test_low_precision_inputs_give_float32_scores() -> None:
    keys, queries = pairs()
    for name in SIMILARITIES.names():
        sim = build_similarity(name, dim=7)
        scores = sim(keys.to(torch.bfloat16), queries.to(torch.bfloat16))
        assert scores.dtype == torch.float32 and torch.isfinite(scores).all(), name


def test_bad_arguments_raise_value_errors() -> None:
    with pytest.raises(
        ValueError, match="allowed values: adaptive, cosine, dot, euclidean, manhattan"
    ):
        build_similarity("hamming")
    with pytest.raises(ValueError, match="dim="):
        build_similarity("adaptive")
    with pytest.raises(ValueError, match="last"):
        build_similarity("dot")(torch.randn(3, 4), torch.randn(2, 5))
    with pytest.raises(ValueError, match="bases"):
        AdaptiveSimilarity(4, bases=("cosine",))
    with pytest.raises(ValueError, match="built for dim=4"):
        AdaptiveSimilarity(4)(torch.randn(3, 5), torch.randn(2, 5))


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("key_leading", [(), (3,)])
def test_euclidean_hand_written_backward_matches_autograd(
    squared: bool, key_leading: tuple[int, ...]
) -> None:
    """The custom backward (two matmuls) against finite differences and the brute-force graph,
    with keys shared across a batch of queries (gradients summed over the broadcast)."""
    keys, _ = pairs(*key_leading)
    _, queries = pairs(3, seed=1)
    keys.requires_grad_(True)
    queries.requires_grad_(True)
    sim = build_similarity("euclidean", squared=squared)
    assert torch.autograd.gradcheck(sim, (keys, queries))
    upstream = torch.randn(3, 5, 9, dtype=DOUBLE)
    got = torch.autograd.grad((sim(keys, queries) * upstream).sum(), (keys, queries))
    squared_distance = diff(keys, queries).pow(2).sum(-1)
    reference = -(squared_distance if squared else squared_distance.sqrt())
    want = torch.autograd.grad((reference * upstream).sum(), (keys, queries))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_adaptive_peak_memory_stays_near_the_block_budget() -> None:
    # forward + backward in a fresh process; its peak RSS growth must stay far below the 400 MiB
    # that the two bases' (Q, N, d) float32 tensors alone would take (measured: ~77 MiB, of which
    # ~40 MiB is a size-independent first-call cost; ~1 GiB with one block for everything)
    import json
    import os
    import subprocess
    import sys

    code = """
import json, resource, torch
from ahop.similarity import AdaptiveSimilarity
torch.manual_seed(0)
keys = torch.rand(2000, 784, requires_grad=True)
queries = torch.rand(32, 784, requires_grad=True)
sim = AdaptiveSimilarity(784, memory_budget=32 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sim(keys, queries).logsumexp(-1).sum().backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mib": (after - before) / 1024}))
"""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    growth = json.loads(result.stdout.strip().splitlines()[-1])["growth_mib"]
    assert growth < 160, f"peak grew by {growth:.0f} MiB with a 32 MiB block budget"
