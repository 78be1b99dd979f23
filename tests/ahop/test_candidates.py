"""Candidate search: top-m memories by squared L2 or dot product, torch or faiss, with exclusion."""

from __future__ import annotations

import pytest
import torch

from ahop.candidates import CandidateIndex, faiss_available, top_candidates


def brute_force(queries, keys, count, similarity, exclude=None):
    euclidean = similarity == "euclidean"
    scores = -torch.cdist(queries, keys).square() if euclidean else queries @ keys.T
    if exclude is not None:
        rows = (exclude >= 0).nonzero().flatten()
        scores[rows, exclude[rows]] = float("-inf")
    return scores.topk(count, dim=-1).indices


@pytest.mark.parametrize("similarity", ["euclidean", "dot"])
@pytest.mark.parametrize("use_faiss", [False, True])
def test_top_candidates_match_brute_force(similarity: str, use_faiss: bool) -> None:
    if use_faiss and not faiss_available():
        pytest.skip("faiss not installed")
    torch.manual_seed(0)
    queries, keys = torch.randn(37, 6), torch.randn(300, 6)
    exclude = torch.randint(-1, 300, (37,))
    for ex in (None, exclude):
        got = top_candidates(
            queries, keys, 10, similarity, exclude=ex, use_faiss=use_faiss, budget=4000
        )
        want = brute_force(queries, keys, 10, similarity, ex)
        assert torch.equal(got.sort(-1).values, want.sort(-1).values)
        if ex is not None:
            assert not (got == ex.unsqueeze(-1)).any()


def test_all_memories_when_count_is_n() -> None:
    torch.manual_seed(0)
    queries, keys = torch.randn(5, 3), torch.randn(8, 3)
    got = top_candidates(queries, keys, 8)
    assert torch.equal(got.sort(-1).values, torch.arange(8).expand(5, 8))
    exclude = torch.tensor([0, 3, -1, 7, 2])
    got = top_candidates(queries, keys, 7, exclude=exclude)
    for row, ex in zip(got.tolist(), exclude.tolist()):
        assert sorted(row) == [i for i in range(8) if i != ex] if ex >= 0 else len(set(row)) == 7


def test_bad_arguments_name_what_to_change() -> None:
    queries, keys = torch.randn(2, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"count must be an integer in \[1, 4\]"):
        top_candidates(queries, keys, 0)
    with pytest.raises(ValueError, match=r"in \[1, 3\] \(memories minus the excluded row\)"):
        top_candidates(queries, keys, 4, exclude=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="allowed: euclidean, dot"):
        top_candidates(queries, keys, 2, similarity="adaptive")


@pytest.mark.parametrize("similarity", ["euclidean", "dot"])
def test_exact_index_equals_top_candidates(similarity: str) -> None:
    torch.manual_seed(0)
    queries, keys = torch.randn(37, 6), torch.randn(300, 6)
    exclude = torch.randint(-1, 300, (37,))
    index = CandidateIndex(keys, similarity, search="exact", budget=4000)
    assert index.kind == "exact" and index.rows == 300
    for ex in (None, exclude):
        got = index.search(queries, 10, ex)
        want = brute_force(queries, keys, 10, similarity, ex)
        assert torch.equal(got.sort(-1).values, want.sort(-1).values)


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
@pytest.mark.parametrize("similarity", ["euclidean", "dot"])
def test_ivf_index_finds_most_true_neighbours_and_never_the_excluded_row(similarity: str) -> None:
    torch.manual_seed(0)
    centres = torch.randn(40, 8) * 4
    keys = centres[torch.randint(0, 40, (4000,))] + torch.randn(4000, 8)
    queries = keys[:300] + 0.1 * torch.randn(300, 8)
    exclude = torch.arange(300)  # each query's own row, as in training
    index = CandidateIndex(keys, similarity, search="ivf", probes=8)
    assert index.kind == "ivf"
    got = index.search(queries, 16, exclude)
    assert got.shape == (300, 16) and bool((got >= 0).all())
    assert not (got == exclude.unsqueeze(-1)).any()
    assert all(len(set(row)) == 16 for row in got.tolist())
    want = brute_force(queries, keys, 16, similarity, exclude)
    recall = sum(len(set(a) & set(b)) for a, b in zip(got.tolist(), want.tolist())) / want.numel()
    assert recall > 0.8, recall


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_auto_index_switches_to_ivf_at_the_threshold() -> None:
    keys = torch.randn(500, 4)
    assert CandidateIndex(keys, search="auto", ivf_min_memories=501).kind == "exact"
    assert CandidateIndex(keys, search="auto", ivf_min_memories=500).kind == "ivf"


def test_candidate_index_errors_name_the_allowed_values() -> None:
    keys = torch.randn(10, 3)
    with pytest.raises(ValueError, match="allowed: auto, exact, ivf"):
        CandidateIndex(keys, search="hnsw")
    with pytest.raises(ValueError, match="allowed: euclidean, dot"):
        CandidateIndex(keys, similarity="cosine")
    with pytest.raises(ValueError, match="probes must be an integer >= 1"):
        CandidateIndex(keys, probes=0)
