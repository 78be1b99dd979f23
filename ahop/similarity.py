"""Similarity functions: how well each stored memory matches each query.

Every similarity maps keys ``(..., N, d)`` and queries ``(..., Q, d)`` to scores ``(..., Q, N)``,
larger = more similar; leading dimensions broadcast. Scores are returned in at least float32 so a
later separation with a large ``beta`` stays finite for bf16 / float16 inputs.

Distance-based and adaptive similarities compare every query with every memory dimension by
dimension, which naively builds a ``(Q, N, d)`` tensor. Euclidean distances expand to matrix
products and need none. Manhattan distances use ``torch.cdist`` forward and a backward pass over
blocks of memories. The adaptive similarity works through blocks of memories (and of queries,
when one memory alone is too big) sized by ``memory_budget`` bytes, in a hand-written autograd
function that recomputes each block in the backward pass, so peak memory stays bounded in
training too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ahop.checks import check_int
from ahop.registry import Registry
from ahop.sorting import sort_rows_, sort_rows_with_order

#: Default bound, in bytes, on the temporaries of one block of a pairwise computation.
DEFAULT_MEMORY_BUDGET = 256 * 2**20

SIMILARITIES: Registry[nn.Module] = Registry("similarity")

PairwiseFn = Callable[[Tensor, Tensor], Tensor]


def _score_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return torch.promote_types(dtype, torch.float32)


def check_pair(keys: Tensor, queries: Tensor) -> None:
    """Raise ``ValueError`` unless keys ``(..., N, d)`` and queries ``(..., Q, d)`` are compatible."""
    if keys.dim() < 2 or queries.dim() < 2:
        raise ValueError(
            f"keys and queries need shape (..., N, d) and (..., Q, d); "
            f"got {tuple(keys.shape)} and {tuple(queries.shape)}"
        )
    if keys.shape[-1] != queries.shape[-1]:
        raise ValueError(
            f"keys and queries must share their last (feature) dimension; "
            f"got d={keys.shape[-1]} for keys and d={queries.shape[-1]} for queries"
        )
    try:
        torch.broadcast_shapes(keys.shape[:-2], queries.shape[:-2])
    except RuntimeError as error:
        raise ValueError(
            f"leading (batch) dimensions of keys {tuple(keys.shape[:-2])} and queries "
            f"{tuple(queries.shape[:-2])} do not broadcast"
        ) from error


def plan_blocks(
    num_queries: int, num_keys: int, bytes_per_pair: int, memory_budget: int
) -> tuple[int, int]:
    """Block sizes ``(queries_per_block, keys_per_block)`` whose temporaries fit ``memory_budget``.

    ``bytes_per_pair`` is what one (query, key) pair costs in temporaries (all leading batch
    elements and feature dimensions included). Keys are blocked first; queries only when a single
    key column over all queries does not fit. At least one pair is always processed.
    """
    if memory_budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget}")
    pairs = max(1, memory_budget // max(1, bytes_per_pair))
    if pairs >= num_queries:
        return num_queries, max(1, min(num_keys, pairs // num_queries))
    return pairs, 1


class Similarity(nn.Module):
    """Base class: ``forward(keys (..., N, d), queries (..., Q, d)) -> scores (..., Q, N)``."""

    def forward(self, keys: Tensor, queries: Tensor) -> Tensor:
        check_pair(keys, queries)
        return self.score(keys, queries)

    def store(self, memories: Tensor) -> None:
        """Adapt to a set of stored patterns ``(..., N, d)`` before retrieving from them.

        Nothing for most similarities; U-Hop (:class:`ahop.uhop.UHopSimilarity`) runs its stage I
        here (the separation loss over the memories). :func:`ahop.functional.retrieve` and
        :func:`ahop.energy.uhn_energy` call it when they build the similarity from a name.
        """

    def score(self, keys: Tensor, queries: Tensor) -> Tensor:
        """The similarity itself, on inputs already checked."""
        raise NotImplementedError


@SIMILARITIES.register("dot")
class DotSimilarity(Similarity):
    """Dot product ``<k, q>``: the similarity of modern Hopfield networks and attention."""

    def score(self, keys: Tensor, queries: Tensor) -> Tensor:
        return (queries @ keys.transpose(-1, -2)).to(_score_dtype(keys, queries))


@SIMILARITIES.register("cosine")
class CosineSimilarity(Similarity):
    """Cosine of the angle between ``k`` and ``q`` (dot product of unit vectors)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def score(self, keys: Tensor, queries: Tensor) -> Tensor:
        dtype = _score_dtype(keys, queries)
        keys = F.normalize(keys.to(dtype), dim=-1, eps=self.eps)
        queries = F.normalize(queries.to(dtype), dim=-1, eps=self.eps)
        return queries @ keys.transpose(-1, -2)


@SIMILARITIES.register("euclidean")
class EuclideanSimilarity(Similarity):
    """Negative Euclidean distance ``-||k - q||`` (or its square with ``squared=True``).

    Uses ``||q||² + ||k||² - 2 q·k`` (as ``torch.cdist`` does for large inputs), so no ``(Q, N, d)``
    tensor is built. The root has a zero-safe gradient: a query equal to a memory gets gradient 0
    from the root instead of NaN.
    """

    def __init__(self, squared: bool = False, eps: float = 1e-12) -> None:
        super().__init__()
        self.squared = squared
        self.eps = eps

    def score(self, keys: Tensor, queries: Tensor) -> Tensor:
        dtype = _score_dtype(keys, queries)
        keys, queries = keys.to(dtype), queries.to(dtype)
        if torch.compiler.is_compiling():
            # exported / compiled graphs: plain ops (the compiler fuses them; ONNX has no cdist)
            squared = (
                queries.pow(2).sum(-1, keepdim=True)
                + keys.pow(2).sum(-1).unsqueeze(-2)
                - 2 * (queries @ keys.transpose(-1, -2))
            ).clamp_min(0)
            if self.squared:
                return -squared
            return -squared.clamp_min(self.eps).sqrt() * (squared > self.eps)
        return _NegativeL2.apply(keys, queries, self.squared, self.eps)

    def extra_repr(self) -> str:
        return f"squared={self.squared}"


class _NegativeL2(torch.autograd.Function):
    """``-||k - q||`` (or ``-||k - q||²``) with a hand-written backward.

    Forward: one matmul (norms folded in, as ``torch.cdist`` does) plus in-place ``(Q, N)``
    updates. Backward: with ``W = dL/d(distance)``
    scaled by the derivative of the root, ``grad_q = W k - rowsum(W) q`` and
    ``grad_k = Wᵀ q - colsum(W) k``: two matmuls, and only the distances are saved (autograd
    through the expanded formula keeps several ``(Q, N)`` intermediates alive).
    """

    @staticmethod
    def forward(ctx, keys: Tensor, queries: Tensor, squared: bool, eps: float) -> Tensor:
        # one matmul gives ||q||² + ||k||² - 2 q·k: [q, ||q||², 1] @ [-2k, 1, ||k||²]ᵀ
        q_norm = queries.pow(2).sum(-1, keepdim=True)
        k_norm = keys.pow(2).sum(-1, keepdim=True)
        distances = torch.cat([queries, q_norm, torch.ones_like(q_norm)], -1) @ torch.cat(
            [keys * -2, torch.ones_like(k_norm), k_norm], -1
        ).transpose(-1, -2)
        if squared:
            distances = distances.clamp_min_(0)
        else:
            # rounding can leave tiny negatives; below eps the root's gradient is undefined (a
            # query on a memory): distance and gradient 0 there
            distances = distances.masked_fill_(distances <= eps, 0).sqrt_()
        ctx.save_for_backward(keys, queries, distances)
        ctx.squared = squared
        return distances.neg()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        keys, queries, distances = ctx.saved_tensors
        # squared: d(-s)/dq = -2 (q - k); root: d(-r)/dq = -(q - k) / r, zero where r = 0
        weights = grad * 2 if ctx.squared else (grad / distances).masked_fill_(distances == 0, 0)
        grad_keys = grad_queries = None
        if ctx.needs_input_grad[1]:
            grad_queries = weights @ keys - weights.sum(-1, keepdim=True) * queries
            grad_queries = grad_queries.sum_to_size(queries.shape)
        if ctx.needs_input_grad[0]:
            grad_keys = weights.transpose(-1, -2) @ queries - weights.sum(-2).unsqueeze(-1) * keys
            grad_keys = grad_keys.sum_to_size(keys.shape)
        return grad_keys, grad_queries, None, None


class _NegativeL1(torch.autograd.Function):
    """``-cdist(q, k, p=1)`` with a backward pass that works through blocks of keys.

    ``torch.cdist`` computes L1 distances without a ``(Q, N, d)`` tensor, but on CPU its backward
    allocates one; here torch's own backward kernel is run on one block of keys at a time, each
    block's ``(Q, n, d)`` buffer sized by the memory budget.
    """

    @staticmethod
    def forward(ctx, keys: Tensor, queries: Tensor, key_block: int) -> Tensor:
        distances = torch.cdist(queries, keys, p=1.0)
        ctx.save_for_backward(keys, queries, distances)
        ctx.key_block = key_block
        return -distances

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        keys, queries, distances = ctx.saved_tensors
        grad = -grad.contiguous()
        grad_keys = torch.empty_like(keys) if ctx.needs_input_grad[0] else None
        grad_queries = torch.zeros_like(queries) if ctx.needs_input_grad[1] else None
        for start in range(0, keys.shape[-2], ctx.key_block):
            block = slice(start, start + ctx.key_block)
            k = keys[:, block].contiguous()
            g, d = grad[:, :, block].contiguous(), distances[:, :, block].contiguous()
            if grad_queries is not None:
                grad_queries += torch.ops.aten._cdist_backward(g, queries, k, 1.0, d)
            if grad_keys is not None:
                g_t, d_t = g.transpose(-1, -2).contiguous(), d.transpose(-1, -2).contiguous()
                grad_keys[:, block] = torch.ops.aten._cdist_backward(g_t, k, queries, 1.0, d_t)
        return grad_keys, grad_queries, None


@SIMILARITIES.register("manhattan")
class ManhattanSimilarity(Similarity):
    """Negative L1 distance ``-sum_i |k_i - q_i|``.

    The forward pass never builds a ``(Q, N, d)`` tensor; the backward pass builds one block of
    keys at a time, bounded by ``memory_budget`` bytes.
    """

    def __init__(self, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        super().__init__()
        self.memory_budget = memory_budget

    def score(self, keys: Tensor, queries: Tensor) -> Tensor:
        dtype = _score_dtype(keys, queries)
        if torch.compiler.is_compiling():
            # exported / compiled graphs: plain broadcasting (ONNX has no cdist; the compiler
            # fuses the elementwise work)
            keys, queries = keys.to(dtype), queries.to(dtype)
            return -(queries.unsqueeze(-2) - keys.unsqueeze(-3)).abs().sum(-1)
        batch = torch.broadcast_shapes(keys.shape[:-2], queries.shape[:-2])
        keys3 = keys.to(dtype).expand(*batch, *keys.shape[-2:]).reshape(-1, *keys.shape[-2:])
        queries3 = queries.to(dtype).expand(*batch, *queries.shape[-2:])
        queries3 = queries3.reshape(-1, *queries.shape[-2:])
        # backward buffer per key: all batch elements x queries x features
        bytes_per_key = keys3.shape[0] * queries3.shape[1] * keys.shape[-1] * keys3.element_size()
        key_block = max(1, self.memory_budget // max(1, bytes_per_key))
        scores = _NegativeL1.apply(keys3.contiguous(), queries3.contiguous(), key_block)
        return scores.reshape(*batch, *scores.shape[-2:])

    def extra_repr(self) -> str:
        return f"memory_budget={self.memory_budget}"


class _AdaptiveBase:
    """One per-dimension base similarity of A-Hop: its values and their pullback to the inputs."""

    @staticmethod
    def values(keys: Tensor, queries: Tensor) -> Tensor:
        """Per-dimension values ``(B, q, n, d)`` of keys ``(B, n, d)`` and queries ``(B, q, d)``."""
        raise NotImplementedError

    @staticmethod
    def pullback(keys: Tensor, queries: Tensor, grad_values: Tensor) -> tuple[Tensor, Tensor]:
        """Gradients ``(keys (B, n, d), queries (B, q, d))`` from ``dL/dvalues``; may reuse its buffer."""
        raise NotImplementedError

    @staticmethod
    def unsorted_score(keys: Tensor, queries: Tensor, weights: Tensor) -> Tensor:
        """``values(keys, queries) @ weights`` without sorting, by matrix products: ``(..., Q, N)``."""
        raise NotImplementedError


class _DistanceBase(_AdaptiveBase):
    """``-(k_i - q_i)²``."""

    @staticmethod
    def values(keys: Tensor, queries: Tensor) -> Tensor:
        return (queries.unsqueeze(-2) - keys.unsqueeze(-3)).square_().neg_()

    @staticmethod
    def pullback(keys: Tensor, queries: Tensor, grad_values: Tensor) -> tuple[Tensor, Tensor]:
        # d/dq = -2 (q - k), d/dk = 2 (q - k)
        scaled = grad_values.mul_(queries.unsqueeze(-2) - keys.unsqueeze(-3)).mul_(2)
        return scaled.sum(-3), scaled.sum(-2).neg_()

    @staticmethod
    def unsorted_score(keys: Tensor, queries: Tensor, weights: Tensor) -> Tensor:
        # sum_i w_i (-(q_i - k_i)²) = -q² w - k² w + 2 (q w) kᵀ
        return (
            2 * ((queries * weights) @ keys.transpose(-1, -2))
            - (queries.square() @ weights).unsqueeze(-1)
            - (keys.square() @ weights).unsqueeze(-2)
        )


class _DotBase(_AdaptiveBase):
    """``k_i q_i``."""

    @staticmethod
    def values(keys: Tensor, queries: Tensor) -> Tensor:
        return queries.unsqueeze(-2) * keys.unsqueeze(-3)

    @staticmethod
    def pullback(keys: Tensor, queries: Tensor, grad_values: Tensor) -> tuple[Tensor, Tensor]:
        grad_keys = (grad_values * queries.unsqueeze(-2)).sum(-3)
        return grad_keys, grad_values.mul_(keys.unsqueeze(-3)).sum(-2)

    @staticmethod
    def unsorted_score(keys: Tensor, queries: Tensor, weights: Tensor) -> Tensor:
        return (queries * weights) @ keys.transpose(-1, -2)


#: The per-dimension base similarities the adaptive similarity can learn from.
ADAPTIVE_BASES: dict[str, type[_AdaptiveBase]] = {"distance": _DistanceBase, "dot": _DotBase}


def _blocks(num_queries: int, num_keys: int, q_block: int, k_block: int):
    for q_start in range(0, num_queries, q_block):
        for k_start in range(0, num_keys, k_block):
            yield slice(q_start, q_start + q_block), slice(k_start, k_start + k_block)


class _SortedFootprintScore(torch.autograd.Function):
    """``sum_b sort_ascending(values_b(k, q)) @ weights_b``, block by block, for every pair.

    Keys ``(B, N, d)``, queries ``(B, Q, d)``, weights ``(num_bases, d)`` in ascending sort order
    -> scores ``(B, Q, N)``. The forward pass sorts values only (no indices); the backward pass
    recomputes each block's values, sorts them with their order, and scatters the weights back to the
    dimensions they were applied to: ``dL/dvalues_i = g * w_rank(i)``. Nothing of size
    ``(Q, N, d)`` is kept between the passes, and one block's temporaries stay in the budget.
    """

    @staticmethod
    def forward(
        ctx,
        keys: Tensor,
        queries: Tensor,
        weights: Tensor,
        bases: tuple[type[_AdaptiveBase], ...],
        blocks: tuple[int, int],
    ) -> Tensor:
        scores = keys.new_zeros(keys.shape[0], queries.shape[1], keys.shape[1])
        for qs, ks in _blocks(queries.shape[1], keys.shape[1], *blocks):
            k, q = keys[:, ks], queries[:, qs]
            for base, w in zip(bases, weights):
                scores[:, qs, ks] += sort_rows_(base.values(k, q)) @ w
        ctx.save_for_backward(keys, queries, weights)
        ctx.bases, ctx.blocks = bases, blocks
        return scores

    @staticmethod
    @once_differentiable
    def backward(
        ctx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        keys, queries, weights = ctx.saved_tensors
        need_keys, need_queries, need_weights = ctx.needs_input_grad[:3]
        grad_keys = torch.zeros_like(keys) if need_keys else None
        grad_queries = torch.zeros_like(queries) if need_queries else None
        grad_weights = torch.zeros_like(weights) if need_weights else None
        for qs, ks in _blocks(queries.shape[1], keys.shape[1], *ctx.blocks):
            k, q, g = keys[:, ks], queries[:, qs], grad[:, qs, ks]
            for b, (base, w) in enumerate(zip(ctx.bases, weights)):
                sorted_values, order = sort_rows_with_order(base.values(k, q))
                if need_weights:
                    # per (batch, query) row, then a pairwise-accurate sum over rows: one long
                    # matrix-vector product would lose float32 precision over Q * N terms
                    rows = sorted_values.reshape(-1, *sorted_values.shape[-2:])
                    grad_weights[b] += (g.reshape(-1, 1, g.shape[-1]) @ rows).sum((0, 1))
                if not (need_keys or need_queries):
                    continue
                # dL/dvalues_i = g * w[rank(i)]; the sorted copy's buffer is free to take it
                grad_values = sorted_values.scatter_(-1, order, w.expand_as(sorted_values))
                del order
                dk, dq = base.pullback(k, q, grad_values.mul_(g.unsqueeze(-1)))
                if need_keys:
                    grad_keys[:, ks] += dk
                if need_queries:
                    grad_queries[:, qs] += dq
        return grad_keys, grad_queries, grad_weights, None, None


@SIMILARITIES.register("adaptive")
class AdaptiveSimilarity(Similarity):
    """The learned similarity of A-Hop (Adaptive Hopfield Network, arXiv 2511.20609).

    For each base ``b`` (``"distance"``: ``-(k_i - q_i)²``; ``"dot"``: ``k_i q_i``) and each
    (query, memory) pair, the ``d`` per-dimension values are sorted in descending order and
    cumulative-summed into a *footprint* ``f_j = sum_{i<=j} sorted_i``, which is scored by learned
    weights: ``s_b = w_b · f``. The bases are mixed by learnable scales:
    ``score = beta_dis * s_distance + beta_dot * s_dot``.

    Because ``w · cumsum(v) = revcumsum(w) · v``, the footprint is never built: the sorted values
    are contracted directly with the reverse cumulative sum of ``w``. Without sorting the score is
    linear in the values and runs as matrix products; with sorting, the pairs go through
    memory-bounded blocks (``ahop.sorting``: SIMD row sorts on CPU, ``torch.sort`` elsewhere).

    Args:
        dim: feature dimension ``d`` (one weight per footprint position).
        bases: which base similarities to use: ``("distance", "dot")`` (default), or one of them.
        sort: sort the per-dimension values (ablation: ``False`` keeps dimension order).
        cumulative: score the cumulative sums (ablation: ``False`` scores sorted values directly).
        beta_dis, beta_dot: initial mixing scales; ``learn_betas`` makes them parameters.
        init: ``"total"`` puts all weight on the last footprint entry, so an untrained model starts
            as ``beta_dis * (-||k - q||²) + beta_dot * <k, q>``; ``"uniform"`` spreads it as ``1/d``.
        memory_budget: bound in bytes on the temporaries of one block of pairs.
    """

    def __init__(
        self,
        dim: int,
        bases: tuple[str, ...] | list[str] = ("distance", "dot"),
        sort: bool = True,
        cumulative: bool = True,
        beta_dis: float = 1.0,
        beta_dot: float = 1.0,
        learn_betas: bool = True,
        init: str = "total",
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__()
        check_int(dim, "dim")
        bases = tuple(bases)
        unknown = [b for b in bases if b not in ADAPTIVE_BASES]
        if not bases or unknown or len(set(bases)) != len(bases):
            raise ValueError(
                f"bases must be distinct names from {sorted(ADAPTIVE_BASES)}, got {list(bases)}"
            )
        inits = {"total": self._total_init, "uniform": self._uniform_init}
        if init not in inits:
            raise ValueError(f"unknown init {init!r}; allowed values: {', '.join(inits)}")
        self.dim, self.bases, self.sort, self.cumulative = dim, bases, sort, cumulative
        self.memory_budget = memory_budget
        self.weights = nn.Parameter(inits[init](len(bases), dim))
        initial_betas = torch.tensor(
            [beta_dis if base == "distance" else beta_dot for base in bases]
        )
        if learn_betas:
            self.betas = nn.Parameter(initial_betas)
        else:
            self.register_buffer("betas", initial_betas)

    @staticmethod
    def _total_init(num_bases: int, dim: int) -> Tensor:
        weights = torch.zeros(num_bases, dim)
        weights[:, -1] = 1.0
        return weights

    @staticmethod
    def _uniform_init(num_bases: int, dim: int) -> Tensor:
        return torch.full((num_bases, dim), 1.0 / dim)

    @property
    def beta_dis(self) -> Tensor | None:
        """Scale of the distance base (``None`` when that base is off)."""
        return self.betas[self.bases.index("distance")] if "distance" in self.bases else None

    @property
    def beta_dot(self) -> Tensor | None:
        """Scale of the dot-product base (``None`` when that base is off)."""
        return self.betas[self.bases.index("dot")] if "dot" in self.bases else None

    def effective_weights(self) -> Tensor:
        """Weights ``(num_bases, d)`` applied to the (sorted) per-dimension values, betas included."""
        weights = self.weights
        if self.cumulative:
            weights = weights.flip(-1).cumsum(-1).flip(-1)
        return weights * self.betas.unsqueeze(-1)

    def score(self, keys: Tensor, queries: Tensor) -> Tensor:
        if keys.shape[-1] != self.dim:
            raise ValueError(
                f"AdaptiveSimilarity was built for dim={self.dim}, got inputs with d={keys.shape[-1]}"
            )
        dtype = _score_dtype(keys, queries)
        keys, queries = keys.to(dtype), queries.to(dtype)
        weights = self.effective_weights().to(dtype)
        bases = [ADAPTIVE_BASES[name] for name in self.bases]
        if not self.sort:
            # without sorting the score is linear in the per-dimension values: matrix products
            return sum(base.unsorted_score(keys, queries, w) for base, w in zip(bases, weights))
        if torch.compiler.is_compiling():
            # torch.compile / torch.export: block sizes would depend on symbolic batch sizes and
            # the compiler cannot trace NumPy; the whole (Q, N, d) computation in plain torch ops
            return sum(
                base.values(keys, queries).sort(dim=-1, descending=True).values @ w
                for base, w in zip(bases, weights)
            )
        batch = torch.broadcast_shapes(keys.shape[:-2], queries.shape[:-2])
        keys3 = keys.expand(*batch, *keys.shape[-2:]).reshape(-1, *keys.shape[-2:]).contiguous()
        queries3 = queries.expand(*batch, *queries.shape[-2:]).reshape(-1, *queries.shape[-2:])
        queries3 = queries3.contiguous()
        # per element of a block, in the backward pass: the values, their sorted copy (later
        # dL/dvalues), the 8-byte sort keys / order, and a broadcast difference or product
        bytes_per_pair = keys3.shape[0] * self.dim * (4 * keys3.element_size() + 8)
        blocks = plan_blocks(queries3.shape[1], keys3.shape[1], bytes_per_pair, self.memory_budget)
        # ascending sort order: the weight of the largest value comes last
        scores = _SortedFootprintScore.apply(
            keys3, queries3, weights.flip(-1), tuple(bases), blocks
        )
        return scores.reshape(*batch, *scores.shape[-2:])

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, bases={self.bases}, sort={self.sort}, "
            f"cumulative={self.cumulative}, memory_budget={self.memory_budget}"
        )


def _needs_dim(name: str) -> bool:
    parameter = inspect.signature(SIMILARITIES.get(name)).parameters.get("dim")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def build_similarity(
    similarity: str | nn.Module,
    dim: int | None = None,
    memories: Tensor | None = None,
    **kwargs: object,
) -> nn.Module:
    """A similarity module from a registered name (or pass an ``nn.Module`` through unchanged).

    Args:
        similarity: a name from :data:`SIMILARITIES` (``dot``, ``cosine``, ``euclidean``,
            ``manhattan``, ``adaptive``, ``uhop``) or a module with the similarity call signature.
        dim: feature dimension, required by learned similarities (``adaptive``, ``uhop``).
        memories: stored patterns ``(..., N, d)``; a similarity built from a name is prepared
            for them with :meth:`Similarity.store` (U-Hop's stage I). Ignored for a module, which
            is used as it is.
        **kwargs: options; each similarity takes those its constructor names (e.g. ``squared``,
            ``memory_budget``, ``sort``); ``None`` values mean "use the default".
    """
    if isinstance(similarity, nn.Module):
        return similarity
    if dim is None and _needs_dim(similarity):
        raise ValueError(f"similarity {similarity!r} needs the feature dimension: pass dim=")
    module = SIMILARITIES.build(similarity, dim=dim, **kwargs)
    if memories is not None:
        module.store(memories)
    return module
