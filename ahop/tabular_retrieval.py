"""A Hopfield retrieval classifier whose memory is the training set itself (TabR / Hopular style).

Each row is a query. The memories are the encoded training rows; what a memory returns (its
value) carries its label (a learned label embedding) and its encoding relative to the query,
``label_embedding(y_i) + T(k_q - k_i)`` as in TabR (Gorishniy et al. 2024). Retrieval is one (or
more) Hopfield update step(s) ``x <- x + separation(similarity(K_context, k_q)) @ V_context``
over a *context* of the ``context_size`` best memories, which a cheap candidate search
(:class:`ahop.candidates.CandidateIndex`, squared L2 or dot, exact or faiss IVF) picks first, so an
expensive similarity (``adaptive``) scores ``context_size`` memories per query instead of all of
them. The classifier sees the row's encoding plus what it retrieved.

In training a row never retrieves itself: the memory row identical to the query (features and
label; for exact duplicates, one of the copies, which is indistinguishable) is excluded.

``memory_refresh`` says how the memory's encodings follow the encoder during training:

* ``"full"``: every batch, all memories encoded with gradients (TabR's default);
* ``"batch"``: every batch, all memories encoded without gradients for the search; the chosen
  context rows encoded again with gradients (TabR's memory-efficient mode);
* ``"epoch"``: memories encoded once per epoch (:meth:`refresh_memory`) without gradients for the
  search; the context rows encoded with gradients;
* ``"frozen"`` (default): once per epoch (keys and their value projections), and no gradient
  through the memory side at all. These encodings are a *snapshot* that is part of the model:
  the training steps of the epoch retrieve from it, and so does evaluation until the next
  refresh (:meth:`TabularRetrievalClassifier.bake_memory`; it is saved in the state dict). The
  query side is trained against that snapshot; re-encoding the memory with the end-of-epoch
  parameters for evaluation scored a model that was never trained (on a 21k-row census set,
  validation accuracy fell from 85 to 73-80 % while training accuracy rose).

At evaluation the memory is encoded once and kept until a parameter changes (the other modes);
an exported graph bakes those encodings (keys and their first value-layer projection) and the
labels.

The candidate search runs over a :class:`ahop.candidates.CandidateIndex` built once per memory
encoding (per refresh, per evaluation encoding): exact blocked top-k below ``ivf_min_memories``
memories, a faiss IVF index (approximate, about ``sqrt(N)`` work per query) from there on, so
that an epoch's cost grows about linearly with the rows.

Cost of the value network: ``T = Linear -> ReLU -> Dropout -> Linear`` is applied to ``k_q - k_i``
for every (query, context) pair in TabR. Here the first linear layer is applied once per row
(``W k_q - W k_i``) and the last one after the weighted sum (it is linear, so it commutes with the
sum), which makes a retrieval step cost ``O(B m d_block)`` elementwise work plus ``O(B d d_block)``
matrix work instead of ``O(B m d d_block)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ahop.candidates import (
    CANDIDATE_SEARCHES,
    CANDIDATE_SIMILARITIES,
    DEFAULT_IVF_MIN_MEMORIES,
    DEFAULT_IVF_PROBES,
    CandidateIndex,
    top_candidates,
)
from ahop.checks import check_int, check_positive_ints
from ahop.ensemble import MemberViews, mean_probability_logits, member_head
from ahop.feature_embeddings import AUTO_PERIODIC_MIN_ROWS, build_feature_embedding
from ahop.separation import build_separation
from ahop.similarity import build_similarity

#: how memory encodings are refreshed during training (see the module docstring)
MEMORY_REFRESH = ("full", "batch", "epoch", "frozen")

#: rows encoded per pass when the whole memory is encoded without gradients
ENCODE_CHUNK = 8192


#: training rows from which :func:`auto_encoder_blocks` puts one residual block before the retrieval
AUTO_ENCODER_MIN_ROWS = 1_000


def auto_encoder_blocks(num_training_rows: int | None) -> int:
    """Residual MLP blocks before the retrieval for a training set of ``num_training_rows`` rows:
    one from :data:`AUTO_ENCODER_MIN_ROWS` up to ``AUTO_PERIODIC_MIN_ROWS`` (where ``auto`` numeric
    embeddings turn periodic, and the block added nothing on top of them), none outside. Chosen on
    validation rows (docs/results_tabular.md): at 1k-6.5k training rows the block is +1.5 to -0.1
    (five sets, none lower by more than 0.1), below 1k it is lower on 13 of 21 small sets.
    ``None`` (size unknown): none."""
    if num_training_rows is None:
        return 0
    return int(AUTO_ENCODER_MIN_ROWS <= num_training_rows < AUTO_PERIODIC_MIN_ROWS)


def _block(width: int, hidden: int, dropout: float, prenorm: bool) -> nn.Sequential:
    """Residual MLP block (TabR): [LayerNorm] -> Linear -> ReLU -> Dropout -> Linear."""
    return nn.Sequential(
        *([nn.LayerNorm(width)] if prenorm else []),
        nn.Linear(width, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, width),
    )


def _row_hash(features: Tensor, labels: Tensor, coefficients: Tensor) -> Tensor:
    """An int64 hash per (row, label) from the exact bits of the features (integer arithmetic,
    so equal rows hash equally whatever the batch they come in)."""
    bits = features.contiguous().view(torch.int32).long()
    return (bits * coefficients[1:]).sum(-1) + (labels.long() + 1) * coefficients[0]


class _PooledReluDifference(torch.autograd.Function):
    """``out_b = sum_i w_bi ReLU(q_b - table[rows_bi])`` with a hand-written backward.

    The forward pass makes one ``(B, m, h)`` buffer (gather, subtract and ReLU in place); the
    backward pass one more for the pair gradients, whose rows are added into the table's gradient
    with ``index_add_``. Autograd through the plain expression keeps several such buffers.
    """

    @staticmethod
    def forward(ctx, queries: Tensor, table: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
        active = table.index_select(0, rows.flatten()).view(*rows.shape, table.shape[-1])
        torch.sub(queries.unsqueeze(-2), active, out=active).clamp_min_(0)
        ctx.save_for_backward(active, rows, weights)
        ctx.table_rows = table.shape[0]
        return (weights.unsqueeze(-2).to(active.dtype) @ active).squeeze(-2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, Tensor | None]:
        active, rows, weights = ctx.saved_tensors
        need_queries, need_table, _, need_weights = ctx.needs_input_grad
        grad_weights = (active @ grad.unsqueeze(-1)).squeeze(-1) if need_weights else None
        # dL/d(q - t) = w * g where the ReLU is active; the 0/1 mask is sign(active) (active >= 0),
        # a new buffer: the saved one may be needed by another backward pass with retain_graph
        mask = torch.sign(active)
        grad_queries = grad_table = None
        if need_queries:  # sum_i w_i mask_i * g as one batched product
            weights_row = weights.unsqueeze(-2).to(mask.dtype)
            grad_queries = (weights_row @ mask).squeeze(-2).mul_(grad)
        if need_table:
            pair = mask.mul_(weights.unsqueeze(-1)).mul_(grad.unsqueeze(-2))
            grad_table = pair.new_zeros(ctx.table_rows, pair.shape[-1])
            grad_table.index_add_(0, rows.flatten(), pair.reshape(-1, pair.shape[-1]), alpha=-1)
        return grad_queries, grad_table, None, grad_weights


def pooled_relu_difference(queries: Tensor, table: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
    """``sum_i weights[b, i] * ReLU(queries[b] - table[rows[b, i]])`` ``(B, h)``.

    Args:
        queries: ``(B, h)``.
        table: ``(T, h)``.
        rows: ``(B, m)`` indices into ``table``.
        weights: ``(B, m)``.
    """
    if torch.compiler.is_compiling():  # exported graphs: plain ops
        active = torch.relu(queries.unsqueeze(-2) - table[rows])
        return (weights.unsqueeze(-2) @ active).squeeze(-2)
    return _PooledReluDifference.apply(queries, table, rows, weights)


class TabularRetrievalClassifier(nn.Module):
    """Rows ``(B, F)`` -> class logits ``(B, C)`` by retrieval from the stored training rows.

    Fill the memory with :meth:`prepare` (training rows and labels) before use.

    Args:
        num_features: row width ``F``.
        num_classes: classes ``C``.
        num_numeric: leading numeric columns (default: all but the categorical code columns).
        categorical_cardinalities: one count per trailing categorical code column (empty: the
            trailing columns are already encoded, e.g. one-hot).
        embedding_dim: width ``d`` of the row encoding, keys and values.
        feature_embedding: numeric embedding (:data:`ahop.feature_embeddings.FEATURE_EMBEDDINGS`:
            ``linear``, ``periodic``, ``piecewise_linear``).
        feature_embedding_kwargs: its options (e.g. ``{"bins": 32}``).
        encoder_blocks: residual MLP blocks after the embedding (0: linear encoder).
        predictor_blocks: residual MLP blocks after the retrieval.
        block_multiplier: hidden width of the blocks and of ``T`` as a multiple of ``d``.
        context_size: memories ``m`` each query retrieves from (the candidate search's ``count``).
        similarity: how the context is scored: a name of :data:`ahop.similarity.SIMILARITIES`
            (``euclidean``, ``dot``, ``manhattan``, ``adaptive``, ...).
        similarity_kwargs: its options (e.g. ``{"squared": True}`` for euclidean).
        separation: a name of :data:`ahop.separation.SEPARATIONS` (``softmax`` ...).
        scaling: inverse temperature ``beta`` of the separation (default 1).
        candidate_similarity: the cheap ranking of the candidate search (``euclidean``, ``dot``).
        update_steps: Hopfield update steps over the context (the state, not the context, is
            updated; step ``t`` queries with ``K(x_t)``).
        dropout: dropout inside the blocks and ``T``.
        context_dropout: dropout on the association weights.
        memory_refresh: ``full`` | ``batch`` | ``epoch`` | ``frozen`` (module docstring).
        max_memory_rows: the largest memory :meth:`prepare` accepts.
        candidate_search: ``exact`` | ``ivf`` | ``auto``
            (:class:`ahop.candidates.CandidateIndex`): ``auto`` searches a faiss IVF index,
            approximate, from ``ivf_min_memories`` memories (when faiss is installed), which keeps
            an epoch's search cost near-linear in the rows; exact below.
        ivf_min_memories: see ``candidate_search``.
        ivf_probes: clusters an ``ivf`` search visits per query.
        ensemble_size: ``k`` TabM-mini members after the retrieval (Gorishniy et al. 2024): the
            retrieved state is scaled by one random-sign vector per member, passes the shared
            predictor blocks and one linear head per member (:mod:`ahop.ensemble`);
            :meth:`forward` returns the log of the members' mean probabilities, training takes
            the members' mean loss (:meth:`member_logits`). 1: a single predictor.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        num_numeric: int | None = None,
        categorical_cardinalities: Sequence[int] = (),
        embedding_dim: int = 128,
        feature_embedding: str = "piecewise_linear",
        feature_embedding_kwargs: dict[str, Any] | None = None,
        encoder_blocks: int = 0,
        predictor_blocks: int = 1,
        block_multiplier: float = 2.0,
        context_size: int = 32,
        similarity: str = "euclidean",
        similarity_kwargs: dict[str, Any] | None = None,
        separation: str = "softmax",
        scaling: float | None = None,
        candidate_similarity: str = "euclidean",
        update_steps: int = 1,
        dropout: float = 0.4,
        context_dropout: float = 0.4,
        memory_refresh: str = "frozen",
        max_memory_rows: int = 250_000,
        candidate_search: str = "auto",
        ivf_min_memories: int = DEFAULT_IVF_MIN_MEMORIES,
        ivf_probes: int = DEFAULT_IVF_PROBES,
        ensemble_size: int = 1,
    ) -> None:
        super().__init__()
        check_int(num_classes, "num_classes", minimum=2)
        check_positive_ints(
            embedding_dim=embedding_dim,
            context_size=context_size,
            update_steps=update_steps,
            max_memory_rows=max_memory_rows,
            ensemble_size=ensemble_size,
        )
        for name, value in (
            ("encoder_blocks", encoder_blocks),
            ("predictor_blocks", predictor_blocks),
        ):
            check_int(value, name, minimum=0)
        for name, value in (("dropout", dropout), ("context_dropout", context_dropout)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if memory_refresh not in MEMORY_REFRESH:
            raise ValueError(
                f"unknown memory_refresh {memory_refresh!r}; allowed: {', '.join(MEMORY_REFRESH)}"
            )
        if not block_multiplier > 0:
            raise ValueError(f"block_multiplier must be > 0, got {block_multiplier}")
        if candidate_similarity not in CANDIDATE_SIMILARITIES:
            raise ValueError(
                f"unknown candidate_similarity {candidate_similarity!r}; allowed: "
                f"{', '.join(CANDIDATE_SIMILARITIES)}"
            )
        d, hidden = embedding_dim, max(1, int(embedding_dim * block_multiplier))
        self.num_features, self.num_classes = num_features, num_classes
        self.context_size, self.update_steps = context_size, update_steps
        self.candidate_similarity, self.memory_refresh = candidate_similarity, memory_refresh
        #: memory refreshes and their seconds since :meth:`reset_refresh_log` (progress display)
        self.refresh_log: list[float] = [0, 0.0]
        if candidate_search not in CANDIDATE_SEARCHES:
            raise ValueError(
                f"unknown candidate_search {candidate_search!r}; allowed: "
                f"{', '.join(CANDIDATE_SEARCHES)}"
            )
        check_positive_ints(ivf_min_memories=ivf_min_memories, ivf_probes=ivf_probes)
        self.max_memory_rows = max_memory_rows
        self.candidate_search, self.ivf_min_memories = candidate_search, ivf_min_memories
        self.ivf_probes = ivf_probes
        self._index: CandidateIndex | None = None  # the search over _index_keys
        self._index_keys: Tensor | None = None
        self.embed = build_feature_embedding(
            feature_embedding,
            feature_embedding_kwargs,
            num_features=num_features,
            embedding_dim=d,
            num_numeric=num_numeric,
            categorical_cardinalities=list(categorical_cardinalities),
            activation="identity",
        )
        self.encoder = nn.ModuleList(
            _block(d, hidden, dropout, prenorm=i > 0) for i in range(encoder_blocks)
        )
        self.key_norm = nn.LayerNorm(d) if encoder_blocks else nn.Identity()
        self.key = nn.Linear(d, d)
        self.label_embedding = nn.Embedding(num_classes, d)
        nn.init.uniform_(self.label_embedding.weight, -1.0, 1.0)
        self.value_in = nn.Linear(d, hidden)  # T's first layer, applied per row
        self.value_dropout = nn.Dropout(dropout)
        self.value_out = nn.Linear(hidden, d, bias=False)  # T's last layer, after the sum
        self.similarity = build_similarity(similarity, dim=d, **(similarity_kwargs or {}))
        self.separation = build_separation(separation, beta=1.0 if scaling is None else scaling)
        self.context_dropout = nn.Dropout(context_dropout)
        self.members = MemberViews(ensemble_size, d)  # (B, d) -> (B, k, d)
        self.predictor = nn.ModuleList(
            _block(d, hidden, dropout, prenorm=True) for _ in range(predictor_blocks)
        )
        self.head = member_head(d, num_classes, ensemble_size)  # (B, k, d) -> (B, k, C)

        self.register_buffer("memory_features", torch.zeros(0, num_features))
        self.register_buffer("memory_labels", torch.zeros(0, dtype=torch.long))
        # encodings of the memory for evaluation and export (keys, W k), kept while no parameter
        # changes; and the once-per-epoch encodings of the "epoch" / "frozen" refresh
        self.register_buffer("memory_keys", None, persistent=False)
        self.register_buffer("memory_hidden", None, persistent=False)
        # "frozen": the memory's encodings of the last training refresh (keys, and the first value
        # layer's weight at that refresh), which training used; evaluation uses them too
        self.register_buffer("snapshot_keys", torch.zeros(0, d))
        self.register_buffer("snapshot_value_weight", torch.zeros(0, d))
        self._memory_stamp: tuple | None = None
        self._epoch_keys: Tensor | None = None
        self._epoch_table: Tensor | None = None
        generator = torch.Generator().manual_seed(0x5EED)
        coefficients = torch.randint(-(2**62), 2**62, (num_features + 1,), generator=generator)
        self.register_buffer("_hash_coefficients", coefficients | 1, persistent=False)
        self._hash_index: tuple[Tensor, Tensor] | None = None

    # -- memory ---------------------------------------------------------------------------------
    @property
    def memory_rows(self) -> int:
        """Rows ``N`` in the memory."""
        return self.memory_features.shape[0]

    def prepare(self, features: Tensor, labels: Tensor) -> None:
        """Store the training rows ``(N, F)`` and labels ``(N,)`` as the memory (and fit the
        feature embedding's bins on them if it has none yet).

        Raises:
            ValueError: bad shapes or labels, fewer than 2 rows, or more than ``max_memory_rows``.
        """
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"memory rows must have shape (N, {self.num_features}), got {tuple(features.shape)}"
            )
        if labels.shape != features.shape[:1]:
            raise ValueError(
                f"memory labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}"
            )
        rows = features.shape[0]
        if rows > self.max_memory_rows:
            raise ValueError(
                f"the memory would hold {rows} training rows, more than max_memory_rows="
                f"{self.max_memory_rows}: raise max_memory_rows (the memory costs about "
                f"{rows * (self.num_features + 3 * self.key.in_features) * 4 / 2**20:.0f} MiB) "
                "or train on a subsample"
            )
        if rows < 2:
            raise ValueError(f"the memory needs at least 2 training rows, got {rows}")
        if (
            labels.dtype.is_floating_point
            or int(labels.min()) < 0
            or int(labels.max()) >= self.num_classes
        ):
            raise ValueError(
                f"memory labels must be integer classes in [0, {self.num_classes}), got "
                f"{labels.dtype} in [{labels.min()}, {labels.max()}]"
            )
        if not self.embed.fitted:
            self.embed.fit(features, labels)
        device = self.memory_features.device
        self.memory_features = features.detach().to(device, torch.float32).contiguous()
        self.memory_labels = labels.detach().to(device, torch.long).contiguous()
        self._forget()

    def _forget(self) -> None:
        self.memory_keys = self.memory_hidden = None
        self._memory_stamp = self._epoch_keys = self._epoch_table = self._hash_index = None
        self._index = self._index_keys = None
        self.snapshot_keys = self.snapshot_keys.new_zeros(0, self.snapshot_keys.shape[1])
        self.snapshot_value_weight = self.snapshot_value_weight.new_zeros(0, self.key.in_features)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # the memory's (and its snapshot's) size is the checkpoint's, not the constructor's
        self._forget()
        for name in ("memory_features", "memory_labels", "snapshot_keys", "snapshot_value_weight"):
            incoming = state_dict.get(prefix + name)
            if incoming is not None:
                current = getattr(self, name)
                setattr(self, name, torch.empty_like(incoming, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def has_snapshot(self) -> bool:
        """Whether evaluation retrieves from the encodings of the last training refresh
        (``frozen`` after a refresh; see :meth:`bake_memory`)."""
        return (
            self.memory_refresh == "frozen"
            and self.memory_rows > 0
            and self.snapshot_keys.shape[0] == self.memory_rows
            and self.snapshot_value_weight.shape[0] > 0
        )

    def _check_memory(self, excluding: bool) -> int:
        rows = self.memory_rows
        if rows == 0:
            raise RuntimeError(
                "the memory is empty: call prepare(training rows, labels) first (the tabular task "
                "does this in setup)"
            )
        available = rows - (1 if excluding else 0)
        if available < 1:
            raise ValueError(f"the memory holds {rows} row(s): too few to retrieve from")
        return min(self.context_size, available)

    def own_rows(self, features: Tensor, labels: Tensor) -> Tensor:
        """Memory index of each (row, label) ``(B,)``, ``-1`` where it is not in the memory."""
        if self._hash_index is None:
            hashes = _row_hash(self.memory_features, self.memory_labels, self._hash_coefficients)
            self._hash_index = hashes.sort()
        sorted_hashes, order = self._hash_index
        features = features.to(torch.float32)
        hashes = _row_hash(features, labels, self._hash_coefficients)
        position = torch.searchsorted(sorted_hashes, hashes).clamp_max(len(sorted_hashes) - 1)
        found = order[position]
        same = (sorted_hashes[position] == hashes) & (self.memory_labels[found] == labels)
        same &= (self.memory_features[found] == features).all(-1)
        return torch.where(same, found, torch.full_like(found, -1))

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, features: Tensor) -> Tensor:
        """Row encodings ``x`` ``(B, d)`` (embedding + encoder blocks)."""
        x = self.embed(features)
        for block in self.encoder:
            x = x + block(x)
        return x

    def keys_of(self, encodings: Tensor) -> Tensor:
        """Keys ``K(norm(x))`` ``(B, d)`` of row encodings."""
        return self.key(self.key_norm(encodings))

    def _encode_keys(self, rows: Tensor) -> Tensor:
        return self.keys_of(self.encode(rows))

    def _encode_memory(self) -> Tensor:
        """Keys of every memory row ``(N, d)`` without gradients, in chunks."""
        with torch.no_grad():
            rows = self.memory_features
            if torch.compiler.is_compiling():
                return self._encode_keys(rows)
            return torch.cat(
                [
                    self._encode_keys(rows[s : s + ENCODE_CHUNK])
                    for s in range(0, len(rows), ENCODE_CHUNK)
                ]
            )

    def _stamp(self) -> tuple:
        return (
            self.memory_features.data_ptr(),
            *((p.data_ptr(), p._version) for p in self.parameters()),
        )

    def refresh_memory(self) -> None:
        """Encode the memory now (no gradients) for the ``epoch`` / ``frozen`` refresh (a no-op
        for the others); the tabular task calls it at the start of every training epoch."""
        if self.memory_refresh in ("epoch", "frozen"):
            start = time.perf_counter()
            self._epoch_keys = self._encode_memory() if self.memory_rows else None
            self._epoch_table = None
            if self.memory_refresh == "frozen" and self._epoch_keys is not None:
                self.snapshot_keys = self._epoch_keys
                self.snapshot_value_weight = self.value_in.weight.detach().clone()
                self.memory_keys = self.memory_hidden = None  # evaluation: this snapshot next
            self.refresh_log[0] += 1
            self.refresh_log[1] += time.perf_counter() - start

    def reset_refresh_log(self) -> None:
        """Zero :attr:`refresh_log` (the task does this at the start of every training epoch)."""
        self.refresh_log = [0, 0.0]

    def bake_memory(self) -> tuple[Tensor, Tensor]:
        """The evaluation encodings of the memory (keys ``(N, d)``, first value layer ``W k``
        ``(N, d_block)``), computed once and kept (and baked into an exported graph).

        ``frozen`` after a training refresh (:attr:`has_snapshot`): the encodings of that refresh,
        the ones the training steps since then retrieved from (kept in the state dict), so that
        evaluation scores the model training produced. Re-encoding with the current parameters
        instead gives a memory the query side was never trained against, and on mid-size data
        (hundreds of steps per epoch) that mismatch cost up to 8 points of validation accuracy.
        Otherwise: the memory encoded with the current parameters, kept until one changes."""
        if self.has_snapshot and not torch.compiler.is_compiling():
            if self.memory_keys is not self.snapshot_keys:
                with torch.no_grad():
                    hidden = self.snapshot_keys @ self.snapshot_value_weight.T
                self.memory_keys, self.memory_hidden = self.snapshot_keys, hidden
            return self.memory_keys, self.memory_hidden
        if torch.compiler.is_compiling():
            if self.memory_keys is None:  # not baked beforehand: encode inside the graph
                keys = self._encode_memory()
                return keys, keys @ self.value_in.weight.T
            return self.memory_keys, self.memory_hidden
        stamp = self._stamp()
        if self.memory_keys is None or stamp != self._memory_stamp:
            with torch.no_grad():
                keys = self._encode_memory()
                self.memory_keys, self.memory_hidden = keys, keys @ self.value_in.weight.T
            self._memory_stamp = stamp
        return self.memory_keys, self.memory_hidden

    def memory_bytes(self) -> dict[str, int]:
        """Sizes in bytes of the stored rows and of the baked encodings."""
        keys, hidden = self.bake_memory()
        return {
            "rows": self.memory_features.numel() * 4 + self.memory_labels.numel() * 8,
            "encodings": (keys.numel() + hidden.numel()) * 4,
        }

    # -- retrieval ------------------------------------------------------------------------------
    def _context(
        self, query: Tensor, exclude: Tensor | None, count: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The context of each query: memory indices ``(B, m)``, their keys ``(B, m, d)``, and a
        table of first-value-layer projections ``W k`` ``(T, h)`` with each context entry's row in
        it ``(B, m)`` (projecting distinct rows once, not every (query, memory) pair)."""
        project: Callable[[Tensor], Tensor] = lambda keys: keys @ self.value_in.weight.T  # noqa: E731
        if not self.training:
            keys, hidden = self.bake_memory()
            index = self._search(query, keys, count, None)
            return index, keys[index], hidden, index
        refresh = self.memory_refresh
        if refresh == "full":
            keys = self._encode_keys(self.memory_features)
            search = keys.detach()
        elif refresh == "batch":
            search = self._encode_memory()
        else:
            if self._epoch_keys is None or self._epoch_keys.shape[0] != self.memory_rows:
                self.refresh_memory()
            search = self._epoch_keys
        index = self._search(query, search, count, exclude)
        if refresh == "full":
            return index, keys[index], project(keys), index
        if refresh == "frozen":  # the value projections of the epoch's encodings, kept too
            if self._epoch_table is None or self._epoch_table.shape[0] != search.shape[0]:
                weight = self.snapshot_value_weight if self.has_snapshot else self.value_in.weight
                with torch.no_grad():
                    self._epoch_table = search @ weight.T
            return index, search[index], self._epoch_table, index
        # batch / epoch: the chosen rows encoded again, with gradients, once each
        unique, inverse = index.unique(return_inverse=True)
        keys = self._encode_keys(self.memory_features[unique])
        return index, keys[inverse], project(keys), inverse

    def _search(self, query: Tensor, keys: Tensor, count: int, exclude: Tensor | None) -> Tensor:
        if count == keys.shape[0] and exclude is None:  # every memory is a candidate
            return torch.arange(count, device=keys.device).expand(query.shape[0], count)
        if torch.compiler.is_compiling():  # exported graphs: the exact search, no cached state
            return top_candidates(query, keys, count, self.candidate_similarity, exclude=exclude)
        return self.candidate_index(keys).search(query, count, exclude)

    def candidate_index(self, keys: Tensor) -> CandidateIndex:
        """The candidate search over ``keys``: built once per keys tensor (the per-refresh and the
        evaluation encodings are searched many times; the ``full`` / ``batch`` refresh's per-batch
        keys always exactly, since an index would be rebuilt every batch)."""
        if self._index is None or self._index_keys is not keys:
            reused = self.memory_refresh in ("epoch", "frozen") or not self.training
            self._index_keys = keys
            self._index = CandidateIndex(
                keys,
                self.candidate_similarity,
                self.candidate_search if reused else "exact",
                ivf_min_memories=self.ivf_min_memories,
                probes=self.ivf_probes,
            )
        return self._index

    def context(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """The memory indices ``(B, m)`` each row retrieves from (in training mode with
        ``labels``, a row's own memory row is never among them)."""
        with torch.no_grad():
            exclude = (
                self.own_rows(features, labels) if self.training and labels is not None else None
            )
            count = self._check_memory(exclude is not None)
            query = self.keys_of(self.encode(features))
            return self._context(query, exclude, count)[0]

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, F)`` rows -> ``(B, C)`` logits (with ``ensemble_size > 1``: the log of the
        members' mean probabilities).

        Args:
            features: rows ``(B, F)``.
            labels: their classes ``(B,)``, needed in training (a row's own memory row, found by
                its features and label, is excluded from its context); ignored in evaluation.
        """
        return mean_probability_logits(self.member_logits(features, labels))

    def member_logits(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, F)`` rows -> every ensemble member's logits ``(B, k, C)`` (``k = 1`` without an
        ensemble); training takes the mean of the members' losses (TabM), not the loss of
        their mean. ``labels`` as in :meth:`forward`."""
        if features.dim() != 2 or features.shape[-1] != self.num_features:
            raise ValueError(
                f"expected rows of shape (batch, {self.num_features}), got {tuple(features.shape)}"
            )
        if self.training and labels is None:
            raise ValueError(
                "training needs the batch's labels (forward(features, labels)) so that no row "
                "retrieves itself; call eval() for inference"
            )
        exclude = self.own_rows(features, labels) if self.training else None
        count = self._check_memory(exclude is not None)
        x = self.encode(features)
        query = self.keys_of(x)
        index, context_keys, table, rows = self._context(query, exclude, count)
        context_labels = self.memory_labels[index]
        for step in range(self.update_steps):
            if step:
                query = self.keys_of(x)
            scores = self.similarity(context_keys, query.unsqueeze(-2)).squeeze(-2)  # (B, m)
            weights = self.context_dropout(self.separation(scores))
            # sum_i w_i label_embedding(y_i): weights pooled per class, then one (C, d) product
            per_class = weights.new_zeros(weights.shape[0], self.num_classes)
            per_class = per_class.scatter_add(1, context_labels, weights)
            # sum_i w_i ReLU(W k_q + b - W k_i); T's last layer after the sum (it is linear)
            pooled = pooled_relu_difference(self.value_in(query), table, rows, weights)
            x = (
                x
                + per_class @ self.label_embedding.weight
                + self.value_out(self.value_dropout(pooled))
            )
        x = self.members(x)
        for block in self.predictor:
            x = x + block(x)
        return self.head(x)

    def extra_repr(self) -> str:
        return (
            f"memory_rows={self.memory_rows}, context_size={self.context_size}, "
            f"update_steps={self.update_steps}, memory_refresh={self.memory_refresh!r}, "
            f"ensemble_size={self.members.k}"
        )
