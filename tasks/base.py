"""Behaviour every ahop task shares: optimizer / scheduler from config, per-stage metrics,
logging, the monitored metric and its best value, class-probability predictions."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics import MaxMetric, MetricCollection, MinMetric
from torchmetrics.classification import AUROC, Accuracy, F1Score

from tasks.lightning_compat import (
    flatten_params,
    sanitize_params,
    skip_datamodule_hparams_logging,
    tensorboard_file_writer,
)
from tasks.quiet import QuietSanityCheck

STAGES = ("train", "val", "test")


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """AdamW with lr 1e-3, the default when a config names no optimizer."""
    return torch.optim.AdamW(params, lr=1e-3)


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, AUROC and macro F1 for ``num_classes`` classes (binary when 2).

    Every metric consumes class probabilities ``(B, C)`` and integer targets ``(B,)``; binary
    metrics get the positive-class probability.
    """
    if num_classes < 2:
        raise ValueError(f"classification needs at least 2 classes, got {num_classes}")
    if num_classes == 2:
        return MetricCollection(
            {
                "acc": Accuracy(task="binary"),
                "auroc": AUROC(task="binary"),
                "f1": F1Score(task="binary"),
            }
        )
    kwargs = {"task": "multiclass", "num_classes": num_classes}
    return MetricCollection(
        {
            "acc": Accuracy(**kwargs),
            "auroc": AUROC(**kwargs),
            "f1": F1Score(average="macro", **kwargs),
        }
    )


def write_tensorboard_hparams(
    logger: TensorBoardLogger, params: dict[str, Any], metrics: list[str]
) -> None:
    """TensorBoard's hparams view: ``params`` (flattened) against the scalar tags ``metrics``.

    Only the metric *names* are declared: Lightning's ``log_hyperparams(params, metrics)`` also
    writes each metric's value at step 0, which put a NaN first point in ``val/<metric>_best``.
    """
    from torch.utils.tensorboard.summary import hparams

    flat = sanitize_params(flatten_params(params))
    writer = tensorboard_file_writer(logger)
    for summary in hparams(flat, dict.fromkeys(metrics, 0.0)):
        writer.add_summary(summary)


class BaseTask(LightningModule):
    """Shared LightningModule base.

    Subclasses implement :meth:`configure_models`, :meth:`configure_losses`,
    :meth:`configure_metrics` (a ``MetricCollection`` fed by :meth:`metric_inputs`) and
    :meth:`shared_step` (one batch -> loss, metric inputs). Metrics are cloned per stage and logged
    as ``train/acc``, ``val/acc`` ...; ``val/<monitor>_best`` tracks the best value so far.

    Args:
        optimizer: a callable ``params -> Optimizer`` (LightningCLI: ``class_path`` + ``init_args``).
        lr_scheduler: optional callable ``optimizer -> scheduler``; ``ReduceLROnPlateau`` watches
            the monitored metric, and its ``mode`` must be the monitor's (``max`` for accuracy).
    """

    #: the metric checkpoints and early stopping watch, and whether larger is better
    monitor: str = "val/acc"
    monitor_mode: str = "max"
    #: the model-selection rule ``ahop cv`` uses when none is given (a name in
    #: ``ahop_cli.selection.SELECTION_RULES``): the one measured best for this kind of task
    cv_selection: str = "inner_cv"
    #: init arguments the networks cannot be built without: sizes of the data (e.g.
    #: ``num_features``), which the command line takes from the datamodule's attribute of the same
    #: name (:mod:`tasks.links`); in Python pass ``**tasks.links.data_sizes(datamodule)``
    data_sizes: tuple[str, ...] = ()

    def __init__(
        self,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.built = False

    def save_task_hyperparameters(self) -> None:
        """Save the subclass's init arguments (not the optimizer callables) and build the
        networks; a missing data size is a ``ValueError`` naming it."""
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"], logger=False)
        missing = [name for name in self.data_sizes if self.hparams.get(name) is None]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs {', '.join(missing)} (sizes of the data): the "
                "command line takes them from the datamodule, or from the checkpoint of "
                "--ckpt_path; in Python pass **tasks.links.data_sizes(datamodule)"
            )
        self.build()

    def build(self) -> None:
        """Create networks, losses and metrics."""
        self.configure_models()
        self.configure_losses()
        self.setup_metrics()
        self.built = True

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            # on_train_start logs the data's hyperparameters next to the model's (nested), so
            # Lightning must not log them a second time, flat
            skip_datamodule_hparams_logging(datamodule)

    # -- wiring done by subclasses -------------------------------------------------------------

    def configure_models(self) -> None:
        """Build the networks (called once the data's sizes are known)."""

    def configure_losses(self) -> None:
        """Set ``self.criterion``."""

    def configure_metrics(self) -> MetricCollection | None:
        """The metrics computed per stage, or ``None``."""
        return None

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """Loss of one batch and the inputs of the metrics (``None`` = no metric update)."""
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------------

    def setup_metrics(self) -> None:
        """Clone the task's metrics per stage and create the best-value tracker."""
        metrics = self.configure_metrics()
        self.stage_metrics = nn.ModuleDict(
            {}
            if metrics is None
            else {f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in STAGES}
        )
        self.best_tracker = MaxMetric() if self.monitor_mode == "max" else MinMetric()

    @property
    def best_name(self) -> str:
        """Name under which the best monitored value is logged (e.g. ``val/acc_best``)."""
        return f"{self.monitor}_best"

    def _step(self, batch: Any, stage: str) -> Tensor:
        loss, metric_inputs = self.shared_step(batch, stage)
        batch_size = self.batch_size(batch)
        self.log(
            f"{stage}/loss",
            loss.detach(),
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,  # under DDP every stage's loss is the mean over the processes
            batch_size=batch_size,
        )
        if metric_inputs is not None and f"{stage}_metrics" in self.stage_metrics:
            metrics = self.stage_metrics[f"{stage}_metrics"]
            metrics.update(*metric_inputs)
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    @staticmethod
    def batch_size(batch: Any) -> int:
        """Number of samples in a batch (first tensor's length)."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return len(first)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at step {self.global_step}: lower the learning "
                "rate or beta, or check the inputs for NaN"
            )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        value = self.trainer.callback_metrics.get(self.monitor)
        if value is None or self.trainer.sanity_checking:
            return
        self.best_tracker.update(value.to(self.device))
        self.log(self.best_name, self.best_tracker.compute(), sync_dist=True)

    def logged_hyperparameters(self) -> dict[str, Any]:
        """What ``hparams.yaml`` and TensorBoard's hparams view show: ``{"model": ..., "data":
        ...}`` (the datamodule's init arguments, when there is a datamodule)."""
        params: dict[str, Any] = {"model": dict(self.hparams)}
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "hparams", None):
            params["data"] = dict(datamodule.hparams)
        return params

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the best monitored value so far, so that a resumed run continues val/<metric>_best
        if self.best_tracker.update_called:
            checkpoint["best_monitored"] = float(self.best_tracker.compute())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_best = checkpoint.get("best_monitored")

    def on_train_start(self) -> None:
        self.best_tracker.reset()
        best = getattr(self, "_resumed_best", None)
        if best is not None:  # resuming: the best value before the interruption still counts
            self.best_tracker.update(torch.tensor(best, device=self.device))
        params = self.logged_hyperparameters()
        for logger in self.loggers:
            logger.log_hyperparams(params)
            if isinstance(logger, TensorBoardLogger) and self.trainer.is_global_zero:
                write_tensorboard_hparams(logger, params, [self.best_name, self.monitor])
                # its save() keeps an hparams.yaml written before (Lightning writes one early)
                save_hparams_to_yaml(os.path.join(logger.log_dir, "hparams.yaml"), logger.hparams)
            logger.save()

    def configure_callbacks(self) -> list[Callback]:
        """Callbacks every task's fit needs (subclasses extend the list)."""
        return [QuietSanityCheck()]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # its mode defaults to "min": on a maximised monitor it would cut the rate whenever
            # the metric improves
            if scheduler.mode != self.monitor_mode:
                raise ValueError(
                    f"ReduceLROnPlateau watches {self.monitor}, where "
                    f"{'larger' if self.monitor_mode == 'max' else 'smaller'} is better, but has "
                    f"mode {scheduler.mode!r}: set --model.init_args.lr_scheduler.init_args.mode "
                    f"{self.monitor_mode}"
                )
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}


class ClassificationTask(BaseTask):
    """A task whose network maps a batch's inputs to class logits ``(B, C)``.

    Cross-entropy loss, accuracy / AUROC / macro-F1 per stage, ``predict_step`` returns class
    probabilities ``(B, C)``. Subclasses set ``self.num_classes`` and ``self.network`` in
    :meth:`configure_models` and may override :meth:`forward`.
    """

    num_classes: int

    def configure_losses(self) -> None:
        self.criterion = nn.CrossEntropyLoss()

    def configure_metrics(self) -> MetricCollection:
        return classification_metrics(self.num_classes)

    def forward(self, *inputs: Tensor) -> Tensor:
        """Class logits ``(B, C)``."""
        return self.network(*inputs)

    def probabilities(self, logits: Tensor) -> Tensor:
        """What the metrics consume: ``(B, C)`` probabilities, or ``(B,)`` positive-class ones."""
        probs = logits.softmax(dim=-1)
        return probs[:, 1] if self.num_classes == 2 else probs

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, tuple[Tensor, ...]]:
        *inputs, target = batch
        logits = self(*inputs)
        loss = self.criterion(logits, target)
        return loss, (self.probabilities(logits.detach()), target)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        inputs = batch[:-1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else batch
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        return self(*inputs).softmax(dim=-1)

    # -- export (export.py) -------------------------------------------------------------------

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A dummy input batch (subclasses that support export define it)."""
        raise NotImplementedError(f"{type(self).__name__} does not define example_input()")

    def export_inputs(self, batch_size: int = 2) -> dict[str, Tensor]:
        """Example inputs of the exported graph, by input name."""
        return {"inputs": self.example_input(batch_size)}

    def export_dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Per input, the dimensions that may vary in the exported graph (index -> name)."""
        return {"inputs": {0: "batch"}}

    def export_output(self) -> tuple[str, list[str | int]]:
        """Name and shape of the exported graph's output."""
        return "probabilities", ["batch", self.num_classes]

    def export_probabilities(self, *inputs: Tensor) -> Tensor:
        """What the exported graph computes: class probabilities ``(B, C)``."""
        return self(*inputs).softmax(dim=-1)
