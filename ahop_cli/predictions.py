"""``ahop predict``: write what the model predicts to a file (Lightning's prediction writer).

Two formats, chosen by what the task predicts (:func:`prediction_format`):

- **CSV** for classifiers (tabular, image, MIL): one row per example with ``id`` (the datamodule's
  ``prediction_ids()``, e.g. a tabular ``id_column``, an image's file name or a MIL bag id; else
  the example's position), ``prob_<class>`` per class (the classes' names from the datamodule),
  and ``predicted``, the class of the largest probability. MIL bags have the classes
  ``negative`` / ``positive``.
- **a torch file** (``.pt``) for everything else (retrieval, LSHN: retrieved patterns): a dict
  ``{"ids": list, "outputs": Tensor (N, ...) float32}``, the outputs of ``predict_step`` in order;
  read it with ``torch.load(path, weights_only=True)``.

Under DDP every process writes the examples it scored to ``<stem>.rank<k><suffix>``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from ahop_cli.paths import check_writable_file
from datamodules.mil import MILDataModule
from tasks.base import ClassificationTask
from tasks.mil import MILClassifier

#: suffix of each format
FORMATS = {"csv": ".csv", "tensor": ".pt"}


def prediction_format(task: LightningModule) -> str:
    """``csv`` when the task predicts class probabilities, else ``tensor``."""
    return "csv" if isinstance(task, (ClassificationTask, MILClassifier)) else "tensor"


def default_path(task: LightningModule, folder: str | Path = ".") -> Path:
    """``<folder>/predictions.csv`` or ``<folder>/predictions.pt``."""
    return Path(folder) / f"predictions{FORMATS[prediction_format(task)]}"


def class_probabilities(outputs: Tensor) -> Tensor:
    """``(N, C)`` probabilities, or ``(N,)`` positive-class ones -> ``(N, 2)``."""
    if outputs.ndim == 1:
        return torch.stack([1 - outputs, outputs], dim=1)
    return outputs


def class_names(datamodule: Any, num_classes: int) -> list[str]:
    """The datamodule's class names (``class_names``), ``negative`` / ``positive`` for bags, or
    the class indices."""
    names = getattr(datamodule, "class_names", None)
    if names is not None and len(names) == num_classes:
        return [str(n) for n in names]
    if isinstance(datamodule, MILDataModule) and num_classes == 2:
        return ["negative", "positive"]
    return [str(i) for i in range(num_classes)]


def write_csv(path: Path, ids: Sequence, probabilities: Tensor, names: Sequence[str]) -> None:
    """``id, prob_<name>..., predicted`` rows (probabilities with 6 significant digits)."""
    predicted = probabilities.argmax(dim=1).tolist()
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *(f"prob_{n}" for n in names), "predicted"])
        for row_id, row, label in zip(ids, probabilities.tolist(), predicted):
            writer.writerow([row_id, *(f"{p:.6g}" for p in row), names[label]])


class PredictionWriter(BasePredictionWriter):
    """Writes every prediction of ``trainer.predict`` to ``path`` once the epoch ends.

    Args:
        path: the output file; ``None`` = ``predictions.csv`` / ``predictions.pt`` in the
            trainer's ``default_root_dir``. Its suffix must be the task's format's (``.csv`` for
            classifiers, ``.pt`` otherwise).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path = None if path is None else Path(path)
        self.written: Path | None = None

    def resolve(self, trainer: Trainer, task: LightningModule) -> Path:
        """The file this run writes (checked: right suffix, folder writable)."""
        kind = prediction_format(task)
        path = self.path or default_path(task, trainer.default_root_dir)
        if path.is_dir():
            raise ValueError(f"--predictions {path} is a folder; give a file name")
        if path.suffix != FORMATS[kind]:
            what = "class probabilities (CSV)" if kind == "csv" else "tensors (a torch file)"
            raise ValueError(
                f"--predictions {path}: {type(task).__name__} predicts {what}; give a path "
                f"ending in {FORMATS[kind]}"
            )
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        check_writable_file(path, "--predictions")
        return path

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "predict":
            self.target = self.resolve(trainer, pl_module)  # fail before any work

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        if predictions and isinstance(predictions[0], list):  # several dataloaders: the first
            predictions = predictions[0]
        while batch_indices and batch_indices[0] and isinstance(batch_indices[0][0], list):
            batch_indices = batch_indices[0]  # per dataloader -> per batch -> indices
        outputs = (
            torch.cat([p.detach().float().cpu() for p in predictions]) if predictions else None
        )
        positions = [i for batch in batch_indices for i in batch]
        all_ids = getattr(trainer.datamodule, "prediction_ids", None)
        ids = positions
        if callable(all_ids):
            known = all_ids()
            ids = [known[i] for i in positions]
        ids = [i.item() if hasattr(i, "item") else i for i in ids]  # NumPy scalars -> Python
        path = self.target
        if prediction_format(pl_module) == "csv":
            probabilities = class_probabilities(
                outputs if outputs is not None else torch.zeros(0, 2)
            )
            names = class_names(trainer.datamodule, probabilities.shape[1])
            write_csv(path, ids, probabilities, names)
        else:
            torch.save({"ids": list(ids), "outputs": outputs}, path)
        self.written = path
        print(f"wrote {len(ids)} predictions to {path}")
