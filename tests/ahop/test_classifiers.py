"""Tabular feature embeddings (linear, periodic, piecewise-linear; categorical codes) and the
lookup-memory classifier."""

from __future__ import annotations

import math

import pytest
import rtdl_num_embeddings
import torch

from ahop.classifiers import (
    FEATURE_EMBEDDINGS,
    TABULAR_NETWORKS,
    TabularHopfieldClassifier,
    TabularRetrievalClassifier,
)
from ahop.feature_embeddings import (
    PeriodicFeatureEmbedding,
    PiecewiseLinearFeatureEmbedding,
    bin_edges,
)


def test_registries_name_the_embeddings_and_networks() -> None:
    assert FEATURE_EMBEDDINGS.names() == ["linear", "periodic", "piecewise_linear"]
    assert TABULAR_NETWORKS.names() == ["lookup", "retrieval"]
    assert TABULAR_NETWORKS.get("lookup") is TabularHopfieldClassifier
    assert TABULAR_NETWORKS.get("retrieval") is TabularRetrievalClassifier


def test_periodic_embedding_is_rtdls_periodic_embedding_then_a_mix() -> None:
    torch.manual_seed(0)
    embedding = PeriodicFeatureEmbedding(3, 8, frequencies=4, feature_dim=5, sigma=0.5).eval()
    x = torch.randn(6, 3)
    periodic = embedding.periodic
    assert isinstance(periodic, rtdl_num_embeddings.PeriodicEmbeddings)
    angles = 2 * math.pi * embedding.coefficients[None] * x[..., None]  # (6, 3, 4)
    trig = torch.cat([angles.cos(), angles.sin()], -1)  # (6, 3, 8)
    per_feature = torch.relu(
        torch.einsum("bfi,fio->bfo", trig, periodic.linear.weight) + periodic.linear.bias
    )
    mix = embedding.mix[0]
    want = torch.nn.functional.gelu(per_feature.reshape(6, 15) @ mix.weight.T + mix.bias)
    torch.testing.assert_close(embedding(x), want)
    wide = PeriodicFeatureEmbedding(50, 8, frequencies=64, sigma=2.0)  # initial scale = sigma
    assert 1.6 < float(wide.coefficients.detach().std()) < 2.1


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
        feature_embedding_kwargs={"sigma": 0.3, "frequencies": 16, "feature_dim": 16},
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


def test_piecewise_linear_bins_come_from_the_rows_it_is_fitted_on() -> None:
    torch.manual_seed(0)
    train = torch.cat([torch.randn(200, 2), torch.full((200, 1), 3.0)], 1)  # last column constant
    other = train + 5.0
    embedding = PiecewiseLinearFeatureEmbedding(3, 8, bins=8)
    assert not embedding.fitted
    with pytest.raises(RuntimeError, match="call fit"):
        embedding(train[:2])
    embedding.fit(train)
    assert embedding.fitted
    bins = bin_edges(train, 8)
    want = rtdl_num_embeddings.compute_bins(train[:, :2], n_bins=8)
    for got, expected in zip(bins[:2], want):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(bins[2], torch.tensor([2.0, 4.0]))  # one bin around the constant
    edges = embedding.piecewise.edges
    torch.testing.assert_close(edges[0, : len(want[0])], want[0])
    assert embedding(other).shape == (200, 8)
    # version "B" starts as a linear embedding: the piecewise part is zero-initialised
    assert not embedding.piecewise.embedding.linear.weight.any()


def test_target_aware_bins_split_where_the_class_changes() -> None:
    """A mostly-zero column whose class flips at 6: quantile bins waste their edges on the zeros'
    neighbourhood and miss 6; tree bins put an edge next to it; the union keeps both."""
    torch.manual_seed(0)
    column = torch.cat([torch.zeros(1500), torch.rand(500) * 10]).unsqueeze(1)
    labels = (column[:, 0] > 6).long()
    quantile = bin_edges(column, 8, labels, "quantile")[0]
    tree = bin_edges(column, 8, labels, "tree")[0]
    union = bin_edges(column, 8, labels, "quantile+tree")[0]
    assert (tree - 6).abs().min() < 0.1 < (quantile - 6).abs().min()
    assert set(quantile.tolist()) | set(tree.tolist()) == set(union.tolist())
    assert bool((union[1:] > union[:-1]).all())
    embedding = PiecewiseLinearFeatureEmbedding(1, 4, bins=8, binning="tree")
    embedding.fit(column, labels)
    torch.testing.assert_close(embedding.piecewise.edges[0], tree)
    with pytest.raises(ValueError, match="binning 'tree' needs the training rows' class labels"):
        PiecewiseLinearFeatureEmbedding(1, 4, binning="tree").fit(column)
    with pytest.raises(ValueError, match="unknown binning 'kmeans'; allowed: quantile, tree"):
        PiecewiseLinearFeatureEmbedding(1, 4, binning="kmeans")


def test_piecewise_linear_state_dict_rebuilds_the_bins() -> None:
    torch.manual_seed(0)
    train = torch.randn(100, 4) * torch.tensor([1.0, 2.0, 0.5, 3.0])
    train[:, 1] = train[:, 1].round()  # few distinct values: fewer bins for that column
    model = TabularHopfieldClassifier(4, 3, feature_embedding="piecewise_linear")
    model.prepare(train)
    with torch.no_grad():
        model.embed.piecewise.embedding.linear.weight.normal_()
    fresh = TabularHopfieldClassifier(4, 3, feature_embedding="piecewise_linear")
    fresh.load_state_dict(model.state_dict())
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(train), model(train))


def test_categorical_codes_get_embedding_tables() -> None:
    torch.manual_seed(0)
    # 2 numeric columns, then 2 code columns with 3 and 5 categories
    rows = torch.tensor([[0.1, -1.0, 0, 4], [1.5, 0.3, 2, 0], [0.0, 0.0, 1, 1]])
    model = TabularHopfieldClassifier(
        4, 2, num_numeric=2, categorical_cardinalities=[3, 5], feature_embedding="periodic"
    )
    tables = list(model.embed.categorical)
    assert [t.num_embeddings for t in tables] == [3, 5]
    logits = model(rows)
    logits.sum().backward()
    assert tables[1].weight.grad[4].abs().sum() > 0  # code 4 of column 2 was used
    assert tables[1].weight.grad[3].abs().sum() == 0
    with pytest.raises(ValueError, match=r"holds code 5 outside 0\.\.4"):
        model(torch.tensor([[0.0, 0.0, 1, 5]]))


def test_onehot_block_passes_through() -> None:
    # without cardinalities the columns after num_numeric are already encoded (one-hot)
    model = TabularHopfieldClassifier(5, 2, num_numeric=2, feature_embedding="periodic")
    assert model.embed.num_numeric == 2
    assert model.embed.mix[0].in_features == 2 * model.embed.feature_dim + 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_embedding": "fourier"}, "allowed values: linear, periodic, piecewise_linear"),
        ({"feature_embedding_kwargs": {"sigma": 1.0}}, "for 'linear'; allowed: categorical_dim"),
        (
            {"feature_embedding": "periodic", "feature_embedding_kwargs": {"sigmaa": 1.0}},
            "allowed: categorical_dim, feature_dim, frequencies, lite, sigma",
        ),
        (
            {"feature_embedding": "periodic", "feature_embedding_kwargs": {"sigma": 0}},
            "sigma must be > 0",
        ),
        (
            {"feature_embedding": "periodic", "feature_embedding_kwargs": {"frequencies": 0}},
            "frequencies must be an integer >= 1",
        ),
        (
            {"feature_embedding": "piecewise_linear", "feature_embedding_kwargs": {"bins": 1}},
            "bins must be >= 2",
        ),
        ({"num_numeric": 7}, r"num_numeric must be in \[0, num_features=4\]"),
        ({"categorical_cardinalities": [2, 0]}, "must be integers >= 1"),
        (
            {"num_numeric": 1, "categorical_cardinalities": [2]},
            "must be num_numeric \\+ 1 columns = 2, but num_features=4",
        ),
    ],
)
def test_bad_embedding_options_raise_value_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TabularHopfieldClassifier(4, 2, **kwargs)
