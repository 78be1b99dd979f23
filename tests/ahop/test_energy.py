"""Energies: Lagrangians are the separations' antiderivatives, CCCP descent along iterative
retrieval, descent along continuous-time (dt) retrieval for every supported pair, fixed points are
stationary, errors for pairs without an energy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ahop import Hopfield, HopfieldLayer, HopfieldPooling, lagrangian
from ahop import uhn_energy as energy
from ahop.energy import LAGRANGIANS, network_energy
from ahop.functional import retrieve
from ahop.separation import SEPARATIONS, build_separation
from ahop.similarity import build_similarity

#: every separation with a Lagrangian, with the options that give it one
WITH_ENERGY = {
    "softmax": {},
    "identity": {},
    "sparsemax": {},
    "entmax15": {},
    "topk": {"k": 3},
    "max": {},
    "polynomial": {"order": 3, "normalize": False, "rescale": False},
}
SIMILARITIES = {
    "dot": {},
    "cosine": {},
    "euclidean": {},
    "euclidean squared": {"squared": True},
    "manhattan": {},
    "adaptive": {"beta_dis": 0.3, "beta_dot": 0.3},
    "uhop": {},
}
#: per separation: a pattern scale that keeps the steps tame (identity and the polynomial have
#: energies unbounded below with some similarities: E descends to -inf, fast)
SCALES = {"identity": 0.1, "polynomial": 0.1}
DTS = {"identity": 1e-3, "polynomial": 1e-3}


def patterns(seed: int = 0, memories: int = 12, queries: int = 5, dim: int = 6, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(memories, dim, generator=g, dtype=torch.float64) * scale
    return keys, torch.randn(queries, dim, generator=g, dtype=torch.float64) * scale


def test_registry_covers_every_separation() -> None:
    assert set(LAGRANGIANS.names()) == set(SEPARATIONS.names()) == set(WITH_ENERGY)


@pytest.mark.parametrize("name", list(WITH_ENERGY))
@pytest.mark.parametrize("masked", [False, True])
def test_lagrangian_gradient_is_the_separation(name: str, masked: bool) -> None:
    separation = build_separation(name, beta=0.7, **WITH_ENERGY[name])
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 4, 9, generator=g, dtype=torch.float64).requires_grad_()
    mask = None
    if masked:
        mask = torch.rand(3, 4, 9, generator=g) < 0.3
        mask[0, 0] = True  # a query with every memory masked: L = 0, gradient 0
    values = lagrangian(separation, scores, mask)
    assert values.shape == (3, 4) and torch.isfinite(values).all()
    (grad,) = torch.autograd.grad(values.sum(), scores)
    torch.testing.assert_close(grad, separation(scores, mask).detach(), atol=1e-7, rtol=1e-6)
    if masked:
        assert values[0, 0] == 0


def test_softmax_energy_is_the_modern_hopfield_formula() -> None:
    keys, queries = patterns()
    got = energy(queries, keys, beta=0.5)
    want = 0.5 * queries.square().sum(-1) - torch.logsumexp(0.5 * queries @ keys.T, -1) / 0.5
    torch.testing.assert_close(got, want)
    batched = energy(queries.expand(2, -1, -1), keys.expand(2, -1, -1), beta=0.5)
    assert batched.shape == (2, 5)


@pytest.mark.parametrize("name", list(WITH_ENERGY))
def test_energy_never_increases_along_iterative_dot_retrieval(name: str) -> None:
    """CCCP: the update v <- M^T sep(Mv) is a majorise-minimise step of E."""
    keys, queries = patterns(seed=2, scale=SCALES.get(name, 1.0))
    result = retrieve(
        queries,
        keys,
        beta=2.0,
        separation=name,
        steps=15,
        return_energies=True,
        **WITH_ENERGY[name],
    )
    steps = result.energies.diff(dim=0)
    assert result.energies.shape == (result.steps + 1, 5)
    assert (steps <= 1e-9).all(), steps.max()
    assert (steps < -1e-6).any()  # it actually moved


def test_uhop_linear_kernel_energy_descends_along_iterative_retrieval() -> None:
    keys, queries = patterns(seed=3)
    similarity = build_similarity("uhop", dim=6, separation_epochs=20)
    similarity.store(keys)
    result = retrieve(
        queries, keys, similarity=similarity, beta=0.5, steps=15, return_energies=True
    )
    assert (result.energies.diff(dim=0) <= 1e-9).all()


@pytest.mark.parametrize("similarity", list(SIMILARITIES))
@pytest.mark.parametrize("name", list(WITH_ENERGY))
def test_energy_descends_along_continuous_dynamics(similarity: str, name: str) -> None:
    keys, queries = patterns(seed=4, scale=SCALES.get(name, 1.0))
    options = {**SIMILARITIES[similarity], **WITH_ENERGY[name]}
    result = retrieve(
        queries,
        keys,
        similarity=similarity.split()[0],
        separation=name,
        beta=1.0,
        steps=8,
        dt=DTS.get(name, 0.02),
        return_energies=True,
        **options,
    )
    steps = result.energies.diff(dim=0)
    assert torch.isfinite(result.energies).all()
    assert (steps <= 1e-7).all(), steps.max()
    assert (steps < 0).any()


def test_damped_cccp_descends_for_every_dt_up_to_one() -> None:
    keys, queries = patterns(seed=5)
    for dt in (0.1, 0.5, 1.0):
        result = retrieve(queries, keys, beta=3.0, steps=10, dt=dt, return_energies=True)
        assert (result.energies.diff(dim=0) <= 1e-9).all()
    # dt = 1 is the ordinary update
    torch.testing.assert_close(
        retrieve(queries, keys, beta=3.0, steps=4, dt=1.0),
        retrieve(queries, keys, beta=3.0, steps=4),
    )


def _energy_gradient(similarity, separation, state, keys) -> torch.Tensor:
    state = state.detach().requires_grad_()
    (grad,) = torch.autograd.grad(network_energy(similarity, separation, state, keys).sum(), state)
    return grad


@pytest.mark.parametrize("name", ["softmax", "sparsemax", "entmax15"])
def test_fixed_points_of_the_update_are_stationary_points(name: str) -> None:
    keys, queries = patterns(seed=6)
    result = retrieve(queries, keys, separation=name, beta=0.3, steps=500, eps=1e-12)
    similarity, separation = build_similarity("dot"), build_separation(name, beta=0.3)
    # a fixed point: one more update leaves it where it is ...
    torch.testing.assert_close(retrieve(result, keys, separation=name, beta=0.3), result)
    # ... and the energy's gradient vanishes there
    grad = _energy_gradient(similarity, separation, result, keys)
    assert grad.abs().max() < 1e-8


def test_gradient_flow_converges_to_stationary_points_for_other_similarities() -> None:
    keys, queries = patterns(seed=7)
    similarity = build_similarity("euclidean", squared=True)
    separation = build_separation("softmax", beta=0.5)
    out = retrieve(queries, keys, similarity=similarity, separation=separation, steps=2000, dt=0.1)
    assert _energy_gradient(similarity, separation, out, keys).abs().max() < 1e-8


def test_update_fixed_points_are_not_stationary_for_a_distance_similarity() -> None:
    """euclidean (squared) + softmax: grad E = 3v - 2 M^T p, so the update's fixed points
    (v = M^T p) are not stationary points of E: the documented reason dt takes gradient steps."""
    keys, queries = patterns(seed=8)
    similarity = build_similarity("euclidean", squared=True)
    separation = build_separation("softmax", beta=0.05)
    fixed = retrieve(queries, keys, similarity=similarity, separation=separation, steps=500)
    torch.testing.assert_close(
        retrieve(fixed, keys, similarity=similarity, separation=separation), fixed
    )
    grad = _energy_gradient(similarity, separation, fixed, keys)
    torch.testing.assert_close(grad, fixed.detach())  # 3v - 2v = v, not 0


def test_return_energies_reports_each_state_and_keeps_the_output() -> None:
    keys, queries = patterns(seed=9)
    plain = retrieve(queries, keys, beta=2.0, steps=3)
    result = retrieve(queries, keys, beta=2.0, steps=3, return_energies=True)
    torch.testing.assert_close(result.output, plain)
    torch.testing.assert_close(result.energies[0], energy(queries, keys, beta=2.0))
    torch.testing.assert_close(result.energies[-1], energy(result.output, keys, beta=2.0))
    assert retrieve(queries, keys, return_details=True).energies is None


def test_masked_memories_are_left_out_of_the_energy() -> None:
    keys, queries = patterns(seed=10)
    mask = torch.zeros(5, 12, dtype=torch.bool)
    mask[:, 6:] = True
    torch.testing.assert_close(energy(queries, keys, mask=mask), energy(queries, keys[:6]))
    mask[0] = True
    assert torch.isfinite(energy(queries, keys, mask=mask)).all()


class _Custom(nn.Module):
    def forward(self, scores, mask=None):
        return scores.relu()


def test_pairs_without_an_energy_raise() -> None:
    keys, queries = patterns()
    with pytest.raises(ValueError, match="normalize=True or rescale=True has no energy"):
        energy(queries, keys, separation="polynomial")
    with pytest.raises(ValueError, match="no energy"):
        energy(queries, keys, separation="polynomial", normalize=False)
    with pytest.raises(ValueError, match="_Custom has no energy"):
        energy(queries, keys, separation=_Custom())
    with pytest.raises(ValueError, match="no energy"):
        retrieve(queries, keys, separation="polynomial", dt=0.1)
    with pytest.raises(ValueError, match="no energy"):
        retrieve(queries, keys, separation="polynomial", return_energies=True)
    with pytest.raises(ValueError, match="no energy"):
        Hopfield.plain(separation="polynomial").get_energies(queries[None].float())
    with pytest.raises(ValueError, match="dt must be"):
        retrieve(queries, keys, dt=0.0)
    with pytest.raises(ValueError, match="auto-association"):
        retrieve(queries, keys, keys.clone(), dt=0.1)
    # gradient steps through a first-order-only backward cannot be trained through ...
    trained = queries.clone().requires_grad_()
    with pytest.raises(ValueError, match="first-order only"):
        retrieve(trained, keys, similarity="manhattan", dt=0.1)
    # ... but run without gradients, and cosine trains through them
    with torch.no_grad():
        retrieve(trained, keys, similarity="manhattan", dt=0.1)
    retrieve(trained, keys, similarity="cosine", dt=0.1, steps=2).sum().backward()
    assert trained.grad is not None and torch.isfinite(trained.grad).all()


def test_hopfield_layers_report_energies_of_every_update_step() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 7, 8)
    layer = Hopfield.plain(scaling=2.0, update_steps_max=4, update_steps_eps=0.0)
    energies = layer.get_energies(x)
    assert energies.shape == (5, 2, 1, 7)
    assert (energies.diff(dim=0) <= 1e-5).all()
    torch.testing.assert_close(energies[0, :, 0], energy(x, x, beta=2.0))
    assert Hopfield.plain().get_energies(x).shape == (1, 2, 1, 7)
    continuous = Hopfield.plain(update_steps_max=3, update_steps_eps=0.0, update_steps_dt=0.5)
    assert (continuous.get_energies(x).diff(dim=0) <= 1e-5).all()
    lookup = HopfieldLayer(8, quantity=5, num_heads=2, update_steps_max=2, update_steps_eps=0.0)
    assert lookup.get_energies(x).shape == (3, 2, 2, 7)
    pooling = HopfieldPooling(8, quantity=3, update_steps_max=1)
    assert pooling.get_energies(x).shape == (2, 2, 1, 3)
    with pytest.raises(ValueError, match="update_steps_dt"):
        Hopfield.plain(update_steps_dt=-1.0)


def test_ahop_energy_is_the_module_and_the_function_has_its_own_name() -> None:
    """``ahop.energy`` is the module (it was shadowed by its function); the function is
    ``ahop.uhn_energy`` (also ``ahop.energy.uhn_energy`` and ``ahop.energy.energy``); calling
    the module, as ``from ahop import energy; energy(...)`` did, still works but warns."""
    import types

    import ahop
    import ahop.energy as energy_module

    assert isinstance(ahop.energy, types.ModuleType) and ahop.energy is energy_module
    assert ahop.uhn_energy is energy_module.uhn_energy is energy_module.energy
    assert "uhn_energy" in ahop.__all__ and "energy" not in ahop.__all__
    queries, keys = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.warns(DeprecationWarning, match="call ahop.uhn_energy"):
        old = ahop.energy(queries, keys, beta=0.5)
    torch.testing.assert_close(old, ahop.uhn_energy(queries, keys, beta=0.5))
