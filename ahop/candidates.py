"""Candidate search: the top-m memories of each query under a cheap similarity.

An expensive similarity (``adaptive``: a sort per (query, memory) pair) cannot score tens of
thousands of memories per query. A cheap one (squared L2 or dot product: one matrix product) picks
``m`` candidates per query first; the expensive one then scores only those. With ``m >= N`` every
memory is a candidate, so the result equals a full retrieval.

The search runs without gradients (indices are not differentiable). It uses ``torch.topk`` over
blocks of queries, or a flat (exact) faiss index when faiss is installed and the memory is large.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

#: the cheap similarities a candidate search can rank by
CANDIDATE_SIMILARITIES = ("euclidean", "dot")

#: default bound, in bytes, on the (queries x memories) score block of the torch search
DEFAULT_SEARCH_BUDGET = 64 * 2**20

#: memories from which faiss (when installed) replaces the torch search by default
DEFAULT_FAISS_MIN_MEMORIES = 50_000


def faiss_available() -> bool:
    """Whether the ``faiss`` package can be imported."""
    return importlib.util.find_spec("faiss") is not None


def _ranking_scores(queries: Tensor, keys: Tensor, key_norms: Tensor | None) -> Tensor:
    # ranking by -||q - k||² per query equals ranking by 2 q·k - ||k||² (||q||² is constant)
    scores = queries @ keys.transpose(-1, -2)
    return scores if key_norms is None else 2 * scores - key_norms


def _torch_search(
    queries: Tensor,
    keys: Tensor,
    count: int,
    similarity: str,
    exclude: Tensor | None,
    budget: int,
) -> Tensor:
    key_norms = keys.pow(2).sum(-1) if similarity == "euclidean" else None
    if torch.compiler.is_compiling():  # exported graphs: one block (sizes are symbolic)
        return _ranking_scores(queries, keys, key_norms).topk(count, dim=-1).indices
    block = max(1, budget // max(1, 4 * keys.shape[0]))
    out = []
    for start in range(0, queries.shape[0], block):
        scores = _ranking_scores(queries[start : start + block], keys, key_norms)
        if exclude is not None:
            rows = exclude[start : start + block]
            hit = (rows >= 0).nonzero().flatten()
            scores[hit, rows[hit]] = float("-inf")
        out.append(scores.topk(count, dim=-1, sorted=False).indices)
    return torch.cat(out)


def _faiss_search(
    queries: Tensor, keys: Tensor, count: int, similarity: str, exclude: Tensor | None
) -> Tensor:
    import faiss

    keys_np = keys.detach().float().cpu().contiguous().numpy()
    index = (faiss.IndexFlatL2 if similarity == "euclidean" else faiss.IndexFlatIP)(keys.shape[1])
    index.add(keys_np)
    extra = 0 if exclude is None else 1
    _, found = index.search(queries.detach().float().cpu().contiguous().numpy(), count + extra)
    found = torch.from_numpy(found).to(queries.device)
    if exclude is None:
        return found
    drop = found == exclude.unsqueeze(-1)
    drop[:, -1] |= ~drop.any(-1)  # the excluded row was not among them: drop the last instead
    return found[~drop].reshape(found.shape[0], count)


def top_candidates(
    queries: Tensor,
    keys: Tensor,
    count: int,
    similarity: str = "euclidean",
    exclude: Tensor | None = None,
    use_faiss: bool | None = None,
    faiss_min_memories: int = DEFAULT_FAISS_MIN_MEMORIES,
    budget: int = DEFAULT_SEARCH_BUDGET,
) -> Tensor:
    """Indices ``(Q, count)`` of the best ``count`` memories of each query (in no fixed order).

    Args:
        queries: ``(Q, d)``.
        keys: memories ``(N, d)``.
        count: candidates per query; at most ``N`` (``N - 1`` with ``exclude``).
        similarity: ``"euclidean"`` (smallest L2 distance) or ``"dot"`` (largest dot product).
        exclude: ``(Q,)`` one memory index per query that must not be returned (``-1``: none),
            e.g. the query's own row when the memory is the training set.
        use_faiss: ``None``: faiss when installed and ``N >= faiss_min_memories``.
        faiss_min_memories: see ``use_faiss``.
        budget: bytes of one block of scores in the torch search.

    Raises:
        ValueError: an unknown similarity, a bad ``count``, or faiss requested but not installed.
    """
    if similarity not in CANDIDATE_SIMILARITIES:
        raise ValueError(
            f"unknown candidate similarity {similarity!r}; allowed: {', '.join(CANDIDATE_SIMILARITIES)}"
        )
    available = keys.shape[0] - (0 if exclude is None else 1)
    if not isinstance(count, int) or not 1 <= count <= available:
        raise ValueError(
            f"count must be an integer in [1, {available}] (memories{' minus the excluded row' if exclude is not None else ''}), got {count!r}"
        )
    if use_faiss and not faiss_available():
        raise ValueError("use_faiss=True needs the faiss package: pip install faiss-cpu")
    if use_faiss is None:
        use_faiss = keys.shape[0] >= faiss_min_memories and faiss_available()
    with torch.no_grad():
        queries, keys = queries.detach(), keys.detach()
        if use_faiss and not torch.compiler.is_compiling():
            return _faiss_search(queries, keys, count, similarity, exclude)
        return _torch_search(queries, keys, count, similarity, exclude, budget)


#: how a :class:`CandidateIndex` searches: ``exact`` (blocked torch top-k over every memory),
#: ``ivf`` (faiss inverted lists: the ``probes`` nearest of about sqrt(N) clusters, approximate),
#: ``auto`` (``ivf`` from ``ivf_min_memories`` memories when faiss is installed, else ``exact``)
CANDIDATE_SEARCHES = ("auto", "exact", "ivf")

#: memories from which ``auto`` uses the ``ivf`` search
DEFAULT_IVF_MIN_MEMORIES = 10_000

#: clusters an ``ivf`` search visits per query
DEFAULT_IVF_PROBES = 8

#: rows per cluster the ``ivf`` index's k-means is trained on (a subsample of larger memories)
IVF_TRAINING_ROWS_PER_CLUSTER = 64


class CandidateIndex:
    """A candidate search over fixed keys ``(N, d)``, built once and queried many times (the
    tabular retrieval model builds one per memory refresh and one per evaluation encoding).

    ``exact`` returns what :func:`top_candidates` returns; ``ivf`` (faiss ``IndexIVFFlat`` with
    ``round(sqrt(N))`` clusters, k-means on at most ``64`` rows per cluster, ``probes`` clusters
    visited per query) costs about ``(sqrt(N) + probes * sqrt(N)) * d`` per query instead of
    ``N * d``, so a pass over all ``N`` rows grows like ``N^1.5`` rather than ``N^2``; it may miss
    some true nearest memories (rows it finds too few for are searched exactly).

    Args:
        keys: memories ``(N, d)`` (detached; not copied for ``exact``).
        similarity: ``euclidean`` or ``dot``.
        search: one of :data:`CANDIDATE_SEARCHES`.
        ivf_min_memories: see ``auto``.
        probes: clusters an ``ivf`` search visits.
        budget: bytes of one block of scores in the exact search.
        seed: seed of the k-means subsample.
    """

    def __init__(
        self,
        keys: Tensor,
        similarity: str = "euclidean",
        search: str = "auto",
        ivf_min_memories: int = DEFAULT_IVF_MIN_MEMORIES,
        probes: int = DEFAULT_IVF_PROBES,
        budget: int = DEFAULT_SEARCH_BUDGET,
        seed: int = 0,
    ) -> None:
        if similarity not in CANDIDATE_SIMILARITIES:
            raise ValueError(
                f"unknown candidate similarity {similarity!r}; allowed: {', '.join(CANDIDATE_SIMILARITIES)}"
            )
        if search not in CANDIDATE_SEARCHES:
            raise ValueError(
                f"unknown candidate search {search!r}; allowed: {', '.join(CANDIDATE_SEARCHES)}"
            )
        if not isinstance(probes, int) or probes < 1:
            raise ValueError(f"probes must be an integer >= 1, got {probes!r}")
        if search == "ivf" and not faiss_available():
            raise ValueError(
                "candidate search 'ivf' needs the faiss package: pip install faiss-cpu"
            )
        if search == "auto":
            search = "ivf" if keys.shape[0] >= ivf_min_memories and faiss_available() else "exact"
        self.keys, self.similarity, self.budget = keys.detach(), similarity, budget
        self.kind = search
        self._index = self._build_ivf(probes, seed) if search == "ivf" else None

    @property
    def rows(self) -> int:
        """Memories ``N`` searched."""
        return self.keys.shape[0]

    def _build_ivf(self, probes: int, seed: int) -> object:
        import faiss

        keys = self.keys.float().cpu().contiguous().numpy()
        rows, dim = keys.shape
        clusters = max(1, round(rows**0.5))
        metric = faiss.METRIC_L2 if self.similarity == "euclidean" else faiss.METRIC_INNER_PRODUCT
        quantizer = (faiss.IndexFlatL2 if metric == faiss.METRIC_L2 else faiss.IndexFlatIP)(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, clusters, metric)
        index.cp.min_points_per_centroid = 1  # no warning for small subsamples
        index.cp.seed = seed
        sample = min(rows, IVF_TRAINING_ROWS_PER_CLUSTER * clusters)
        if sample < rows:
            generator = torch.Generator().manual_seed(seed)
            pick = torch.randperm(rows, generator=generator)[:sample].numpy()
            index.train(keys[pick])
        else:
            index.train(keys)
        index.add(keys)
        index.nprobe = min(probes, clusters)
        return index

    def search(self, queries: Tensor, count: int, exclude: Tensor | None = None) -> Tensor:
        """Indices ``(Q, count)`` of the best ``count`` memories of each query (no fixed order),
        never the ``exclude`` row of a query (``-1``: none); see :func:`top_candidates`."""
        if self._index is None or torch.compiler.is_compiling():
            return top_candidates(
                queries,
                self.keys,
                count,
                self.similarity,
                exclude=exclude,
                use_faiss=False,
                budget=self.budget,
            )
        available = self.rows - (0 if exclude is None else 1)
        if not isinstance(count, int) or not 1 <= count <= available:
            raise ValueError(f"count must be an integer in [1, {available}], got {count!r}")
        import faiss

        faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
        extra = 0 if exclude is None else 1
        with torch.no_grad():
            found_np = self._index.search(  # type: ignore[attr-defined]
                queries.detach().float().cpu().contiguous().numpy(), count + extra
            )[1]
        found = torch.from_numpy(found_np).to(queries.device)
        if exclude is not None:
            drop = found == exclude.unsqueeze(-1)
            drop[:, -1] |= ~drop.any(-1)  # the excluded row was not among them: drop the last
            found = found[~drop].reshape(found.shape[0], count)
        short = (found < 0).any(-1)  # a query whose probed clusters held too few memories
        if bool(short.any()):
            rows = short.nonzero().flatten()
            found[rows] = top_candidates(
                queries[rows],
                self.keys,
                count,
                self.similarity,
                exclude=None if exclude is None else exclude[rows],
                use_faiss=False,
                budget=self.budget,
            )
        return found
