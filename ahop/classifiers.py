"""Tabular Hopfield classifiers: a lookup memory of learned patterns, or retrieval from the
training rows (:mod:`ahop.tabular_retrieval`), by name in :data:`TABULAR_NETWORKS`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ahop.checks import check_positive_ints
from ahop.feature_embeddings import FEATURE_EMBEDDINGS, build_feature_embedding
from ahop.layers import HopfieldLayer
from ahop.registry import Registry
from ahop.tabular_retrieval import TabularRetrievalClassifier

__all__ = [
    "FEATURE_EMBEDDINGS",
    "TABULAR_NETWORKS",
    "TabularHopfieldClassifier",
    "TabularRetrievalClassifier",
]

TABULAR_NETWORKS: Registry[nn.Module] = Registry("tabular network")
TABULAR_NETWORKS.register("retrieval")(TabularRetrievalClassifier)


@TABULAR_NETWORKS.register("lookup")
class TabularHopfieldClassifier(nn.Module):
    """Feature embedding -> Hopfield lookup memory (residual) -> linear classifier.

    Each row is embedded (:data:`FEATURE_EMBEDDINGS`: ``"linear"``, ``"periodic"`` or
    ``"piecewise_linear"``), then retrieves from ``quantity`` learned stored patterns through a
    :class:`~ahop.layers.HopfieldLayer` whose similarity is configurable (``dot``, ``manhattan``,
    ``adaptive`` ...) and whose retrieved targets are learned too (hetero-association); the
    retrieval is added to the embedding and classified.

    Args:
        num_features: input features per row ``F``.
        num_classes: classes ``C``.
        embedding_dim: size of the embedding / association space.
        quantity: stored patterns per Hopfield layer.
        num_heads: association heads per layer.
        num_layers: stacked Hopfield blocks.
        similarity, separation, scaling, similarity_kwargs: the retrieval's parts (see
            :class:`~ahop.layers.Hopfield`).
        dropout: dropout on the embedding and the association weights.
        feature_embedding: ``"linear"`` (one linear layer + GELU), ``"periodic"`` or
            ``"piecewise_linear"`` (:mod:`ahop.feature_embeddings`; piecewise-linear needs
            :meth:`prepare` on training rows).
        feature_embedding_kwargs: options of the feature embedding (e.g. ``{"sigma": 0.3}``).
        num_numeric: leading numeric columns (default: all but the categorical code columns).
        categorical_cardinalities: one count per trailing categorical code column.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        embedding_dim: int = 64,
        quantity: int = 64,
        num_heads: int = 4,
        num_layers: int = 1,
        similarity: str = "dot",
        separation: str = "softmax",
        scaling: float | None = None,
        dropout: float = 0.0,
        similarity_kwargs: dict[str, Any] | None = None,
        feature_embedding: str = "linear",
        feature_embedding_kwargs: dict[str, Any] | None = None,
        num_numeric: int | None = None,
        categorical_cardinalities: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if num_features < 1 or num_classes < 2:
            raise ValueError(
                f"need num_features >= 1 and num_classes >= 2, got {num_features} and {num_classes}"
            )
        check_positive_ints(
            embedding_dim=embedding_dim,
            quantity=quantity,
            num_heads=num_heads,
            num_layers=num_layers,
        )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim={embedding_dim} must be divisible by num_heads={num_heads}"
            )
        self.embed = build_feature_embedding(
            feature_embedding,
            feature_embedding_kwargs,
            num_features=num_features,
            embedding_dim=embedding_dim,
            dropout=dropout,
            num_numeric=num_numeric,
            categorical_cardinalities=list(categorical_cardinalities),
        )
        self.blocks = nn.ModuleList(
            HopfieldLayer(
                embedding_dim,
                quantity=quantity,
                lookup_weights_as_separated=True,
                hidden_size=embedding_dim // num_heads,
                num_heads=num_heads,
                scaling=scaling,
                similarity=similarity,
                separation=separation,
                similarity_kwargs=similarity_kwargs,
                dropout=dropout,
            )
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(embedding_dim) for _ in range(num_layers))
        self.head = nn.Linear(embedding_dim, num_classes)

    def prepare(self, features: Tensor, labels: Tensor | None = None) -> None:
        """Fit the feature embedding's data-dependent parts (piecewise-linear bins) on training
        rows ``(N, F)`` (and their labels, for target-aware bins) if it has none yet."""
        if not self.embed.fitted:
            self.embed.fit(features, labels)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, F)`` features -> ``(B, C)`` class logits (``labels`` unused: the lookup memory
        holds no training rows)."""
        if features.dim() != 2:
            raise ValueError(f"expected features of shape (batch, F), got {tuple(features.shape)}")
        state = self.embed(features).unsqueeze(1)
        for block, norm in zip(self.blocks, self.norms):
            state = norm(state + block(state))
        return self.head(state.squeeze(1))
