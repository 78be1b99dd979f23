"""Hopfield, HopfieldLayer, HopfieldPooling: shapes, options, masks, the plain preset."""

from __future__ import annotations

import pytest
import torch

from ahop.functional import retrieve
from ahop.layers import Hopfield, HopfieldLayer, HopfieldPooling
from ahop.similarity import SIMILARITIES


def tokens(batch: int = 3, length: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("similarity", SIMILARITIES.names())
def test_every_similarity_trains_inside_the_layer(similarity: str) -> None:
    layer = Hopfield(16, num_heads=2, similarity=similarity, update_steps_max=1)
    out = layer(tokens())
    assert out.shape == (3, 6, 16)
    out.square().mean().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_tuple_input_multihead_shapes_and_association() -> None:
    stored, state = tokens(length=9, size=12), tokens(length=4, size=16, seed=1)
    layer = Hopfield(
        16,
        stored_pattern_size=12,
        pattern_projection_size=12,
        hidden_size=8,
        num_heads=4,
        output_size=5,
    )
    assert layer((stored, state, stored)).shape == (3, 4, 5)
    weights = layer.get_association_matrix((stored, state, stored))
    assert weights.shape == (3, 4, 4, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 4))


def test_batch_first_false_transposes() -> None:
    layer = Hopfield(16).eval()
    x = tokens()
    other = Hopfield(16, batch_first=False)
    other.load_state_dict(layer.state_dict())
    torch.testing.assert_close(other(x.transpose(0, 1)).transpose(0, 1), layer(x))


def test_padding_does_not_change_outputs() -> None:
    layer = Hopfield(16, similarity="manhattan").eval()
    stored, state = tokens(length=5), tokens(length=2, seed=1)
    padded = torch.cat([stored, 100 * torch.randn(3, 4, 16)], dim=1)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[:, 5:] = True
    torch.testing.assert_close(layer((padded, state, padded), mask), layer((stored, state, stored)))


def test_association_mask_blocks_pairs() -> None:
    layer = Hopfield(16)
    x = tokens()
    causal = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    weights = layer.get_association_matrix(x, association_mask=causal)
    assert torch.all(weights[..., causal] == 0)


def test_dropout_only_in_training() -> None:
    layer = Hopfield(16, dropout=0.5)
    x = tokens()
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


@pytest.mark.parametrize("similarity", ["dot", "manhattan", "adaptive"])
@pytest.mark.parametrize("extra_steps", [0, 3])
def test_plain_preset_reproduces_retrieve(similarity: str, extra_steps: int) -> None:
    keys, queries = torch.rand(2, 30, 10), torch.rand(2, 4, 10)
    layer = Hopfield.plain(
        similarity=similarity,
        scaling=5.0,
        update_steps_max=extra_steps,
        update_steps_eps=0.0,
        input_size=10,
    )
    want = retrieve(queries, keys, similarity=layer.similarity, beta=5.0, steps=extra_steps + 1)
    torch.testing.assert_close(layer((keys, queries, keys)), want)
    assert not list(layer.parameters()) or similarity == "adaptive"


def test_hopfield_layer_lookup_memory() -> None:
    layer = HopfieldLayer(16, quantity=7, lookup_weights_as_separated=True, output_size=3)
    assert layer.quantity == 7
    assert layer(tokens()).shape == (3, 6, 3)
    assert layer.get_association_matrix(tokens()).shape == (3, 1, 6, 7)
    fixed = HopfieldLayer(
        16, quantity=7, lookup_weights_as_separated=True, lookup_targets_as_trainable=False
    )
    assert "lookup_targets" in dict(fixed.named_buffers())


def test_hopfield_pooling_shape_and_padding_invariance() -> None:
    pooling = HopfieldPooling(16, quantity=3, hidden_size=8, num_heads=2, output_size=4).eval()
    bags = tokens(length=5)
    assert pooling(bags).shape == (3, 12)
    padded = torch.cat([bags, torch.randn(3, 3, 16)], dim=1)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[:, 5:] = True
    torch.testing.assert_close(pooling(padded, mask), pooling(bags))
    assert pooling.get_association_matrix(padded, mask)[..., 5:].abs().max() == 0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="scaling"):
        Hopfield(16, scaling=0.0)
    with pytest.raises(ValueError, match="num_heads"):
        Hopfield(16, num_heads=0)
    with pytest.raises(ValueError, match="allowed values"):
        Hopfield(16, similarity="hamming")
    with pytest.raises(ValueError, match="allowed values"):
        Hopfield(16, separation="argmin")
    with pytest.raises(ValueError, match="3-d"):
        Hopfield(16)(torch.randn(4, 16))
    with pytest.raises(ValueError, match="quantity"):
        HopfieldPooling(16, quantity=0)
