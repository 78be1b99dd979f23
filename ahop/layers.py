"""Hopfield layers: ``Hopfield``, ``HopfieldLayer`` and ``HopfieldPooling`` (torch.nn Modules).

Argument names follow the hopfield-layers package (Ramsauer et al. 2020) where they mean the same
thing (``scaling``, ``update_steps_max``, ``num_heads``, ``normalize_*``, ``*_as_static``,
``quantity``), plus ``similarity=`` and ``separation=`` to swap the parts of
``retrieval = projection . separation(similarity(K, q))``.

Shapes use ``batch_first=True`` by default: stored patterns ``(B, N, D_k)``, state patterns
``(B, Q, D_q)``, pattern projections ``(B, N, D_v)``, output ``(B, Q, output_size)``.
Masks use ``True`` for entries to ignore: ``stored_pattern_padding_mask`` ``(B, N)``,
``association_mask`` ``(Q, N)``, ``(B, Q, N)`` or ``(B, heads, Q, N)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ahop.checks import check_positive_ints
from ahop.energy import check_energy, network_energy
from ahop.functional import associate, retrieve
from ahop.separation import build_separation
from ahop.similarity import build_similarity

HopfieldInput = Tensor | tuple[Tensor, Tensor, Tensor]


def _projection(size_in: int | None, size_out: int, static: bool, bias: bool) -> nn.Module:
    if static:
        return nn.Identity()
    if size_in is None:
        raise ValueError("a projected input needs its size: set input_size (or the *_size option)")
    return nn.Linear(size_in, size_out, bias=bias)


def _norm(size: int | None, enabled: bool, affine: bool) -> nn.Module:
    if not enabled:
        return nn.Identity()
    if size is None:
        raise ValueError("normalising an input needs its size: set input_size (or *_size)")
    return nn.LayerNorm(size, elementwise_affine=affine)


class Hopfield(nn.Module):
    """Modern Hopfield association with swappable similarity and separation.

    ``forward(input)`` takes one tensor (it serves as stored, state and projection pattern, i.e.
    self-association) or a tuple ``(stored_pattern, state_pattern, pattern_projection)``.

    Args:
        input_size: size of the state patterns (and default for the other input sizes).
        hidden_size: association-space size per head (default: ``input_size``).
        output_size: size of the output (default: ``input_size``).
        pattern_size: size per head of the retrieved pattern projection (default: ``hidden_size``).
        num_heads: number of parallel association heads.
        scaling: ``beta`` of the separation (default ``1 / sqrt(hidden_size)``).
        update_steps_max: extra update steps of the state pattern in association space before the
            final retrieval (0 = one-shot, as in attention).
        update_steps_eps: stop updating once no state changes by more than this.
        update_steps_dt: continuous-time update steps (``dt`` of :func:`ahop.functional.retrieve`:
            each step moves the state a fraction ``dt`` along a descent direction of the
            energy); ``None`` = the usual update.
        normalize_stored_pattern, normalize_state_pattern, normalize_pattern_projection: LayerNorm
            each input before projecting it (``*_affine``: with learned scale and shift).
        normalize_hopfield_space: LayerNorm the projected keys and queries per head.
        stored_pattern_as_static, state_pattern_as_static, pattern_projection_as_static: use that
            input as it is, without a learned projection.
        disable_out_projection: return the heads' retrievals concatenated, without output layer.
        dropout: dropout on the association weights (training only).
        input_bias: bias in the input projections.
        batch_first: inputs are ``(B, L, D)`` (``False``: ``(L, B, D)``).
        stored_pattern_size, pattern_projection_size: input sizes if they differ from
            ``input_size``.
        similarity: name (``dot``, ``cosine``, ``euclidean``, ``manhattan``, ``adaptive``,
            ``uhop``) or module. U-Hop's feature map is trained by the task loss here; add
            ``self.similarity.separation_loss(memories)`` for the paper's bilevel schedule.
        separation: name (``softmax``, ``max``, ``polynomial``, ``identity``, ``topk``,
            ``sparsemax``, ``entmax15``) or module.
        similarity_kwargs, separation_kwargs: extra options for those parts (e.g.
            ``{"memory_budget": 2**28}``, ``{"order": 3}``).
    """

    def __init__(
        self,
        input_size: int | None = None,
        hidden_size: int | None = None,
        output_size: int | None = None,
        pattern_size: int | None = None,
        num_heads: int = 1,
        scaling: float | None = None,
        update_steps_max: int = 0,
        update_steps_eps: float = 1e-4,
        update_steps_dt: float | None = None,
        normalize_stored_pattern: bool = True,
        normalize_stored_pattern_affine: bool = True,
        normalize_state_pattern: bool = True,
        normalize_state_pattern_affine: bool = True,
        normalize_pattern_projection: bool = True,
        normalize_pattern_projection_affine: bool = True,
        normalize_hopfield_space: bool = False,
        normalize_hopfield_space_affine: bool = False,
        stored_pattern_as_static: bool = False,
        state_pattern_as_static: bool = False,
        pattern_projection_as_static: bool = False,
        disable_out_projection: bool = False,
        dropout: float = 0.0,
        input_bias: bool = True,
        batch_first: bool = True,
        stored_pattern_size: int | None = None,
        pattern_projection_size: int | None = None,
        similarity: str | nn.Module = "dot",
        separation: str | nn.Module = "softmax",
        similarity_kwargs: dict[str, Any] | None = None,
        separation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(num_heads=num_heads)
        if update_steps_max < 0:
            raise ValueError(f"update_steps_max must be >= 0, got {update_steps_max}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        stored_pattern_size = stored_pattern_size or input_size
        pattern_projection_size = pattern_projection_size or input_size
        if stored_pattern_as_static or state_pattern_as_static:
            # a static input lives in the association space already: it fixes that space's size
            qk_size = stored_pattern_size if stored_pattern_as_static else input_size
        else:
            hidden_size = hidden_size or input_size
            qk_size = None if hidden_size is None else hidden_size * num_heads
        if qk_size is not None and qk_size % num_heads:
            raise ValueError(
                f"the association space ({qk_size}) must divide evenly into num_heads={num_heads}"
            )
        self.head_dim = None if qk_size is None else qk_size // num_heads
        if pattern_projection_as_static:
            v_size = pattern_projection_size
        else:
            pattern_size = pattern_size or hidden_size or self.head_dim
            v_size = None if pattern_size is None else pattern_size * num_heads
        self.num_heads = num_heads
        self.batch_first = batch_first
        self.update_steps_max = update_steps_max
        self.update_steps_eps = update_steps_eps
        if update_steps_dt is not None and not update_steps_dt > 0:
            raise ValueError(f"update_steps_dt must be > 0 (or None), got {update_steps_dt}")
        self.update_steps_dt = update_steps_dt
        if scaling is None:
            scaling = 1.0 / math.sqrt(self.head_dim) if self.head_dim else 1.0
        if not scaling > 0:
            raise ValueError(f"scaling (beta) must be > 0, got {scaling}")
        self.scaling = float(scaling)

        self.norm_stored = _norm(
            stored_pattern_size, normalize_stored_pattern, normalize_stored_pattern_affine
        )
        self.norm_state = _norm(input_size, normalize_state_pattern, normalize_state_pattern_affine)
        self.norm_projection = _norm(
            pattern_projection_size,
            normalize_pattern_projection,
            normalize_pattern_projection_affine,
        )
        self.project_stored = _projection(
            stored_pattern_size, qk_size or 0, stored_pattern_as_static, input_bias
        )
        self.project_state = _projection(
            input_size, qk_size or 0, state_pattern_as_static, input_bias
        )
        self.project_pattern = _projection(
            pattern_projection_size, v_size or 0, pattern_projection_as_static, input_bias
        )
        self.norm_hopfield_space = _norm(
            self.head_dim, normalize_hopfield_space, normalize_hopfield_space_affine
        )
        output_size = output_size or input_size
        if disable_out_projection:
            self.project_out = nn.Identity()
        else:
            if v_size is None or output_size is None:
                raise ValueError("the output projection needs input_size (or disable it)")
            self.project_out = nn.Linear(v_size, output_size)
        self.dropout = nn.Dropout(dropout)

        self.similarity = build_similarity(
            similarity, dim=self.head_dim, **(similarity_kwargs or {})
        )
        self.separation = build_separation(
            separation, beta=self.scaling, **(separation_kwargs or {})
        )

    @classmethod
    def plain(
        cls,
        similarity: str | nn.Module = "dot",
        separation: str | nn.Module = "softmax",
        scaling: float = 1.0,
        update_steps_max: int = 0,
        update_steps_eps: float = 1e-4,
        input_size: int | None = None,
        **kwargs: Any,
    ) -> Hopfield:
        """Plain retrieval: no projections, no normalisation, one head.

        Equals :func:`ahop.functional.retrieve` with ``beta=scaling`` and
        ``steps = update_steps_max + 1``. ``input_size`` is needed only by learned similarities.
        """
        return cls(
            input_size=input_size,
            scaling=scaling,
            update_steps_max=update_steps_max,
            update_steps_eps=update_steps_eps,
            normalize_stored_pattern=False,
            normalize_state_pattern=False,
            normalize_pattern_projection=False,
            stored_pattern_as_static=True,
            state_pattern_as_static=True,
            pattern_projection_as_static=True,
            disable_out_projection=True,
            similarity=similarity,
            separation=separation,
            **kwargs,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, size = x.shape
        if size % self.num_heads:
            raise ValueError(f"pattern size {size} does not divide into num_heads={self.num_heads}")
        return x.reshape(batch, length, self.num_heads, -1).transpose(1, 2)

    def _unpack(self, input: HopfieldInput) -> tuple[Tensor, Tensor, Tensor]:
        if isinstance(input, Tensor):
            stored = state = projection = input
        elif isinstance(input, (tuple, list)) and len(input) == 3:
            stored, state, projection = input
        else:
            raise ValueError(
                "input must be one tensor or a tuple (stored_pattern, state_pattern, "
                "pattern_projection)"
            )
        tensors = [stored, state, projection]
        for name, tensor in zip(("stored_pattern", "state_pattern", "pattern_projection"), tensors):
            if not isinstance(tensor, Tensor) or tensor.dim() != 3:
                shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor)
                raise ValueError(
                    f"{name} must be a 3-d tensor (batch, length, features), got {shape}"
                )
        if not self.batch_first:
            tensors = [t.transpose(0, 1) for t in tensors]
        stored, state, projection = tensors
        if stored.shape[1] != projection.shape[1]:
            raise ValueError(
                f"stored_pattern and pattern_projection need the same length N, got "
                f"{stored.shape[1]} and {projection.shape[1]}"
            )
        return stored, state, projection

    def _mask(
        self,
        batch: int,
        stored_pattern_padding_mask: Tensor | None,
        association_mask: Tensor | None,
    ) -> Tensor | None:
        mask = None
        if stored_pattern_padding_mask is not None:
            padding = stored_pattern_padding_mask.to(torch.bool)
            if padding.dim() != 2 or padding.shape[0] != batch:
                raise ValueError(
                    f"stored_pattern_padding_mask must be (batch={batch}, N), "
                    f"got {tuple(padding.shape)}"
                )
            mask = padding[:, None, None, :]
        if association_mask is not None:
            assoc = association_mask.to(torch.bool)
            if assoc.dim() == 2:
                assoc = assoc[None, None]
            elif assoc.dim() == 3:
                assoc = assoc[:, None]
            elif assoc.dim() != 4:
                raise ValueError(
                    f"association_mask must be (Q, N), (B, Q, N) or (B, heads, Q, N), "
                    f"got {tuple(assoc.shape)}"
                )
            mask = assoc if mask is None else mask | assoc
        return mask

    def _heads(self, input: HopfieldInput) -> tuple[Tensor, Tensor, Tensor]:
        stored, state, projection = self._unpack(input)
        keys = self._split_heads(self.project_stored(self.norm_stored(stored)))
        queries = self._split_heads(self.project_state(self.norm_state(state)))
        values = self._split_heads(self.project_pattern(self.norm_projection(projection)))
        keys = self.norm_hopfield_space(keys)
        queries = self.norm_hopfield_space(queries)
        return keys, queries, values

    def _retrieve(self, keys: Tensor, queries: Tensor, mask: Tensor | None, **options: Any):
        """The layer's update steps (its similarity, separation, step count, tolerance, dt)."""
        return retrieve(
            queries,
            keys,
            similarity=self.similarity,
            separation=self.separation,
            steps=self.update_steps_max,
            eps=self.update_steps_eps,
            mask=mask,
            dt=self.update_steps_dt,
            **options,
        )

    def _update_state(self, keys: Tensor, queries: Tensor, mask: Tensor | None) -> Tensor:
        if self.update_steps_max == 0:
            return queries
        return self._retrieve(keys, queries, mask)

    # -- public API -------------------------------------------------------------------------

    def forward(
        self,
        input: HopfieldInput,
        stored_pattern_padding_mask: Tensor | None = None,
        association_mask: Tensor | None = None,
    ) -> Tensor:
        """Retrieve for every state pattern: ``(B, Q, output_size)`` (``(Q, B, .)`` if not batch_first)."""
        keys, queries, values = self._heads(input)
        mask = self._mask(keys.shape[0], stored_pattern_padding_mask, association_mask)
        queries = self._update_state(keys, queries, mask)
        if self.training and self.dropout.p > 0:
            weights = self.dropout(associate(queries, keys, self.similarity, self.separation, mask))
            heads = weights.to(values.dtype) @ values
        else:
            heads = retrieve(
                queries,
                keys,
                values,
                similarity=self.similarity,
                separation=self.separation,
                mask=mask,
            )
        batch, _, length, _ = heads.shape
        output = self.project_out(heads.transpose(1, 2).reshape(batch, length, -1))
        return output if self.batch_first else output.transpose(0, 1)

    def get_association_matrix(
        self,
        input: HopfieldInput,
        stored_pattern_padding_mask: Tensor | None = None,
        association_mask: Tensor | None = None,
    ) -> Tensor:
        """Association weights of the final retrieval step, ``(B, num_heads, Q, N)``."""
        keys, queries, _ = self._heads(input)
        mask = self._mask(keys.shape[0], stored_pattern_padding_mask, association_mask)
        queries = self._update_state(keys, queries, mask)
        return associate(queries, keys, self.similarity, self.separation, mask)

    def get_energies(
        self,
        input: HopfieldInput,
        stored_pattern_padding_mask: Tensor | None = None,
        association_mask: Tensor | None = None,
    ) -> Tensor:
        """Energy (:mod:`ahop.energy`) of the state patterns in association space at every
        update step: ``(steps + 1, B, num_heads, Q)``, first the projected states, last the
        states the final retrieval starts from (``update_steps_max = 0``: one row).

        ``ValueError`` when the separation has no energy (e.g. polynomial with normalisation).
        """
        keys, queries, _ = self._heads(input)
        mask = self._mask(keys.shape[0], stored_pattern_padding_mask, association_mask)
        if self.update_steps_max == 0:
            check_energy(self.separation)
            return network_energy(self.similarity, self.separation, queries, keys, mask)[None]
        return self._retrieve(keys, queries, mask, return_energies=True).energies


class HopfieldLayer(nn.Module):
    """A learned lookup memory: the input (state patterns) retrieves from ``quantity`` stored
    patterns that are parameters of the layer.

    Args:
        input_size: size of the input (state) patterns and of the stored lookup patterns.
        quantity: number of stored lookup patterns.
        lookup_weights_as_separated: retrieve learned *targets* (a separate parameter) instead of
            the lookup patterns themselves (hetero-association).
        lookup_targets_as_trainable: train the targets (otherwise fixed at initialisation).
        **kwargs: everything else of :class:`Hopfield` (``hidden_size``, ``output_size``,
            ``num_heads``, ``scaling``, ``similarity``, ``separation``, normalisation options ...).
    """

    def __init__(
        self,
        input_size: int,
        quantity: int = 1,
        lookup_weights_as_separated: bool = False,
        lookup_targets_as_trainable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        check_positive_ints(quantity=quantity)
        self.hopfield = Hopfield(input_size=input_size, **kwargs)
        self.lookup_weights = nn.Parameter(torch.empty(1, quantity, input_size))
        nn.init.normal_(self.lookup_weights, std=1.0 / math.sqrt(input_size))
        targets = None
        if lookup_weights_as_separated:
            targets = torch.randn(1, quantity, input_size) / math.sqrt(input_size)
        if targets is not None and lookup_targets_as_trainable:
            self.lookup_targets = nn.Parameter(targets)
        else:
            self.register_buffer("lookup_targets", targets)

    @property
    def quantity(self) -> int:
        """Number of stored lookup patterns."""
        return self.lookup_weights.shape[1]

    def _inputs(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = input.shape[0 if self.hopfield.batch_first else 1]
        stored = self.lookup_weights.expand(batch, -1, -1)
        targets = (
            stored if self.lookup_targets is None else self.lookup_targets.expand(batch, -1, -1)
        )
        if not self.hopfield.batch_first:
            stored, targets = stored.transpose(0, 1), targets.transpose(0, 1)
        return stored, input, targets

    def forward(self, input: Tensor, association_mask: Tensor | None = None) -> Tensor:
        """``(B, Q, input_size) -> (B, Q, output_size)``."""
        return self.hopfield(self._inputs(input), association_mask=association_mask)

    def get_association_matrix(self, input: Tensor) -> Tensor:
        """Association of each input with each lookup pattern, ``(B, num_heads, Q, quantity)``."""
        return self.hopfield.get_association_matrix(self._inputs(input))

    def get_energies(self, input: Tensor) -> Tensor:
        """Energies of the inputs' states at every update step (:meth:`Hopfield.get_energies`)."""
        return self.hopfield.get_energies(self._inputs(input))


class HopfieldPooling(nn.Module):
    """Pools a set of patterns into ``quantity`` learned queries' retrievals (attention pooling).

    ``forward(input (B, N, input_size), stored_pattern_padding_mask (B, N))`` returns
    ``(B, quantity * output_size)``: the retrievals of the learned state patterns, flattened.
    Padded patterns (mask ``True``) never contribute.

    Args:
        input_size: size of the pooled patterns.
        quantity: number of learned state patterns (pooling queries).
        trainable: learn the state patterns (otherwise fixed at initialisation).
        **kwargs: everything else of :class:`Hopfield`.
    """

    def __init__(
        self, input_size: int, quantity: int = 1, trainable: bool = True, **kwargs: Any
    ) -> None:
        super().__init__()
        check_positive_ints(quantity=quantity)
        self.hopfield = Hopfield(input_size=input_size, **kwargs)
        pooling = torch.randn(1, quantity, input_size) / math.sqrt(input_size)
        if trainable:
            self.pooling_weights = nn.Parameter(pooling)
        else:
            self.register_buffer("pooling_weights", pooling)

    def _inputs(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = input.shape[0 if self.hopfield.batch_first else 1]
        state = self.pooling_weights.expand(batch, -1, -1)
        if not self.hopfield.batch_first:
            state = state.transpose(0, 1)
        return input, state, input

    def forward(self, input: Tensor, stored_pattern_padding_mask: Tensor | None = None) -> Tensor:
        """``(B, N, input_size) -> (B, quantity * output_size)``."""
        pooled = self.hopfield(self._inputs(input), stored_pattern_padding_mask)
        if not self.hopfield.batch_first:
            pooled = pooled.transpose(0, 1)
        return pooled.flatten(start_dim=1)

    def get_association_matrix(
        self, input: Tensor, stored_pattern_padding_mask: Tensor | None = None
    ) -> Tensor:
        """Pooling weights over the input patterns, ``(B, num_heads, quantity, N)``."""
        return self.hopfield.get_association_matrix(
            self._inputs(input), stored_pattern_padding_mask
        )

    def get_energies(
        self, input: Tensor, stored_pattern_padding_mask: Tensor | None = None
    ) -> Tensor:
        """Energies of the pooling queries at every update step (:meth:`Hopfield.get_energies`)."""
        return self.hopfield.get_energies(self._inputs(input), stored_pattern_padding_mask)
