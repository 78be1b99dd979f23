"""Classical binary Hopfield network: storage, updates, energy, capacity."""

from __future__ import annotations

import pytest
import torch

from ahop.classical import (
    CAPACITY_THEORY,
    BinaryHopfield,
    recall_fraction,
    recall_statistics,
    to_binary,
    to_bipolar,
)


def random_patterns(count: int, units: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (count, units), generator=generator) * 2.0 - 1.0


def test_hebbian_weights_are_symmetric_with_zero_diagonal() -> None:
    patterns = random_patterns(5, 40)
    net = BinaryHopfield(40).store(patterns)
    torch.testing.assert_close(net.weight, net.weight.T)
    assert torch.all(net.weight.diagonal() == 0)
    expected = patterns.T @ patterns / 40
    expected.fill_diagonal_(0)
    torch.testing.assert_close(net.weight, expected)


def test_energy_never_increases_under_single_unit_updates() -> None:
    net = BinaryHopfield(60).store(random_patterns(12, 60))
    generator = torch.Generator().manual_seed(1)
    states = torch.randint(0, 2, (20, 60), generator=generator) * 2.0 - 1.0
    energy = net.energy(states)
    for _ in range(3):
        for unit in torch.randperm(60, generator=generator).tolist():
            field = states @ net.weight[:, unit]
            states[:, unit] = net._sign(field, states[:, unit])
            new_energy = net.energy(states)
            assert torch.all(new_energy <= energy + 1e-5)
            energy = new_energy


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_recovers_stored_patterns_from_corrupted_cues(mode: str) -> None:
    patterns = random_patterns(5, 200, seed=3)
    net = BinaryHopfield(200).store(patterns)
    generator = torch.Generator().manual_seed(0)
    flips = torch.rand(patterns.shape, generator=generator) < 0.1
    states, sweeps = net.recall(
        torch.where(flips, -patterns, patterns), mode=mode, generator=generator
    )
    assert torch.equal(states, patterns)
    assert sweeps >= 1


def test_capacity_well_below_and_above_theory() -> None:
    units = 200
    below = recall_fraction(units, int(0.05 * units), flip_fraction=0.0, seed=0)
    above = recall_fraction(units, int(0.3 * units), flip_fraction=0.0, seed=0)
    assert below >= 0.95
    assert above <= 0.2
    assert 0.05 < CAPACITY_THEORY < 0.3


def test_recall_statistics_exact_recall_and_overlap() -> None:
    """Below capacity every pattern is a fixed point (overlap 1); far above it exact recall
    fails while the final states still overlap their patterns; ``recall_fraction`` is the first
    of the two numbers."""
    assert recall_statistics(200, 10, seed=1) == (1.0, 1.0)
    exact, overlap = recall_statistics(200, 60, flip_fraction=0.1, mode="async", seed=1)
    assert exact < 0.2 and 0.0 < overlap < 0.95
    assert exact == recall_fraction(200, 60, flip_fraction=0.1, mode="async", seed=1)
    with pytest.raises(ValueError, match="flip_fraction"):
        recall_statistics(10, 2, flip_fraction=1.5)


def test_conversions_round_trip() -> None:
    binary = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert torch.equal(to_binary(to_bipolar(binary)), binary)


def test_bad_inputs_raise() -> None:
    net = BinaryHopfield(4)
    with pytest.raises(ValueError, match="bipolar"):
        net.store(torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="units"):
        net.store(torch.ones(2, 5))
    with pytest.raises(ValueError, match="allowed values"):
        net.recall(torch.ones(1, 4), mode="chaotic")
    with pytest.raises(ValueError):
        BinaryHopfield(0)
