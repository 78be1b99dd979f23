"""The classical binary Hopfield network (Hopfield 1982): Hebbian storage, updates, energy.

States are bipolar (``±1``) vectors of ``N`` units; ``{0, 1}`` patterns convert with
:func:`to_bipolar`. With ``P`` random patterns, recall is near perfect well below the capacity
``P ≈ 0.138 N`` (Amit, Gutfreund & Sompolinsky 1985) and breaks down above it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Storage capacity of the Hebbian rule for random patterns, as a fraction of the units.
CAPACITY_THEORY = 0.138


def to_bipolar(patterns: Tensor) -> Tensor:
    """``{0, 1}`` (or any values thresholded at 0.5) -> ``±1`` floats."""
    return torch.where(patterns > 0.5, 1.0, -1.0).to(torch.float32)


def to_binary(states: Tensor) -> Tensor:
    """``±1`` -> ``{0, 1}`` floats."""
    return (states > 0).to(torch.float32)


def _check_bipolar(states: Tensor, name: str, units: int | None = None) -> None:
    if states.dim() != 2:
        raise ValueError(f"{name} must be (batch, N), got shape {tuple(states.shape)}")
    if units is not None and states.shape[1] != units:
        raise ValueError(f"{name} have {states.shape[1]} units, the network has {units}")
    if not bool(((states == 1) | (states == -1)).all()):
        raise ValueError(f"{name} must be bipolar (±1); convert {{0, 1}} data with to_bipolar()")


class BinaryHopfield(nn.Module):
    """A binary Hopfield network of ``num_units`` units with Hebbian weights.

    ``W = (1/N) Σ_μ ξ^μ ξ^μᵀ`` with zero diagonal; energy ``E(s) = -½ sᵀ W s``; a unit's update
    is ``s_i <- sign(Σ_j W_ij s_j)`` (ties keep the current state, so fixed points stay fixed).
    """

    def __init__(self, num_units: int) -> None:
        super().__init__()
        if num_units < 1:
            raise ValueError(f"num_units must be >= 1, got {num_units}")
        self.num_units = num_units
        self.register_buffer("weight", torch.zeros(num_units, num_units))

    def store(self, patterns: Tensor) -> BinaryHopfield:
        """Store ``(P, N)`` bipolar patterns with the Hebbian rule (replacing earlier ones)."""
        _check_bipolar(patterns, "patterns", self.num_units)
        patterns = patterns.to(self.weight)
        weight = patterns.T @ patterns / self.num_units
        weight.fill_diagonal_(0.0)
        self.weight.copy_(weight)
        return self

    def energy(self, states: Tensor) -> Tensor:
        """``E(s) = -½ sᵀ W s`` per state: ``(B, N) -> (B,)``."""
        states = states.to(self.weight)
        return -0.5 * ((states @ self.weight) * states).sum(-1)

    @staticmethod
    def _sign(field: Tensor, current: Tensor) -> Tensor:
        return torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, current))

    def step_sync(self, states: Tensor) -> Tensor:
        """One synchronous update of every unit at once."""
        return self._sign(states @ self.weight, states)

    def sweep_async(self, states: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One asynchronous sweep: every unit once, in a random order shared by the batch."""
        states = states.clone()
        for unit in torch.randperm(self.num_units, generator=generator).tolist():
            field = states @ self.weight[:, unit]
            states[:, unit] = self._sign(field, states[:, unit])
        return states

    def recall(
        self,
        cues: Tensor,
        mode: str = "async",
        max_sweeps: int = 50,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, int]:
        """Update ``(B, N)`` bipolar cues until no unit changes (or ``max_sweeps``).

        Returns the final states and the number of sweeps run.
        """
        updates = {
            "sync": lambda s: self.step_sync(s),
            "async": lambda s: self.sweep_async(s, generator),
        }
        if mode not in updates:
            raise ValueError(f"unknown update mode {mode!r}; allowed values: {', '.join(updates)}")
        _check_bipolar(cues, "cues", self.num_units)
        states = cues.to(self.weight)
        sweeps = 0
        for sweeps in range(1, max_sweeps + 1):  # noqa: B007 - reported
            new_states = updates[mode](states)
            if torch.equal(new_states, states):
                break
            states = new_states
        return states, sweeps


def recall_statistics(
    num_units: int,
    num_patterns: int,
    flip_fraction: float = 0.0,
    mode: str = "sync",
    max_sweeps: int = 20,
    seed: int = 0,
) -> tuple[float, float]:
    """Store ``num_patterns`` random ±1 patterns of ``num_units`` units and recall each from a cue
    with ``flip_fraction`` of its bits flipped (0: are the stored patterns fixed points?).

    Returns:
        ``(exact, overlap)``: the fraction of patterns recovered in every bit, and the mean
        overlap ``s·ξ / N`` of the final states with their patterns (1 = every bit right; near
        the capacity a retrieval state keeps a few wrong bits, ~0.97).
    """
    if not 0.0 <= flip_fraction <= 1.0:
        raise ValueError(f"flip_fraction must be in [0, 1], got {flip_fraction}")
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, 2, (num_patterns, num_units), generator=generator) * 2.0 - 1.0
    network = BinaryHopfield(num_units).store(patterns)
    flips = torch.rand(patterns.shape, generator=generator) < flip_fraction
    cues = torch.where(flips, -patterns, patterns)
    states, _ = network.recall(cues, mode=mode, max_sweeps=max_sweeps, generator=generator)
    return float((states == patterns).all(dim=1).float().mean()), float((states * patterns).mean())


def recall_fraction(
    num_units: int,
    num_patterns: int,
    flip_fraction: float = 0.0,
    mode: str = "sync",
    max_sweeps: int = 20,
    seed: int = 0,
) -> float:
    """Fraction of ``num_patterns`` random patterns recovered exactly from cues with
    ``flip_fraction`` of their bits flipped (0 = are the stored patterns fixed points?); the
    first number of :func:`recall_statistics`."""
    return recall_statistics(num_units, num_patterns, flip_fraction, mode, max_sweeps, seed)[0]
