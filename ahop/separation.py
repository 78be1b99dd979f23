"""Separation functions: turn similarity scores into association weights.

A separation maps scores ``(..., Q, N)`` to weights ``(..., Q, N)`` over the N memories, sharpening
the gap between the best match and the rest. ``mask`` (bool, broadcastable to the scores) marks
entries to ignore with ``True`` (the padding convention of ``nn.MultiheadAttention`` and
hopfield-layers); ignored entries get weight 0, and a row with every entry ignored gets all zeros
(never NaN). Weights are computed in at least float32 with max-subtracted (log-sum-exp) forms, so a
large ``beta`` on bf16 / float16 scores cannot overflow.
"""

from __future__ import annotations

import torch
from entmax import entmax15, sparsemax
from torch import Tensor, nn

from ahop.registry import Registry

SEPARATIONS: Registry[nn.Module] = Registry("separation")


def _check_beta(beta: float) -> float:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return float(beta)


def _as_float(scores: Tensor) -> Tensor:
    return scores.to(torch.promote_types(scores.dtype, torch.float32))


def _zero_masked(weights: Tensor, mask: Tensor | None) -> Tensor:
    return weights if mask is None else weights.masked_fill(mask, 0.0)


def _fill_masked(scores: Tensor, mask: Tensor | None) -> Tensor:
    return scores if mask is None else scores.masked_fill(mask, float("-inf"))


class Separation(nn.Module):
    """Base class: ``forward(scores (..., Q, N), mask=None) -> weights (..., Q, N)``."""

    def forward(self, scores: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.separate(_as_float(scores), mask)

    def separate(self, scores: Tensor, mask: Tensor | None) -> Tensor:
        """The separation itself, on float scores."""
        raise NotImplementedError


class _ScaledMap(Separation):
    """A normalising map applied to ``beta * scores``, with masked entries at ``-inf``."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = _check_beta(beta)

    def normalise(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def fill_masked(self, logits: Tensor, mask: Tensor) -> Tensor:
        """Logits with masked entries pushed out of the support (``-inf`` by default)."""
        return _fill_masked(logits, mask)

    def separate(self, scores: Tensor, mask: Tensor | None) -> Tensor:
        logits = self.beta * scores
        if mask is None:
            return self.normalise(logits)
        logits = self.fill_masked(logits, mask)
        # a fully masked row would give NaN; give it a harmless row and zero it afterwards
        empty = mask.all(dim=-1, keepdim=True)
        weights = self.normalise(logits.masked_fill(empty, 0.0))
        return _zero_masked(weights, mask | empty)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


@SEPARATIONS.register("identity")
class Identity(Separation):
    """Weights = scores (the classical linear Hopfield network / linear attention)."""

    def separate(self, scores: Tensor, mask: Tensor | None) -> Tensor:
        return _zero_masked(scores, mask)


@SEPARATIONS.register("polynomial")
class Polynomial(Separation):
    """Polynomial separation ``sign(s) |s|^order`` (dense associative memory, Krotov & Hopfield).

    Scores are first divided by the row's largest magnitude (``rescale=True``, default), so high
    orders (10 and beyond) cannot overflow; with ``normalize=True`` (default) the weights are then
    divided by their absolute sum, which makes the result independent of that rescaling. The sign
    is kept so even orders stay monotone on negative (distance) scores.

    ``normalize=False, rescale=False`` is the raw dense-associative-memory map ``sign(s)|s|^n``:
    the only form that is the gradient of a Lagrangian (``sum |s|^(n+1) / (n+1)``), hence the only
    one with an energy (:mod:`ahop.energy`); the row-wise rescaling and normalisation are not
    gradient fields.

    Args:
        order: the exponent ``n >= 1`` (2 = square, 3 = cube, ...).
        normalize: divide the weights of each query by their absolute sum.
        rescale: divide the scores by the row's largest magnitude first (overflow guard; no
            effect on the result when ``normalize=True``).
    """

    def __init__(self, order: float = 2.0, normalize: bool = True, rescale: bool = True) -> None:
        super().__init__()
        if not order >= 1:
            raise ValueError(f"polynomial order must be >= 1, got {order}")
        self.order = float(order)
        self.normalize = normalize
        self.rescale = rescale

    def separate(self, scores: Tensor, mask: Tensor | None) -> Tensor:
        scores = _zero_masked(scores, mask)
        if self.rescale or self.normalize:
            scale = scores.abs().amax(dim=-1, keepdim=True)
            scores = scores / scale.clamp_min(torch.finfo(scores.dtype).tiny)
        weights = scores.sign() * scores.abs().pow(self.order)
        if self.normalize:
            total = weights.abs().sum(dim=-1, keepdim=True)
            weights = weights / total.clamp_min(torch.finfo(scores.dtype).tiny)
        return weights

    def extra_repr(self) -> str:
        return f"order={self.order}, normalize={self.normalize}, rescale={self.rescale}"


@SEPARATIONS.register("softmax")
class Softmax(_ScaledMap):
    """``softmax(beta * s)``: the modern (continuous) Hopfield network's separation."""

    def normalise(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)


@SEPARATIONS.register("max")
class Max(Separation):
    """One-hot on the best match (``beta -> inf`` limit of softmax). Carries no gradient."""

    def separate(self, scores: Tensor, mask: Tensor | None) -> Tensor:
        filled = _fill_masked(scores, mask)
        winners = filled.argmax(dim=-1, keepdim=True)
        weights = torch.zeros_like(scores).scatter_(-1, winners, 1.0)
        if mask is not None:
            weights = weights.masked_fill(mask.all(dim=-1, keepdim=True), 0.0)
        return weights


@SEPARATIONS.register("topk")
class TopK(_ScaledMap):
    """Softmax over the ``k`` best matches only; the others get weight 0.

    Args:
        k: number of memories kept per query (all when ``k >= N``).
        beta: inverse temperature of the softmax.
    """

    def __init__(self, k: int = 5, beta: float = 1.0) -> None:
        super().__init__(beta)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"topk needs an integer k >= 1, got {k!r}")
        self.k = k

    def normalise(self, logits: Tensor) -> Tensor:
        k = min(self.k, logits.shape[-1])
        threshold = logits.topk(k, dim=-1).values[..., -1:]
        return torch.softmax(logits.masked_fill(logits < threshold, float("-inf")), dim=-1)

    def extra_repr(self) -> str:
        return f"k={self.k}, beta={self.beta}"


class _SimplexProjection(_ScaledMap):
    """Sparse maps whose sort-based thresholds break on ``-inf``.

    Their threshold ``tau`` is at least ``max - 2`` (sparsemax: ``max - 1``), so masked entries are
    set below ``max - 4`` of the kept ones: finite, yet certain to get weight 0.
    """

    def fill_masked(self, logits: Tensor, mask: Tensor) -> Tensor:
        kept_max = logits.masked_fill(mask, float("-inf")).amax(dim=-1, keepdim=True)
        floor = torch.where(torch.isfinite(kept_max), kept_max - 4.0, torch.zeros_like(kept_max))
        return torch.where(mask, floor, logits)


@SEPARATIONS.register("sparsemax")
class Sparsemax(_SimplexProjection):
    """``sparsemax(beta * s)`` (Martins & Astudillo 2016): a projection onto the simplex."""

    def normalise(self, logits: Tensor) -> Tensor:
        return sparsemax(logits, dim=-1)


@SEPARATIONS.register("entmax15")
class Entmax15(_SimplexProjection):
    """``1.5-entmax(beta * s)`` (Peters et al. 2019): between softmax and sparsemax."""

    def normalise(self, logits: Tensor) -> Tensor:
        return entmax15(logits, dim=-1)


def build_separation(separation: str | nn.Module, **kwargs: object) -> nn.Module:
    """A separation module from a registered name (or pass an ``nn.Module`` through unchanged).

    Args:
        separation: a name from :data:`SEPARATIONS` (``identity``, ``polynomial``, ``softmax``,
            ``max``, ``topk``, ``sparsemax``, ``entmax15``) or a module.
        **kwargs: options; each separation takes those its constructor names (``beta``,
            ``order``, ``k``, ``normalize``, ``rescale``); ``None`` means "use the default".
    """
    if isinstance(separation, nn.Module):
        return separation
    return SEPARATIONS.build(separation, **kwargs)
