"""Tabular Hopfield classifier: feature embeddings (linear, periodic) and their options."""

from __future__ import annotations

import math

import pytest
import torch

from ahop.classifiers import (
    FEATURE_EMBEDDINGS,
    PeriodicFeatureEmbedding,
    TabularHopfieldClassifier,
)


def test_registry_names_both_embeddings() -> None:
    assert FEATURE_EMBEDDINGS.names() == ["linear", "periodic"]


def test_periodic_embedding_matches_its_formula() -> None:
    torch.manual_seed(0)
    embedding = PeriodicFeatureEmbedding(3, 8, frequencies=4, feature_dim=5, sigma=0.5).eval()
    x = torch.randn(6, 3)
    angles = 2 * math.pi * embedding.coefficients[None] * x[..., None]  # (6, 3, 4)
    per_feature = torch.relu(
        torch.cat([angles.sin(), angles.cos()], -1) @ embedding.per_feature.weight.T
        + embedding.per_feature.bias
    )
    mix = embedding.mix[0]
    want = torch.nn.functional.gelu(per_feature.reshape(6, 15) @ mix.weight.T + mix.bias)
    torch.testing.assert_close(embedding(x), want)
    # the initial frequencies follow sigma
    wide = PeriodicFeatureEmbedding(50, 8, frequencies=64, sigma=2.0)
    assert 1.8 < float(wide.coefficients.std()) < 2.2


def test_periodic_classifier_learns_a_band_on_one_feature() -> None:
    # class 1 iff |x| < 0.5: two thresholds on one feature, what the periodic embedding is for
    torch.manual_seed(0)
    x = torch.linspace(-3, 3, 400).unsqueeze(-1)
    y = (x.abs() < 0.5).long().squeeze(-1)
    model = TabularHopfieldClassifier(
        1,
        2,
        embedding_dim=16,
        quantity=8,
        num_heads=2,
        feature_embedding="periodic",
        feature_embedding_kwargs={"sigma": 0.3},
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = model.embed.coefficients.detach().clone()
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    accuracy = (model(x).argmax(-1) == y).float().mean()
    assert accuracy > 0.97
    assert not torch.equal(start, model.embed.coefficients)  # the frequencies are learned


def test_linear_embedding_keeps_the_state_dict_layout() -> None:
    model = TabularHopfieldClassifier(5, 3)
    assert {"embed.0.weight", "embed.0.bias"} <= set(model.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_embedding": "fourier"}, "allowed values: linear, periodic"),
        ({"feature_embedding_kwargs": {"sigma": 1.0}}, "for 'linear'; allowed: none"),
        (
            {"feature_embedding": "periodic", "feature_embedding_kwargs": {"sigmaa": 1.0}},
            "allowed: feature_dim, frequencies, sigma",
        ),
        (
            {"feature_embedding": "periodic", "feature_embedding_kwargs": {"sigma": 0}},
            "sigma must be > 0",
        ),
        (
            {"feature_embedding": "periodic", "feature_embedding_kwargs": {"frequencies": 0}},
            "frequencies must be an integer >= 1",
        ),
    ],
)
def test_bad_embedding_options_raise_value_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TabularHopfieldClassifier(4, 2, **kwargs)
