"""Tabular classification with a Hopfield lookup-memory classifier."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from ahop.classifiers import TabularHopfieldClassifier
from tasks.base import ClassificationTask, default_optimizer


class TabularClassifier(ClassificationTask):
    """Rows ``(B, F)`` -> class logits via :class:`~ahop.classifiers.TabularHopfieldClassifier`.

    ``num_features`` / ``num_classes`` default to the datamodule's (read at ``setup``), so a
    config only chooses the model's shape, similarity and feature embedding (``linear`` or
    ``periodic``, see :data:`ahop.classifiers.FEATURE_EMBEDDINGS`).

    Args:
        num_features: input features per row ``F`` (``None``: the datamodule's).
        num_classes: classes ``C`` (``None``: the datamodule's).
        embedding_dim: size of the embedding / association space.
        quantity: stored (learned) patterns per Hopfield layer.
        num_heads: association heads per layer (must divide ``embedding_dim``).
        num_layers: stacked Hopfield blocks.
        similarity: how queries are compared with the stored patterns: ``dot``, ``cosine``,
            ``euclidean``, ``manhattan`` or ``adaptive`` (the learned A-Hop similarity).
        separation: how similarities become association weights: ``softmax``, ``max``,
            ``polynomial``, ``topk``, ``sparsemax``, ``entmax``.
        scaling: inverse temperature of the separation (``None``: 1 / sqrt(association size)).
        similarity_kwargs: options of the similarity (e.g. ``{beta_dis: 0.1}`` for ``adaptive``).
        dropout: dropout on the embedding and the association weights.
        feature_embedding: ``linear`` (one linear layer + GELU) or ``periodic`` (PLR-lite
            numeric embeddings).
        feature_embedding_kwargs: options of the feature embedding (e.g. ``{sigma: 0.3}``).
        optimizer: a ``params -> Optimizer`` callable (``class_path`` + ``init_args`` in a
            config; default AdamW, lr 1e-3).
        lr_scheduler: an ``optimizer -> scheduler`` callable, or ``None``; ``ReduceLROnPlateau``
            watches the monitored metric.
    """

    data_sizes = ("num_features", "num_classes")

    def __init__(
        self,
        num_features: int | None = None,
        num_classes: int | None = None,
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
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        self.save_task_hyperparameters()

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A dummy batch of preprocessed rows ``(batch_size, num_features)`` (used for export)."""
        return torch.zeros(batch_size, self.hparams.num_features)

    def configure_models(self) -> None:
        hp = self.hparams
        self.num_classes = hp.num_classes
        self.network = TabularHopfieldClassifier(
            num_features=hp.num_features,
            num_classes=hp.num_classes,
            embedding_dim=hp.embedding_dim,
            quantity=hp.quantity,
            num_heads=hp.num_heads,
            num_layers=hp.num_layers,
            similarity=hp.similarity,
            separation=hp.separation,
            scaling=hp.scaling,
            dropout=hp.dropout,
            similarity_kwargs=hp.similarity_kwargs,
            feature_embedding=hp.feature_embedding,
            feature_embedding_kwargs=hp.feature_embedding_kwargs,
        )
