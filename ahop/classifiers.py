"""Hopfield-based classifiers built from the layers in :mod:`ahop.layers`."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ahop.layers import HopfieldLayer


class TabularHopfieldClassifier(nn.Module):
    """Feature embedding -> Hopfield lookup memory (residual) -> linear classifier.

    Each row is embedded, then retrieves from ``quantity`` learned stored patterns through a
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
    ) -> None:
        super().__init__()
        if num_features < 1 or num_classes < 2:
            raise ValueError(
                f"need num_features >= 1 and num_classes >= 2, got {num_features} and {num_classes}"
            )
        for name, value in (
            ("embedding_dim", embedding_dim),
            ("quantity", quantity),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim={embedding_dim} must be divisible by num_heads={num_heads}"
            )
        self.embed = nn.Sequential(
            nn.Linear(num_features, embedding_dim), nn.GELU(), nn.Dropout(dropout)
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

    def forward(self, features: Tensor) -> Tensor:
        """``(B, F)`` features -> ``(B, C)`` class logits."""
        if features.dim() != 2:
            raise ValueError(f"expected features of shape (batch, F), got {tuple(features.shape)}")
        state = self.embed(features).unsqueeze(1)
        for block, norm in zip(self.blocks, self.norms):
            state = norm(state + block(state))
        return self.head(state.squeeze(1))
