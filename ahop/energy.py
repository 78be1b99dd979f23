"""Energies of the universal Hopfield family: ``E(v) = Q(v) - L_sep(sim(M, v))``.

Universal Hopfield Networks (Millidge et al. 2022) give one energy for the whole family,
``E(v) = ½||v||² - L_h(sim(M, v))``, where the *Lagrangian* ``L_h`` of the separation satisfies
``dL_h / dh = sep(h)``. The Lagrangians of the registered separations (:data:`LAGRANGIANS`, with
the separation's ``beta``; ``h`` = scores, masked entries left out):

======================  =====================================================================
separation              ``L(h)``
======================  =====================================================================
``softmax``             ``logsumexp(beta h) / beta`` (Ramsauer et al. 2020, without constants)
``identity``            ``½ sum h²``
``polynomial``          ``sum |h|^(n+1) / (n+1)``; only for ``normalize=False, rescale=False``
                        (the row-rescaled / sum-normalised maps are not gradient fields, so they
                        have no Lagrangian: ``ValueError``)
``sparsemax``           ``max_{p in simplex} <p, beta h> + ½ sum (p - p²)``, over ``beta``: the
                        Fenchel conjugate of the Tsallis-2 entropy; its gradient is
                        ``sparsemax(beta h)`` (Danskin; Hu et al. 2023's sparse Hopfield energy)
``entmax15``            the same with the Tsallis-1.5 entropy ``(4/3) sum (p - p^1.5)``
``topk``                ``logsumexp(beta h_topk) / beta`` = ``max`` over k-subsets of the
                        subset's log-sum-exp: convex, gradient = softmax over the top k (a.e.)
``max``                 ``max_i h_i``: convex, gradient = one-hot on the best match (a.e.); the
                        ``beta -> inf`` limit of softmax's Lagrangian
======================  =====================================================================

Every registered Lagrangian is convex. The first term is ``½||v||²`` except for U-Hop, whose
kernelised energy (Wu et al. 2024, Theorem 2.1) uses ``½ K(v, v) = ½||Phi(v)||²``
(:data:`ENERGY_FORMS`).

**What** :func:`ahop.functional.retrieve` **descends** (auto-association, values = keys):

* ``dot`` (and ``uhop`` with a linear feature map): the update ``v <- M^T sep(sim(M, v))`` is the
  concave-convex procedure (CCCP) step of ``E`` (convex ``Q``, concave ``-L(affine in v)``), so
  ``E`` never increases along iterative retrieval, for every registered separation; its fixed
  points are the stationary points of ``E``. The continuous-time option ``dt`` runs
  ``v <- v + dt (T(v) - v)``, which also descends ``E`` for every ``0 < dt <= 1`` (a convex
  combination on the CCCP surrogate). For ``dot`` that is Euler on ``dv/dt = -grad E(v)``.
  ``identity`` (and low-order polynomials) can make ``E`` unbounded below: the energy still
  descends, towards minus infinity.
* every other similarity (``cosine``, ``euclidean``, ``manhattan``, ``adaptive``, ``uhop`` with an
  ``mlp`` map, custom modules): ``E`` is well defined and reported, but retrieve's discrete update
  is neither its gradient step nor its CCCP step (e.g. with ``euclidean, squared=True`` and
  softmax, ``grad E = 3v - 2 M^T p``: the stationary points are not the update's fixed points),
  so the energy can rise along it. With ``dt`` retrieve instead takes the gradient step
  ``v <- v - dt grad E(v)`` (autograd), which descends ``E`` for small enough ``dt`` (a.e. for the
  non-smooth ``manhattan``, ``euclidean`` and ``max``). Caveat for ``cosine``: the scores do not
  depend on ``||v||``, so ``E(r u) = ½ r² - L(u)`` has no minimiser: the gradient flow shrinks the
  state towards 0 along the best direction (the energy's infimum). ``identity`` / polynomial
  separations with distance similarities are unbounded below (``-L`` grows faster than ``½||v||²``). A-Hop's paper analyses
  ``-logsumexp(s(M, x))`` without the quadratic term; we keep UHN's form for every similarity.

Custom separation modules have no Lagrangian unless one is registered here under the name their
class is registered with in :data:`ahop.separation.SEPARATIONS`.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ahop.registry import Registry
from ahop.separation import SEPARATIONS, build_separation
from ahop.similarity import SIMILARITIES, build_similarity

#: ``lagrangian(separation module, float scores (..., Q, N), mask | None) -> L (..., Q)``
Lagrangian = Callable[[nn.Module, Tensor, "Tensor | None"], Tensor]

LAGRANGIANS: Registry[Tensor] = Registry("separation Lagrangian")


def _registered_name(registry: Registry, module: nn.Module) -> str | None:
    # exact class match: a subclass may change the forward, and with it the Lagrangian
    for name in registry.names():
        if registry.get(name) is type(module):
            return name
    return None


def _row_empty(mask: Tensor | None, scores: Tensor) -> Tensor | None:
    if mask is None:
        return None
    return torch.broadcast_to(mask, scores.shape).all(dim=-1)


def _drop_empty(values: Tensor, empty: Tensor | None) -> Tensor:
    # a query whose memories are all masked gets weight 0 everywhere: L = 0 there
    return values if empty is None else values.masked_fill(empty, 0.0)


def _masked_logits(separation: nn.Module, scores: Tensor, mask: Tensor | None) -> Tensor:
    logits = separation.beta * scores
    if mask is None:
        return logits
    empty = torch.broadcast_to(mask, logits.shape).all(dim=-1, keepdim=True)
    # masked entries at -inf, fully masked rows at 0 (finite gradients; zeroed afterwards)
    return logits.masked_fill(mask, float("-inf")).masked_fill(empty, 0.0)


def _zero_masked(scores: Tensor, mask: Tensor | None) -> Tensor:
    return scores if mask is None else scores.masked_fill(mask, 0.0)


@LAGRANGIANS.register("softmax")
def _softmax(separation: nn.Module, scores: Tensor, mask: Tensor | None) -> Tensor:
    lse = torch.logsumexp(_masked_logits(separation, scores, mask), dim=-1) / separation.beta
    return _drop_empty(lse, _row_empty(mask, scores))


@LAGRANGIANS.register("topk")
def _topk(separation: nn.Module, scores: Tensor, mask: Tensor | None) -> Tensor:
    logits = _masked_logits(separation, scores, mask)
    best = logits.topk(min(separation.k, logits.shape[-1]), dim=-1).values
    return _drop_empty(torch.logsumexp(best, dim=-1) / separation.beta, _row_empty(mask, scores))


@LAGRANGIANS.register("max")
def _max(separation: nn.Module, scores: Tensor, mask: Tensor | None) -> Tensor:
    filled = scores if mask is None else scores.masked_fill(mask, float("-inf"))
    empty = _row_empty(mask, scores)
    if empty is not None:
        filled = filled.masked_fill(empty.unsqueeze(-1), 0.0)
    return _drop_empty(filled.amax(dim=-1), empty)


@LAGRANGIANS.register("identity")
def _identity(separation: nn.Module, scores: Tensor, mask: Tensor | None) -> Tensor:
    return 0.5 * _zero_masked(scores, mask).square().sum(dim=-1)


@LAGRANGIANS.register("polynomial")
def _polynomial(separation: nn.Module, scores: Tensor, mask: Tensor | None) -> Tensor:
    if separation.normalize or separation.rescale:
        raise ValueError(
            "polynomial separation with normalize=True or rescale=True has no energy: dividing "
            "by the row's largest |score| or by the sum of the weights makes the weights a "
            "non-gradient field (no Lagrangian). Use separation_kwargs {normalize: false, "
            "rescale: false} (the raw sign(s)|s|^n of dense associative memories) for an energy"
        )
    power = separation.order + 1
    return (_zero_masked(scores, mask).abs().pow(power) / power).sum(dim=-1)


def _tsallis(alpha: float) -> Lagrangian:
    """Fenchel conjugate of the Tsallis-alpha entropy at ``beta h``, over ``beta``."""

    def lagrangian(separation: nn.Module, scores: Tensor, mask: Tensor | None) -> Tensor:
        weights = separation(scores, mask)  # the maximiser p (0 on masked entries)
        logits = _zero_masked(separation.beta * scores, mask)
        entropy = (weights - weights.pow(alpha)).sum(dim=-1) / (alpha * (alpha - 1))
        total = (weights * logits).sum(dim=-1) + entropy
        return _drop_empty(total / separation.beta, _row_empty(mask, scores))

    return lagrangian


LAGRANGIANS.register("sparsemax")(_tsallis(2.0))
LAGRANGIANS.register("entmax15")(_tsallis(1.5))


def lagrangian(separation: nn.Module, scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """``L_sep(scores)`` per query, ``(..., Q, N) -> (..., Q)``; ``dL / dscores = separation``.

    Raises:
        ValueError: the separation has no Lagrangian (unregistered module, or polynomial with
            row rescaling / normalisation).
    """
    name = _registered_name(SEPARATIONS, separation)
    if name is None or name not in LAGRANGIANS:
        raise ValueError(
            f"separation {type(separation).__name__} has no energy: no Lagrangian is registered "
            f"for it (energies exist for {', '.join(LAGRANGIANS.names())}; register one with "
            "ahop.energy.LAGRANGIANS.register(<its SEPARATIONS name>))"
        )
    floats = scores.to(torch.promote_types(scores.dtype, torch.float32))
    return LAGRANGIANS.get(name)(separation, floats, mask)


# --------------------------------------------------------------------------- similarity side


@dataclass(frozen=True)
class EnergyForm:
    """How a similarity enters the energy.

    Attributes:
        quadratic: the state term ``Q(similarity, v (..., Q, d)) -> (..., Q)``.
        cccp: ``cccp(similarity)`` is true when retrieve's update (values = keys) is the CCCP
            step of ``E``, so it and its damped ``dt`` form descend ``E``.
        second_order: the similarity's backward is itself differentiable (needed to train
            through ``dt`` gradient steps, which differentiate ``grad E``).
    """

    quadratic: Callable[[nn.Module, Tensor], Tensor]
    cccp: Callable[[nn.Module], bool]
    second_order: bool = True


def _half_square(similarity: nn.Module, state: Tensor) -> Tensor:
    state = state.to(torch.promote_types(state.dtype, torch.float32))
    return 0.5 * state.square().sum(dim=-1)


def _half_kernel(similarity: nn.Module, state: Tensor) -> Tensor:
    return 0.5 * similarity.phi(state).square().sum(dim=-1)


def _never(similarity: nn.Module) -> bool:
    return False


#: the energy form of each registered similarity, by its name in ``SIMILARITIES``
ENERGY_FORMS: Registry[EnergyForm] = Registry("similarity energy form")
ENERGY_FORMS.register("dot")(EnergyForm(_half_square, lambda s: True))
ENERGY_FORMS.register("cosine")(EnergyForm(_half_square, _never))
ENERGY_FORMS.register("euclidean")(EnergyForm(_half_square, _never, second_order=False))
ENERGY_FORMS.register("manhattan")(EnergyForm(_half_square, _never, second_order=False))
ENERGY_FORMS.register("adaptive")(EnergyForm(_half_square, _never, second_order=False))
ENERGY_FORMS.register("uhop")(EnergyForm(_half_kernel, lambda s: s.is_linear))
#: unregistered similarity modules: UHN's form, gradient steps only
DEFAULT_FORM = EnergyForm(_half_square, _never)


def energy_form(similarity: nn.Module) -> EnergyForm:
    """The :class:`EnergyForm` of a similarity module (:data:`DEFAULT_FORM` if unregistered)."""
    name = _registered_name(SIMILARITIES, similarity)
    return ENERGY_FORMS.get(name) if name in ENERGY_FORMS else DEFAULT_FORM


def check_energy(separation: nn.Module) -> None:
    """``ValueError`` unless the separation has a Lagrangian (checks options, computes nothing)."""
    lagrangian(separation, torch.zeros(1, 1), None)


def energy_from_scores(
    similarity: nn.Module,
    separation: nn.Module,
    state: Tensor,
    scores: Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """``E(v) = Q(v) - L(scores)`` from already computed ``scores = similarity(keys, v)``.

    Args:
        state: the state patterns ``v`` ``(..., Q, d)``.
        scores: their similarities to the memories ``(..., Q, N)``.

    Returns:
        one energy per state pattern ``(..., Q)`` (float32 or wider).
    """
    quadratic = energy_form(similarity).quadratic(similarity, state)
    return quadratic - lagrangian(separation, scores, mask)


def network_energy(
    similarity: nn.Module,
    separation: nn.Module,
    state: Tensor,
    keys: Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """The energy ``(..., Q)`` of state patterns ``(..., Q, d)`` in the network with memories
    ``keys (..., N, d)`` and the given (built) similarity and separation modules."""
    scores = similarity(keys, state)
    return energy_from_scores(similarity, separation, state, scores, mask)


def uhn_energy(
    queries: Tensor,
    keys: Tensor,
    similarity: str | nn.Module = "dot",
    separation: str | nn.Module = "softmax",
    beta: float = 1.0,
    mask: Tensor | None = None,
    **options: object,
) -> Tensor:
    """The UHN energy of each state pattern: ``E(v) = ½||v||² - L_sep(sim(keys, v))``.

    The function that :func:`ahop.functional.retrieve`'s update descends (for ``dot``, and for
    every pair with ``dt``); see the module docstring for each pair.

    Args:
        queries: state patterns ``(..., Q, d)``.
        keys: stored patterns ``(..., N, d)``.
        similarity, separation, beta, mask, **options: as for :func:`ahop.functional.retrieve`
            (a similarity built from a name is prepared for the keys the same way, e.g. U-Hop's
            stage I).

    Returns:
        one energy per query ``(..., Q)``.

    Raises:
        ValueError: the separation has no Lagrangian (e.g. polynomial with its default
            normalisation, or an unregistered module).
    """
    separation = build_separation(separation, beta=beta, **options)
    check_energy(separation)
    if not isinstance(similarity, nn.Module):
        similarity = build_similarity(
            similarity, dim=options.pop("dim", queries.shape[-1]), memories=keys, **options
        ).requires_grad_(False)  # lives for this call only
    return network_energy(similarity, separation, queries, keys, mask)


#: the name :func:`uhn_energy` had before (``ahop.energy.energy``)
energy = uhn_energy


def energy_gradient(
    similarity: nn.Module,
    separation: nn.Module,
    state: Tensor,
    keys: Tensor,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(E (..., Q), grad_v E (..., Q, d), scores (..., Q, N))`` by autograd.

    Differentiable (``create_graph``) when gradients are enabled and the state, the keys or the
    similarity's parameters require them; ``ValueError`` then for similarities whose backward is
    first-order only.
    """
    form = energy_form(similarity)
    need_graph = torch.is_grad_enabled() and (
        state.requires_grad
        or keys.requires_grad
        or any(p.requires_grad for p in similarity.parameters())
    )
    if need_graph and not form.second_order:
        raise ValueError(
            f"continuous-time retrieval (dt) with similarity {type(similarity).__name__} takes "
            "gradient steps on the energy, and its backward pass is first-order only, so it "
            "cannot be trained through: run it under torch.no_grad(), or use a dot, cosine or "
            "uhop similarity"
        )
    with torch.enable_grad():
        v = state if need_graph and state.requires_grad else state.detach().requires_grad_(True)
        scores = similarity(keys, v)
        values = energy_from_scores(similarity, separation, v, scores, mask)
        (grad,) = torch.autograd.grad(values.sum(), v, create_graph=need_graph)
    if not need_graph:
        values, scores = values.detach(), scores.detach()
    return values, grad.to(state.dtype), scores


class _EnergyModule(types.ModuleType):
    """This module, callable as the function it used to be shadowed by: ``ahop.energy(...)``
    (from ``from ahop import energy``) still computes :func:`uhn_energy`, with a
    ``DeprecationWarning``; ``ahop.energy`` itself is the module."""

    def __call__(self, *args: object, **kwargs: object) -> Tensor:
        warnings.warn(
            "calling the module ahop.energy is deprecated: call ahop.uhn_energy (or "
            "ahop.energy.uhn_energy)",
            DeprecationWarning,
            stacklevel=2,
        )
        return uhn_energy(*args, **kwargs)  # type: ignore[arg-type]


sys.modules[__name__].__class__ = _EnergyModule
