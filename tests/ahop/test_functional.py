"""retrieve(): one-shot / iterative, auto / hetero, fused path, masks, precision, digits recall."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from ahop.functional import retrieve
from ahop.variants import GaussianNoise, Mask


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, 20, 8, generator=g),
        torch.randn(2, 5, 8, generator=g),
        torch.randn(2, 20, 3, generator=g),
    )


def test_fused_dot_softmax_equals_explicit_formula() -> None:
    keys, queries, values = data()
    out = retrieve(queries, keys, values, beta=0.7)
    want = (0.7 * queries @ keys.transpose(-1, -2)).softmax(-1) @ values
    torch.testing.assert_close(out, want)
    details = retrieve(queries, keys, values, beta=0.7, return_details=True)
    torch.testing.assert_close(details.output, want)
    torch.testing.assert_close(details.weights.sum(-1), torch.ones(2, 5))


def test_auto_association_uses_keys_as_values() -> None:
    keys, queries, _ = data()
    torch.testing.assert_close(retrieve(queries, keys), retrieve(queries, keys, keys))


def test_iterative_retrieval_stops_early_and_feeds_back() -> None:
    keys, queries, _ = data()
    two = retrieve(queries, keys, steps=2, beta=0.5)
    manual = retrieve(retrieve(queries, keys, beta=0.5), keys, beta=0.5)
    torch.testing.assert_close(two, manual)
    details = retrieve(
        queries, keys, similarity="euclidean", beta=50.0, steps=100, eps=1e-6, return_details=True
    )
    assert 1 < details.steps < 100


def test_mask_excludes_memories() -> None:
    keys, queries, values = data()
    mask = torch.zeros(2, 1, 20, dtype=torch.bool)
    mask[..., 10:] = True
    out = retrieve(queries, keys, values, mask=mask)
    torch.testing.assert_close(out, retrieve(queries, keys[:, :10], values[:, :10]))


def test_bf16_large_beta_is_finite() -> None:
    keys, queries, values = (t.to(torch.bfloat16) for t in data())
    for similarity in ("dot", "manhattan", "euclidean"):
        out = retrieve(queries, keys, values, similarity=similarity, beta=1e4)
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_errors() -> None:
    keys, queries, values = data()
    with pytest.raises(ValueError, match="steps"):
        retrieve(queries, keys, steps=0)
    with pytest.raises(ValueError, match="d_v"):
        retrieve(queries, keys, values, steps=2)
    with pytest.raises(ValueError, match="one row per memory"):
        retrieve(queries, keys, values[:, :3])
    with pytest.raises(ValueError, match="beta"):
        retrieve(queries, keys, beta=-1.0)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    images = torch.tensor(load_digits().images, dtype=torch.float32).reshape(-1, 64) / 16
    return images[:100]


@pytest.mark.parametrize(
    "similarity,beta", [("manhattan", 5.0), ("euclidean", 20.0), ("cosine", 200.0)]
)
def test_digits_recovered_from_light_corruption_not_heavy(
    digits, similarity: str, beta: float
) -> None:
    generator = torch.Generator().manual_seed(0)
    sources = torch.arange(len(digits))

    def accuracy(queries: torch.Tensor) -> float:
        weights = retrieve(
            queries, digits, similarity=similarity, beta=beta, return_details=True
        ).weights
        return float((weights.argmax(-1) == sources).float().mean())

    light_noise = accuracy(GaussianNoise(0.05)(digits, generator))
    light_mask = accuracy(Mask(0.1, "random", (8, 8))(digits, generator))
    heavy = accuracy(Mask(0.9, "random", (8, 8))(digits, generator))
    assert light_noise >= 0.95 and light_mask >= 0.95
    assert heavy < light_mask - 0.2
