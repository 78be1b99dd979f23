"""Retrieval objectives and metrics: the A-Hop training loss and the usual retrieval scores.

A-Hop (arXiv 2511.20609) learns its similarity from (source, variant) pairs: a stored pattern is
corrupted into a query, and the similarity is trained so that ``softmax(beta * similarity)`` over
the memories points back at the pattern that generated the query. That is a cross-entropy over
memories with the source index as the class (:func:`association_cross_entropy`).
:func:`train_similarity` is a small pure-torch Adam loop over that objective (benchmarks use it;
the Lightning task ``tasks.retrieval.RetrievalTask`` uses the same loss).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ahop.checks import check_int, check_positive_ints
from ahop.registry import Registry

#: ``make_queries(generator) -> (queries (B, d), sources (B,))``: fresh variants of stored patterns
QueryMaker = Callable[[torch.Generator], tuple[Tensor, Tensor]]

REDUCTIONS: Registry[Tensor] = Registry("reduction")

#: learning-rate schedules of :func:`train_similarity`: ``(optimizer, steps) -> scheduler``
SCHEDULES: Registry[torch.optim.lr_scheduler.LRScheduler] = Registry("schedule")
SCHEDULES.register("constant")(
    lambda optimizer, steps: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
)
SCHEDULES.register("cosine")(torch.optim.lr_scheduler.CosineAnnealingLR)
REDUCTIONS.register("mean")(torch.mean)
REDUCTIONS.register("none")(lambda t: t)


def _check_sources(sources: Tensor, batch: int, num_memories: int) -> None:
    if sources.dim() != 1 or len(sources) != batch:
        raise ValueError(
            f"sources must be a 1-D tensor with one memory index per query ({batch}), got shape "
            f"{tuple(sources.shape)}"
        )
    if sources.dtype != torch.long:
        raise ValueError(
            f"sources must be integer (torch.long) memory indices, got {sources.dtype}"
        )
    if len(sources) and (sources.min() < 0 or sources.max() >= num_memories):
        raise ValueError(
            f"sources must index the {num_memories} memories (0..{num_memories - 1}), got values in "
            f"[{int(sources.min())}, {int(sources.max())}]"
        )


def association_cross_entropy(
    similarity: nn.Module,
    memories: Tensor,
    queries: Tensor,
    sources: Tensor,
    beta: float = 1.0,
    mask: Tensor | None = None,
    return_scores: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The A-Hop objective: cross-entropy of ``softmax(beta * similarity)`` against the source.

    Args:
        similarity: a similarity module (keys ``(N, d)``, queries ``(B, d)`` -> scores ``(B, N)``).
        memories: stored patterns ``(N, d)``.
        queries: variants of stored patterns ``(B, d)``.
        sources: index ``(B,)`` (long) of the memory each query was generated from.
        beta: inverse temperature of the softmax over memories (> 0).
        mask: bool, broadcastable to ``(B, N)``; ``True`` = memory excluded from the softmax (a
            query's own source must not be masked).
        return_scores: also return the similarity scores ``(B, N)`` (before ``beta`` and the
            mask), so a caller can reuse them for retrieval instead of recomputing them.

    Returns:
        the mean loss, a scalar (and the scores with ``return_scores=True``).
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if memories.dim() != 2 or queries.dim() != 2:
        raise ValueError(
            f"memories and queries must be (N, d) and (B, d), got {tuple(memories.shape)} and "
            f"{tuple(queries.shape)}"
        )
    _check_sources(sources, queries.shape[0], memories.shape[0])
    scores = similarity(memories, queries)
    logits = beta * scores
    if mask is not None:
        mask = torch.broadcast_to(mask, logits.shape)
        if mask.gather(1, sources.unsqueeze(1)).any():
            raise ValueError("mask hides the source memory of some queries; the loss would be inf")
        logits = logits.masked_fill(mask, float("-inf"))
    loss = F.cross_entropy(logits, sources)
    return (loss, scores) if return_scores else loss


def retrieval_accuracy(weights_or_scores: Tensor, sources: Tensor) -> Tensor:
    """Fraction of queries whose largest association weight (or score) is their source memory.

    ``(B, N)``, ``(B,)`` -> scalar.
    """
    if weights_or_scores.dim() != 2:
        raise ValueError(
            f"weights_or_scores must be (B, N), got shape {tuple(weights_or_scores.shape)}"
        )
    _check_sources(sources, weights_or_scores.shape[0], weights_or_scores.shape[1])
    return (weights_or_scores.argmax(dim=-1) == sources).float().mean()


def fraction_correctly_retrieved(
    output: Tensor, targets: Tensor, threshold: float = 50.0, reduction: str = "mean"
) -> Tensor:
    """UHN criterion: a retrieval is correct when its summed squared pixel error is <= threshold.

    Images in ``[0, 1]``. The threshold 50 (Millidge et al. 2022) was set for 28x28 / 32x32x3
    images; scale it with the image size for others.

    Args:
        output, targets: retrieved and true patterns ``(B, D)``.
        threshold: largest summed squared error that counts as retrieved.
        reduction: ``"mean"`` (the fraction, a scalar) or ``"none"`` (per-image 0/1, ``(B,)``).
    """
    reduce = REDUCTIONS.get(reduction)
    if output.shape != targets.shape or output.dim() != 2:
        raise ValueError(
            f"output and targets must both have shape (batch, D), got {tuple(output.shape)} and "
            f"{tuple(targets.shape)}"
        )
    sse = (output - targets).pow(2).sum(dim=-1)
    return reduce((sse <= threshold).to(torch.promote_types(output.dtype, torch.float32)))


def train_similarity(
    similarity: nn.Module,
    memories: Tensor,
    make_queries: QueryMaker,
    steps: int,
    lr: float = 1e-2,
    beta: float = 1.0,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    schedule: str = "constant",
) -> list[float]:
    """Fit a learnable similarity with :func:`association_cross_entropy` and Adam.

    ``make_queries(generator)`` is called for a fresh pool of ``(queries (P, d), sources (P,))``
    whenever the previous pool is used up; each pool is shuffled and cut into minibatches of
    ``batch_size`` (one optimizer step each). All randomness comes from one CPU generator seeded
    with ``seed``, so a run is reproducible. Queries are moved to the memories' device.

    Args:
        similarity: module with trainable parameters (e.g. ``AdaptiveSimilarity``); trained in place.
        memories: stored patterns ``(N, d)``.
        make_queries: draws variants of the memories and their source indices.
        steps: number of optimizer steps.
        lr: Adam learning rate.
        beta: inverse temperature of the softmax over memories.
        batch_size: queries per optimizer step.
        seed: seed of the generator handed to ``make_queries`` and used for shuffling.
        progress: show a tqdm progress bar.
        schedule: learning-rate schedule over the ``steps``: ``"constant"`` or ``"cosine"``
            (cosine annealing to 0, as the retrieval configs do per epoch).

    Returns:
        the training loss of every step.
    """
    params = [p for p in similarity.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            f"{type(similarity).__name__} has no trainable parameters; only learned similarities "
            "(e.g. 'adaptive') can be trained"
        )
    check_int(steps, "steps", minimum=0)
    check_positive_ints(batch_size=batch_size)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = SCHEDULES.get(schedule)(optimizer, max(1, steps))
    was_training = similarity.training
    similarity.train()
    losses: list[float] = []
    batches: list[tuple[Tensor, Tensor]] = []
    bar = tqdm(range(steps), desc="train similarity", disable=not progress, leave=False)
    for _ in bar:
        if not batches:
            queries, sources = make_queries(generator)
            if len(queries) == 0:
                raise ValueError("make_queries returned no queries")
            order = torch.randperm(len(queries), generator=generator)
            queries = queries[order].to(memories.device)
            sources = sources[order].to(memories.device)
            batches = list(zip(queries.split(batch_size), sources.split(batch_size)))[::-1]
        queries, sources = batches.pop()
        loss = association_cross_entropy(similarity, memories, queries, sources, beta)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"similarity training loss became {loss.item()} at step {len(losses)}: lower lr or "
                "beta"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    similarity.train(was_training)
    return losses
