"""Hopfield-based classifiers built from the layers in :mod:`ahop.layers`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ahop.checks import check_positive_ints
from ahop.layers import HopfieldLayer
from ahop.registry import Registry

FEATURE_EMBEDDINGS: Registry[nn.Module] = Registry("feature embedding")


@FEATURE_EMBEDDINGS.register("linear")
class LinearFeatureEmbedding(nn.Sequential):
    """``(B, F)`` rows -> ``(B, E)``: one linear layer over all features, GELU, dropout."""

    def __init__(self, num_features: int, embedding_dim: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(num_features, embedding_dim), nn.GELU(), nn.Dropout(dropout))


@FEATURE_EMBEDDINGS.register("periodic")
class PeriodicFeatureEmbedding(nn.Module):
    """Periodic embeddings of numeric features ("PLR", Gorishniy et al. 2022), then a linear mix.

    Each feature ``x_f`` becomes ``ReLU(W [sin(2 pi c_f x_f), cos(2 pi c_f x_f)] + b)`` with
    ``frequencies`` learned coefficients ``c_f`` per feature (initialised ``N(0, sigma²)``) and a
    linear map ``W`` shared by all features ("lite" variant); the ``F`` feature embeddings are
    concatenated and mixed by a linear layer + GELU. It lets the network place sharp, learned
    thresholds on single features, the kind of split gradient-boosted trees make; ``sigma`` sets
    how fine they can be on standardised features (the most important setting).

    Args:
        num_features: input features ``F``.
        embedding_dim: output size ``E``.
        frequencies: learned frequencies per feature.
        feature_dim: size of each feature's embedding.
        sigma: standard deviation of the initial frequencies.
        dropout: dropout on the output.
    """

    def __init__(
        self,
        num_features: int,
        embedding_dim: int,
        frequencies: int = 16,
        feature_dim: int = 16,
        sigma: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_ints(frequencies=frequencies, feature_dim=feature_dim)
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.coefficients = nn.Parameter(torch.randn(num_features, frequencies) * sigma)
        self.per_feature = nn.Linear(2 * frequencies, feature_dim)
        self.mix = nn.Sequential(
            nn.Linear(num_features * feature_dim, embedding_dim), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, features: Tensor) -> Tensor:
        angles = 2 * math.pi * self.coefficients * features.unsqueeze(-1)  # (B, F, frequencies)
        per_feature = self.per_feature(torch.cat([angles.sin(), angles.cos()], -1)).relu()
        return self.mix(per_feature.flatten(-2))


class TabularHopfieldClassifier(nn.Module):
    """Feature embedding -> Hopfield lookup memory (residual) -> linear classifier.

    Each row is embedded (:data:`FEATURE_EMBEDDINGS`: ``"linear"`` or ``"periodic"``), then retrieves from ``quantity`` learned stored patterns through a
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
        feature_embedding: ``"linear"`` (one linear layer + GELU) or ``"periodic"``
            (:class:`PeriodicFeatureEmbedding`).
        feature_embedding_kwargs: options of the feature embedding (e.g. ``{"sigma": 0.3}``).
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
        options = dict(feature_embedding_kwargs or {})
        accepted = FEATURE_EMBEDDINGS.options(feature_embedding) - {
            "num_features",
            "embedding_dim",
            "dropout",
        }
        if set(options) - accepted:
            raise ValueError(
                f"unknown feature_embedding_kwargs {sorted(set(options) - accepted)} for "
                f"{feature_embedding!r}; allowed: {', '.join(sorted(accepted)) or 'none'}"
            )
        self.embed = FEATURE_EMBEDDINGS.build(
            feature_embedding,
            **options,
            num_features=num_features,
            embedding_dim=embedding_dim,
            dropout=dropout,
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
