"""Separations: definitions, masks, stability at large beta in low precision."""

from __future__ import annotations

import pytest
import torch

from ahop.separation import SEPARATIONS, build_separation

SCORES = torch.tensor([[3.0, 1.0, -2.0, 0.5], [0.0, 0.0, 4.0, -1.0]])


def test_softmax_and_max_and_identity() -> None:
    torch.testing.assert_close(
        build_separation("softmax", beta=2.0)(SCORES), (2 * SCORES).softmax(-1)
    )
    assert torch.equal(
        build_separation("max")(SCORES), torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0]])
    )
    torch.testing.assert_close(build_separation("identity")(SCORES), SCORES)


@pytest.mark.parametrize("order", [1, 2, 3, 10])
def test_polynomial_is_normalised_signed_power(order: int) -> None:
    weights = build_separation("polynomial", order=order)(SCORES * 1e4)
    raw = SCORES.sign() * SCORES.abs().pow(order)
    torch.testing.assert_close(weights, raw / raw.abs().sum(-1, keepdim=True))
    assert torch.isfinite(build_separation("polynomial", order=order)(SCORES * 1e30)).all()


def test_topk_keeps_k_best() -> None:
    scores = torch.tensor([[3.0, 1.0, -2.0, 0.5], [0.2, 0.1, 4.0, -1.0]])
    weights = build_separation("topk", k=2, beta=1.0)(scores)
    assert (weights > 0).sum(-1).tolist() == [2, 2]
    torch.testing.assert_close(weights[0, [0, 1]], scores[0, [0, 1]].softmax(-1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_sparse_maps_sum_to_one_with_zeros(name: str) -> None:
    weights = build_separation(name, beta=2.0)(SCORES)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert (weights == 0).any()


MASK = torch.tensor([[False, True, False, True], [True, True, True, True]])


@pytest.mark.parametrize("name", SEPARATIONS.names())
def test_masked_entries_get_zero_and_empty_rows_no_nan(name: str) -> None:
    weights = build_separation(name)(SCORES, MASK)
    assert torch.isfinite(weights).all()
    assert torch.all(weights[MASK] == 0)
    unmasked = build_separation(name)(SCORES[:1, [0, 2]])
    torch.testing.assert_close(weights[0, [0, 2]], unmasked[0])


@pytest.mark.parametrize("name", SEPARATIONS.names())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_large_beta_in_low_precision_is_finite(name: str, dtype: torch.dtype) -> None:
    scores = (torch.randn(4, 50) * 100).to(dtype)
    weights = build_separation(name, beta=1e4)(scores)
    assert torch.isfinite(weights).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="allowed values"):
        build_separation("argmin")
    for name in ("softmax", "topk", "sparsemax", "entmax15"):
        with pytest.raises(ValueError, match="beta"):
            build_separation(name, beta=0.0)
    with pytest.raises(ValueError, match="order"):
        build_separation("polynomial", order=0.5)
    with pytest.raises(ValueError, match="k >= 1"):
        build_separation("topk", k=0)
