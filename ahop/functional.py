"""Stateless retrieval: ``projection . separation(similarity(K, q))``, one or more update steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ahop.checks import check_positive_ints
from ahop.energy import (
    check_energy,
    energy_form,
    energy_from_scores,
    energy_gradient,
    network_energy,
)
from ahop.separation import Softmax, build_separation
from ahop.similarity import DotSimilarity, build_similarity


@dataclass
class Retrieval:
    """What :func:`retrieve` returns with ``return_details=True`` (or ``return_energies=True``).

    Attributes:
        output: retrieved patterns ``(..., Q, d_v)``.
        weights: association weights of the last step ``(..., Q, N)``.
        steps: number of update steps run.
        energies: with ``return_energies=True``, the energy (:mod:`ahop.energy`) of the state
            before every step and of the output, ``(steps + 1, ..., Q)``; otherwise ``None``.
    """

    output: Tensor
    weights: Tensor
    steps: int
    energies: Tensor | None = None


def associate(
    queries: Tensor,
    keys: Tensor,
    similarity: nn.Module,
    separation: nn.Module,
    mask: Tensor | None = None,
) -> Tensor:
    """Association weights ``separation(similarity(keys, queries))`` of shape ``(..., Q, N)``.

    ``mask`` (bool, broadcastable to ``(..., Q, N)``) marks memories to ignore with ``True``.
    """
    return separation(similarity(keys, queries), mask)


def _is_fused(similarity: nn.Module, separation: nn.Module, mask: Tensor | None) -> bool:
    # exactly dot + softmax: torch's fused attention kernel computes the same thing faster
    return type(similarity) is DotSimilarity and type(separation) is Softmax and mask is None


def _one_step(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    similarity: nn.Module,
    separation: nn.Module,
    mask: Tensor | None,
    need_weights: bool,
) -> tuple[Tensor, Tensor | None]:
    if not need_weights and _is_fused(similarity, separation, mask):
        batch = queries.shape[:-2]
        if not batch == keys.shape[:-2] == values.shape[:-2]:  # broadcast_shapes is slow
            batch = torch.broadcast_shapes(batch, keys.shape[:-2], values.shape[:-2])

        def as_4d(x: Tensor) -> Tensor:  # the fused kernels want (B, heads, L, E)
            return x.expand(*batch, *x.shape[-2:]).reshape(-1, 1, *x.shape[-2:])

        dtype = torch.promote_types(queries.dtype, keys.dtype)
        output = F.scaled_dot_product_attention(
            as_4d(queries.to(dtype)),
            as_4d(keys.to(dtype)),
            as_4d(values.to(dtype)),
            scale=separation.beta,
        )
        return output.reshape(*batch, *output.shape[-2:]).to(values.dtype), None
    weights = associate(queries, keys, similarity, separation, mask)
    return weights.to(values.dtype) @ values, weights


def _step_with_energy(
    state: Tensor,
    keys: Tensor,
    values: Tensor,
    similarity: nn.Module,
    separation: nn.Module,
    mask: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    # the scores of a step give the energy of its input state for free
    scores = similarity(keys, state)
    energy = energy_from_scores(similarity, separation, state, scores, mask)
    weights = separation(scores, mask)
    return weights.to(values.dtype) @ values, weights, energy


def _private_similarity(
    similarity: str | nn.Module, queries: Tensor, keys: Tensor, options: dict[str, object]
) -> nn.Module:
    """The similarity module for one call; one built from a name is prepared for the keys and
    frozen (nobody can train parameters that live only for this call)."""
    if isinstance(similarity, nn.Module):
        return similarity
    built = build_similarity(
        similarity, dim=options.pop("dim", queries.shape[-1]), memories=keys, **options
    )
    if built._parameters or built._modules:  # (walking a parameterless module costs microseconds)
        built.requires_grad_(False)
    return built


def retrieve(
    queries: Tensor,
    keys: Tensor,
    values: Tensor | None = None,
    similarity: str | nn.Module = "dot",
    separation: str | nn.Module = "softmax",
    beta: float = 1.0,
    steps: int = 1,
    eps: float = 0.0,
    mask: Tensor | None = None,
    return_details: bool = False,
    dt: float | None = None,
    return_energies: bool = False,
    **options: object,
) -> Tensor | Retrieval:
    """Retrieve memories for each query: ``separation(similarity(keys, queries)) @ values``.

    Args:
        queries: state patterns ``(..., Q, d)``.
        keys: stored patterns ``(..., N, d)``.
        values: what each memory returns ``(..., N, d_v)``; ``None`` = the keys (auto-association).
            Other values = hetero-association.
        similarity: a registered name (``dot``, ``cosine``, ``euclidean``, ``manhattan``,
            ``adaptive``, ``uhop``) or a module. A similarity built from a name is prepared for
            the keys first (``uhop``: its stage I, the separation loss over the keys).
        separation: a registered name (``softmax``, ``max``, ``polynomial``, ``identity``,
            ``topk``, ``sparsemax``, ``entmax15``) or a module.
        beta: inverse temperature for the separations that take one (must be > 0).
        steps: maximum number of update steps; the output is fed back as the next query, which
            needs ``d_v == d``.
        eps: stop early once no query changes by more than ``eps`` (max abs difference).
        mask: bool ``(..., Q, N)`` (or broadcastable, e.g. ``(..., 1, N)`` for padding);
            ``True`` marks memories a query must ignore.
        return_details: return a :class:`Retrieval` (output, last weights, steps) instead of the
            output alone.
        dt: continuous-time retrieval: each step moves the state a fraction ``dt > 0`` along a
            descent direction of the energy (:mod:`ahop.energy`) instead of jumping to the
            update: ``v + dt (T(v) - v)`` for ``dot`` / linear ``uhop`` (descends for every
            ``dt <= 1``), ``v - dt grad E(v)`` otherwise (descends for small ``dt``).
            Auto-association only; the separation needs an energy. ``None``: the usual update.
        return_energies: also compute the energy of every state (``Retrieval.energies``,
            ``(steps + 1, ..., Q)``); implies ``return_details``. Costs one more similarity
            evaluation; never computed otherwise.
        **options: passed to the similarity / separation builders (``order``, ``k``,
            ``memory_budget``, ``squared``, ``dim`` ...).

    Returns:
        retrieved patterns ``(..., Q, d_v)`` (or a :class:`Retrieval`).
    """
    if values is None:
        values = keys
    if values.shape[-2] != keys.shape[-2]:
        raise ValueError(
            f"values must hold one row per memory: keys have N={keys.shape[-2]}, "
            f"values have {values.shape[-2]}"
        )
    check_positive_ints(steps=steps)
    if steps > 1 and values.shape[-1] != queries.shape[-1]:
        raise ValueError(
            f"iterative retrieval (steps={steps}) feeds outputs back as queries, so values need "
            f"the query dimension d={queries.shape[-1]}, got d_v={values.shape[-1]}"
        )
    if dt is not None:
        if not (isinstance(dt, (int, float)) and dt > 0):
            raise ValueError(f"dt must be a number > 0 (or None), got {dt!r}")
        if values is not keys:
            raise ValueError(
                "continuous-time retrieval (dt) descends the energy of auto-association: leave "
                "values=None (the keys are the values)"
            )
    separation = build_separation(separation, beta=beta, **options)
    if dt is not None or return_energies:
        check_energy(separation)  # before any work (e.g. U-Hop's stage I)
    similarity = _private_similarity(similarity, queries, keys, options)
    gradient_steps = dt is not None and not energy_form(similarity).cccp(similarity)
    return_details = return_details or return_energies

    state, weights, taken, energies = queries, None, 0, []
    while taken < steps:
        if gradient_steps:
            energy, grad, scores = energy_gradient(similarity, separation, state, keys, mask)
            energies.append(energy)
            weights = separation(scores, mask)
            new_state = state - dt * grad
        else:
            if return_energies:
                target, weights, energy = _step_with_energy(
                    state, keys, values, similarity, separation, mask
                )
                energies.append(energy)
            else:
                target, weights = _one_step(
                    state, keys, values, similarity, separation, mask, return_details
                )
            new_state = target if dt is None else state + dt * (target - state)
        taken += 1
        converged = steps > 1 and bool((new_state - state).abs().max() <= eps)
        state = new_state
        if converged:
            break
    if not return_details:
        return state
    stacked = None
    if return_energies:
        energies.append(network_energy(similarity, separation, state, keys, mask))
        stacked = torch.stack(energies)
    return Retrieval(output=state, weights=weights, steps=taken, energies=stacked)
