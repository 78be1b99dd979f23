"""U-Hop: the kernel similarity, its separation loss and stage I, retrieval by name, layers."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits

from ahop import Hopfield, UHopSimilarity, separation_loss
from ahop.functional import retrieve
from ahop.similarity import SIMILARITIES, build_similarity
from ahop.variants import GaussianNoise

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return torch.tensor(load_digits().data[:200], dtype=torch.float32) / 16


def test_registered_and_scores_are_the_kernel() -> None:
    assert "uhop" in SIMILARITIES.names()
    similarity = build_similarity("uhop", dim=5, feature_dim=7)
    keys, queries = torch.randn(2, 9, 5), torch.randn(2, 4, 5)
    w = similarity.features.weight / math.sqrt(7)
    torch.testing.assert_close(
        similarity(keys, queries), queries @ w.T @ w @ keys.transpose(-1, -2)
    )
    assert similarity.is_linear and not build_similarity("uhop", dim=5, feature_map="mlp").is_linear
    # the same seed gives the same initial feature map
    again = build_similarity("uhop", dim=5, feature_dim=7)
    torch.testing.assert_close(again.features.weight, similarity.features.weight)


def test_separation_loss_is_the_uniformity_of_unit_features() -> None:
    features = torch.randn(6, 3, dtype=torch.float64)
    unit = features / features.norm(dim=-1, keepdim=True)
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    brute = torch.stack([torch.exp(-2.0 * (unit[i] - unit[j]).square().sum()) for i, j in pairs])
    torch.testing.assert_close(separation_loss(features), brute.mean().log())
    # identical memories: the worst loss, 0
    assert separation_loss(torch.ones(4, 3)).abs() < 1e-6


def test_stage_one_separates_the_memories_and_improves_retrieval(digits) -> None:
    """Stage I lowers the separation loss over the stored digits, and the learned kernel then
    finds the source of noisy queries more often than the raw dot product (U-Hop's claim)."""
    queries = GaussianNoise(0.3)(digits, torch.Generator().manual_seed(0))
    sources = torch.arange(len(digits))
    similarity = UHopSimilarity(64, separation_epochs=100)
    losses = similarity.fit_separation(digits)
    assert len(losses) == 100 and losses[-1] < losses[0] - 1.0
    with torch.no_grad():
        uhop = (similarity(digits, queries).argmax(-1) == sources).float().mean()
        dot = ((queries @ digits.T).argmax(-1) == sources).float().mean()
    assert uhop > dot + 0.05


def test_retrieve_by_name_runs_stage_one_on_the_keys(digits) -> None:
    memories, queries = digits[:50], digits[:50] + 0.1
    fitted = UHopSimilarity(64, separation_epochs=20)
    fitted.fit_separation(memories)
    by_name = retrieve(queries, memories, similarity="uhop", separation_epochs=20, beta=0.5)
    with torch.no_grad():
        torch.testing.assert_close(
            by_name, retrieve(queries, memories, similarity=fitted, beta=0.5)
        )
    assert not by_name.requires_grad  # the call's own similarity is frozen
    untouched = UHopSimilarity(64, separation_epochs=20)
    before = untouched.features.weight.clone()
    retrieve(queries, memories, similarity=untouched)  # a module is used as it is
    assert torch.equal(untouched.features.weight, before)


def test_mlp_feature_map_trains_in_a_hopfield_layer() -> None:
    layer = Hopfield(
        input_size=6,
        num_heads=2,
        similarity="uhop",
        similarity_kwargs={"feature_map": "mlp", "hidden": 16},
        update_steps_max=1,
    )
    x = torch.randn(3, 5, 6)
    layer(x).square().mean().backward()
    grads = [p.grad for p in layer.similarity.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    stored = torch.randn(8, 6)
    loss = layer.similarity.separation_loss(stored)
    assert loss.shape == () and loss.requires_grad


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown U-Hop feature map 'rbf'"):
        UHopSimilarity(4, feature_map="rbf")
    with pytest.raises(ValueError, match="needs the feature dimension"):
        build_similarity("uhop")
    with pytest.raises(ValueError, match="built for dim=4"):
        UHopSimilarity(4)(torch.randn(3, 5), torch.randn(2, 5))
    with pytest.raises(ValueError, match="at least 2 memories"):
        separation_loss(torch.randn(1, 4))
    with pytest.raises(ValueError, match="separation_epochs"):
        UHopSimilarity(4, separation_epochs=-1)
    with pytest.raises(ValueError, match="separation_lr"):
        UHopSimilarity(4, separation_lr=0.0)
    with pytest.raises(FloatingPointError, match="lower separation_lr"):
        UHopSimilarity(4, separation_lr=float("inf")).fit_separation(torch.randn(5, 4))
