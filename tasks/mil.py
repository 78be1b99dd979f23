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

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ahop.checks import check_int
from ahop.ensemble import BinaryDeepEnsemble, mean_probability_logit
from ahop.mil_models import MIL_NETWORKS
from tasks.base import BaseTask, classification_metrics, default_optimizer
from tasks.networks import network_options

#: the network's arguments the task sets from the data (not options of ``network``)
NETWORK_SET_BY_TASK = ("num_features",)


class MILClassifier(BaseTask):
    """Bags -> positive-bag logit via a bag network of :data:`~ahop.mil_models.MIL_NETWORKS`.

    ``num_features`` is the datamodule's: the command line links it; in Python pass
    ``**tasks.links.data_sizes(datamodule)``.

    Args:
        num_features: instance features (required; see above).
        pooling: the bag network: ``hopfield`` (:class:`~ahop.mil_models.HopfieldMILNetwork`),
            ``attention`` (:class:`~ahop.mil_models.AttentionMILNetwork`, gated attention MIL,
            Ilse et al. 2018) or ``mean`` (:class:`~ahop.mil_models.MeanMILNetwork`); the last
            two are the baselines that show what the Hopfield pooling adds.
        network: the options of that network class other than ``num_features``, e.g.
            ``{embedding_dim: 64, similarity: adaptive}``; an option left out takes the
            network's default, one the class does not take is an error naming the allowed ones.
            On the command line: ``--model.init_args.network.similarity dot``.
        pos_weight: weight of positive bags in the loss (``None`` = 1).
        ensemble_size: independently initialised copies of the network trained together, each
            on its own loss; a bag's probability is their mean
            (:class:`ahop.ensemble.BinaryDeepEnsemble`; 1: one network). Costs ``k`` times the
            time; it never sees more bags than one network.
        optimizer: a ``params -> Optimizer`` callable (``class_path`` + ``init_args`` in a
            config; default AdamW, lr 1e-3).
        lr_scheduler: an ``optimizer -> scheduler`` callable, or ``None``; ``ReduceLROnPlateau``
            watches the monitored metric.
    """

    monitor = "val/loss"
    monitor_mode = "min"
    # ``max_epochs`` on all training bags, no epoch choice: held-out inner folds of elephant,
    # UCSB, musk1 and musk2 scored 1.3-1.9 AUROC points higher for it than for the epoch count
    # chosen by the inner validation loss (docs/results.md)
    cv_selection = "fixed"
    data_sizes = ("num_features",)

    def __init__(
        self,
        num_features: int | None = None,
        pooling: str = "hopfield",
        network: dict[str, Any] | None = None,
        pos_weight: float | None = None,
        ensemble_size: int = 1,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        if pooling not in MIL_NETWORKS:
            raise ValueError(
                f"unknown MIL pooling {pooling!r}; allowed values: {', '.join(MIL_NETWORKS)}"
            )
        network_options(MIL_NETWORKS[pooling], network, NETWORK_SET_BY_TASK)
        if pos_weight is not None and not pos_weight > 0:
            raise ValueError(f"pos_weight must be > 0, got {pos_weight}")
        check_int(ensemble_size, "ensemble_size", minimum=1)
        self.save_task_hyperparameters()

    def configure_models(self) -> None:
        hp = self.hparams
        network = MIL_NETWORKS[hp.pooling]
        options = network_options(network, hp.network, NETWORK_SET_BY_TASK)
        members = [
            network(num_features=hp.num_features, **options)
            for _ in range(hp.get("ensemble_size", 1))
        ]
        self.network = members[0] if len(members) == 1 else BinaryDeepEnsemble(members)

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
        if self.training and isinstance(self.network, BinaryDeepEnsemble):
            members = self.network.member_logits(instances, mask)  # (B, k): one loss each
            target = labels.to(members.dtype).unsqueeze(-1).expand_as(members)
            loss = self.criterion(members, target)
            logits = mean_probability_logit(members)
        else:
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
