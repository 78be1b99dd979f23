"""Candidate search: top-m memories by squared L2 or dot product, torch or faiss, with exclusion."""

from __future__ import annotations

import pytest
import torch

from ahop.candidates import faiss_available, top_candidates


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
