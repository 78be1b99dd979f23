"""Image classification with the Hopfield image classifier of :mod:`ahop.image_models`.

Besides the scalar metrics of :class:`~tasks.base.ClassificationTask`, every validation epoch
writes two figures to TensorBoard (only when the logger is a ``TensorBoardLogger``): a grid of
validation images titled ``predicted / true`` class (``val/samples``, green when right) and the validation confusion
matrix (``val/confusion_matrix``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from ahop.image_models import HopfieldImageClassifier
from tasks.base import ClassificationTask, default_optimizer
from tasks.networks import network_options, options_type
from tasks.tensorboard import TensorBoardImages

#: the network's arguments the task sets from the data (not options of ``network``)
NETWORK_SET_BY_TASK = ("image_shape", "num_classes")
#: the type of ``ImageClassifier(network=...)``: every other option of the network
ImageNetworkOptions = options_type(HopfieldImageClassifier, NETWORK_SET_BY_TASK)

# --------------------------------------------------------------------------- figures


def image_grid_figure(
    images: Tensor, titles: Sequence[str], colors: Sequence[str] | None = None
) -> Figure:
    """A matplotlib figure showing ``images`` (N, C, H, W) in [0, 1], one title each.

    Grey-scale images (C = 1) use a grey colour map; C = 3 is shown as RGB.
    """
    count = len(images)
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(1.6 * columns, 1.8 * rows))
    pictures = images.detach().float().cpu().clamp(0, 1)
    for i in range(count):
        axis = figure.add_subplot(rows, columns, i + 1)
        picture = pictures[i]
        if picture.shape[0] == 1:
            axis.imshow(picture[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        else:
            axis.imshow(picture.permute(1, 2, 0).numpy())
        axis.set_title(titles[i], fontsize=8, color="black" if colors is None else colors[i])
        axis.axis("off")
    figure.tight_layout()
    return figure


def confusion_matrix_figure(matrix: Tensor, class_names: Sequence[str]) -> Figure:
    """A matplotlib figure of a confusion matrix ``(K, K)`` (rows = truth, columns = prediction)."""
    counts = matrix.detach().cpu().long()
    size = len(counts)
    side = max(4.0, 0.45 * size + 2.0)
    figure = Figure(figsize=(side, side))
    axis = figure.add_subplot(1, 1, 1)
    image = axis.imshow(counts.numpy(), cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    ticks = list(range(size))
    axis.set_xticks(ticks, labels=list(class_names), rotation=45, ha="right", fontsize=8)
    axis.set_yticks(ticks, labels=list(class_names), fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = counts.max().item() / 2 if counts.numel() else 0
    if size <= 20:  # counts stay readable
        for row in range(size):
            for col in range(size):
                value = int(counts[row, col])
                color = "white" if value > threshold else "black"
                axis.text(col, row, str(value), ha="center", va="center", fontsize=7, color=color)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------- task


class ImageClassifier(TensorBoardImages, ClassificationTask):
    """Images ``(B, C, H, W)`` -> class logits via :class:`~ahop.image_models.HopfieldImageClassifier`.

    ``image_shape`` and ``num_classes`` are the data's sizes: the command line takes them from the
    datamodule (:mod:`tasks.links`); in Python pass ``**data_sizes(datamodule)``.

    Args:
        image_shape: ``(C, H, W)``; ``H`` and ``W`` multiples of the network's ``patch_size``.
        num_classes: classes ``K``.
        network: the options of :class:`~ahop.image_models.HopfieldImageClassifier` other than
            the sizes (its docstring lists them), e.g. ``{patch_size: 2, similarity:
            adaptive}``; an option left out takes the network's default, an unknown one is an
            error. On the command line: ``--model.init_args.network.similarity adaptive``.
        num_sample_images: validation images shown in TensorBoard per epoch (0 = none).
        log_confusion_matrix: write the validation confusion matrix to TensorBoard per epoch.
        optimizer: a ``params -> Optimizer`` callable (``class_path`` + ``init_args`` in a
            config; default AdamW, lr 1e-3).
        lr_scheduler: an ``optimizer -> scheduler`` callable, or ``None``; ``ReduceLROnPlateau``
            watches the monitored metric.
    """

    data_sizes = ("image_shape", "num_classes")

    def __init__(
        self,
        image_shape: tuple[int, int, int] | None = None,
        num_classes: int | None = None,
        network: ImageNetworkOptions | None = None,
        num_sample_images: int = 16,
        log_confusion_matrix: bool = True,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer, lr_scheduler)
        if num_sample_images < 0:
            raise ValueError(f"num_sample_images must be >= 0, got {num_sample_images}")
        network_options(HopfieldImageClassifier, network, NETWORK_SET_BY_TASK)
        self._samples: tuple[Tensor, Tensor, Tensor] | None = None
        self.save_task_hyperparameters()

    def configure_models(self) -> None:
        hp = self.hparams
        self.num_classes = hp.num_classes
        self.network = HopfieldImageClassifier(
            image_shape=tuple(hp.image_shape),
            num_classes=hp.num_classes,
            **network_options(HopfieldImageClassifier, hp.network, NETWORK_SET_BY_TASK),
        )

    def setup_metrics(self) -> None:
        super().setup_metrics()
        self.val_confusion = MulticlassConfusionMatrix(num_classes=self.num_classes)

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A dummy batch of normalised images ``(batch_size, C, H, W)`` (used for export)."""
        return torch.zeros(batch_size, *self.hparams.image_shape)

    # -- TensorBoard figures -------------------------------------------------------------------

    def _logging_figures(self) -> bool:
        hp = self.hparams
        return self.logging_images(hp.num_sample_images > 0 or hp.log_confusion_matrix)

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, tuple[Tensor, ...]]:
        loss, (probs, target) = super().shared_step(batch, stage)
        if stage == "val" and self._logging_figures():
            predicted = probs.argmax(dim=-1) if probs.dim() == 2 else (probs > 0.5).long()
            if self.hparams.log_confusion_matrix:
                self.val_confusion.update(predicted, target)
            if self._samples is None and self.hparams.num_sample_images > 0:
                keep = self.hparams.num_sample_images
                self._samples = (batch[0][:keep].detach(), predicted[:keep], target[:keep])
        return loss, (probs, target)

    def on_validation_epoch_start(self) -> None:
        self._samples = None
        self.val_confusion.reset()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self._logging_figures():
            return
        writer = self.tensorboard()
        datamodule = getattr(self.trainer, "datamodule", None)
        names = list(getattr(datamodule, "class_names", None) or range(self.num_classes))
        names = [str(name) for name in names]
        if self._samples is not None:
            images, predicted, target = self._samples
            denormalize = getattr(datamodule, "denormalize", None)
            shown = denormalize(images) if denormalize is not None else _min_max(images)
            titles = [
                f"{names[p]} / {names[t]}" for p, t in zip(predicted.tolist(), target.tolist())
            ]
            colors = ["green" if p == t else "red" for p, t in zip(predicted, target)]
            figure = image_grid_figure(shown, titles, colors)
            writer.add_figure("val/samples", figure, self.global_step)
            self._samples = None
        if self.hparams.log_confusion_matrix and self.val_confusion.update_count > 0:
            figure = confusion_matrix_figure(self.val_confusion.compute(), names)
            writer.add_figure("val/confusion_matrix", figure, self.global_step)
        self.val_confusion.reset()


def _min_max(images: Tensor) -> Tensor:
    """Scale each image (N, C, H, W) to [0, 1] for display."""
    flat = images.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    scale = (high - low).clamp_min(1e-8)
    return ((flat - low[:, None]) / scale[:, None]).view_as(images)
