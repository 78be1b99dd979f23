"""Multiple-instance (bag) classification with Hopfield pooling.

Batches are ``(instances (B, L, F), mask (B, L) True = padding, labels float (B,))`` as yielded by
:class:`datamodules.mil.MILDataModule`. The network outputs one logit per bag; the loss is
binary cross-entropy with logits; accuracy, AUROC and F1 are the binary metrics of
:func:`tasks.base.classification_metrics` on the positive-bag probability.

**Monitored metric: ``val/loss`` (min).** The inner validation split of the MIL benchmarks holds
only 9-20 bags; there, AUROC reaches 1.0 within a few epochs and then ties at every later epoch,
so it cannot tell a better model from a worse one, while the validation loss keeps ranking
models. Early stopping and the best checkpoint therefore watch ``val/loss``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ahop.mil_models import MIL_NETWORKS
from tasks.base import BaseTask, classification_metrics, default_optimizer


class MILClassifier(BaseTask):
    """Bags -> positive-bag logit via a bag network of :data:`~ahop.mil_models.MIL_NETWORKS`.

    ``num_features`` defaults to the datamodule's (read at ``setup``). Each network takes the
    options below that its class accepts (``network: attention`` ignores the Hopfield ones).

    Args:
        num_features: instance features (``None``: from the datamodule).
        network: the pooling: ``hopfield`` (:class:`~ahop.mil_models.HopfieldMILNetwork`),
            ``attention`` (gated attention MIL, Ilse et al. 2018) or ``mean`` (deep sets); the
            last two are the baselines that show what the Hopfield pooling adds.
        embedding_dim: instance embedding size ``D`` (divisible by ``num_heads``).
        num_embedding_layers: Linear + ReLU + dropout layers of the instance MLP (>= 1).
        num_heads: association heads of the pooling.
        hidden_size: association-space size per head (``None``: ``D / num_heads``).
        quantity: learned state patterns (pooling queries); their retrievals are concatenated.
        similarity: how queries are compared with the stored patterns: ``dot``, ``cosine``,
            ``euclidean``, ``manhattan`` or ``adaptive`` (the learned A-Hop similarity).
        separation: how similarities become association weights: ``softmax``, ``max``,
            ``polynomial``, ``topk``, ``sparsemax``, ``entmax``.
        scaling: inverse temperature of the separation (``None``: 1 / sqrt(association size)).
        similarity_kwargs: options of the similarity (e.g. ``{beta_dis: 0.1}`` for ``adaptive``).
        dropout: dropout in the instance MLP, on the association weights and before the
            classifier.
        instance_dropout: in training, the probability that an instance is left out of its
            bag's pooling (every bag keeps at least one); off in evaluation.
        input_dropout: in training, dropout on the instance features before the MLP.
        attention_dim: ``network: attention``: hidden size of the gated attention.
        pooling_kwargs: ``network: hopfield``: any other option of the pooling layer
            (:class:`~ahop.layers.Hopfield`), e.g. ``{pattern_projection_as_static: true}``.
        pos_weight: weight of positive bags in the loss (``None`` = 1).
        optimizer: a ``params -> Optimizer`` callable (``class_path`` + ``init_args`` in a
            config; default AdamW, lr 1e-3).
        lr_scheduler: an ``optimizer -> scheduler`` callable, or ``None``; ``ReduceLROnPlateau``
            watches the monitored metric.
    """

    monitor = "val/loss"
    monitor_mode = "min"
    data_sizes = ("num_features",)

    def __init__(
        self,
        num_features: int | None = None,
        network: str = "hopfield",
        embedding_dim: int = 64,
        num_embedding_layers: int = 2,
        num_heads: int = 4,
        hidden_size: int | None = None,
        quantity: int = 1,
        similarity: str = "dot",
        separation: str = "softmax",
        scaling: float | None = None,
        dropout: float = 0.0,
        similarity_kwargs: dict[str, Any] | None = None,
        instance_dropout: float = 0.0,
        input_dropout: float = 0.0,
        attention_dim: int = 64,
        pooling_kwargs: dict[str, Any] | None = None,
        pos_weight: float | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        if network not in MIL_NETWORKS:
            raise ValueError(
                f"unknown MIL network {network!r}; allowed values: {', '.join(MIL_NETWORKS)}"
            )
        if pos_weight is not None and not pos_weight > 0:
            raise ValueError(f"pos_weight must be > 0, got {pos_weight}")
        self.save_task_hyperparameters()

    def configure_models(self) -> None:
        hp = self.hparams
        network = MIL_NETWORKS[hp.get("network", "hopfield")]  # checkpoints from before it
        accepted = inspect.signature(network).parameters
        # checkpoints from before an option lack it: the network's default applies
        self.network = network(**{name: hp[name] for name in accepted if name in hp})

    def configure_model(self) -> None:
        """Build the network once the datamodule is known. Lightning calls this hook, and weight
        averaging (``EMAWeightAveraging``) calls it from its ``setup`` *before* the module's
        ``setup``: without it the averaged copy would hold no parameters."""
        if not self.built and self._trainer is not None:
            self.setup("fit")

    def configure_losses(self) -> None:
        weight = self.hparams.pos_weight
        self.criterion = nn.BCEWithLogitsLoss(
            pos_weight=None if weight is None else torch.tensor(float(weight))
        )

    def configure_metrics(self) -> MetricCollection:
        return classification_metrics(2)

    def forward(self, instances: Tensor, mask: Tensor | None = None) -> Tensor:
        """Bag logits ``(B,)`` of instances ``(B, L, F)`` with padding mask ``(B, L)``."""
        return self.network(instances, mask)

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, tuple[Tensor, ...]]:
        instances, mask, labels = batch
        logits = self(instances, mask)
        loss = self.criterion(logits, labels.to(logits.dtype))
        return loss, (torch.sigmoid(logits.detach()), labels.long())

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Positive-bag probabilities ``(B,)``; ``batch`` is ``(instances, mask[, labels])``."""
        instances, mask = batch[0], batch[1]
        return torch.sigmoid(self(instances, mask))

    # -- export (export.py): two inputs, bag length variable too -------------------------------

    def export_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        """Padded bags ``instances (B, L, F)`` and their padding mask ``(B, L)`` (True = pad)."""
        length = 4
        mask = torch.zeros(batch_size, length, dtype=torch.bool)
        mask[0, -1] = True  # a padded bag, so the graph keeps the masking path
        return {
            "instances": torch.zeros(batch_size, length, self.hparams.num_features),
            "mask": mask,
        }

    def export_dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"instances": {0: "batch", 1: "bag_size"}, "mask": {0: "batch", 1: "bag_size"}}

    def export_output(self) -> tuple[str, list[str | int]]:
        return "probabilities", ["batch"]

    def export_probabilities(self, instances: Tensor, mask: Tensor) -> Tensor:
        """Positive-bag probabilities ``(B,)``."""
        return torch.sigmoid(self(instances, mask))
