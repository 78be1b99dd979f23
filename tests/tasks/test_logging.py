"""Every scalar a task logs itself (not a torchmetrics object, which syncs on its own) is logged
with ``sync_dist=True``, in training too: under DDP ``train/loss`` is the mean over processes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torchmetrics import Metric, MetricCollection

from datamodules.images import ImageDataModule
from datamodules.mil import MILDataModule
from datamodules.retrieval import RetrievalDataModule
from datamodules.tabular import TabularDataModule
from tasks.image import ImageClassifier
from tasks.links import data_sizes
from tasks.lshn import LSHNTask
from tasks.mil import MILClassifier
from tasks.retrieval import RetrievalTask
from tasks.tabular import TabularClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


def _recording(task_class: type) -> type:
    """``task_class`` whose ``log`` also records, per name, the ``sync_dist`` of plain values."""

    class Recording(task_class):
        def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
            if not isinstance(value, (Metric, MetricCollection)):
                self.sync_flags = {**getattr(self, "sync_flags", {}), name: kwargs.get("sync_dist")}
            super().log(name, value, *args, **kwargs)

    return Recording


CASES = [
    (
        ImageClassifier,
        lambda p: ImageDataModule(dataset="digits", batch_size=64),
        {
            "network": {"embedding_dim": 8, "num_heads": 2, "num_layers": 1, "patch_size": 2},
            "num_sample_images": 0,
        },
    ),
    (
        TabularClassifier,
        lambda p: TabularDataModule(batch_size=64),
        {"embedding_dim": 8, "context_size": 4},
    ),
    (
        MILClassifier,
        lambda p: MILDataModule(dataset="synthetic", data_dir=str(p), batch_size=8),
        {"network": {"embedding_dim": 8, "num_heads": 2}},
    ),
    (
        RetrievalTask,
        lambda p: RetrievalDataModule(num_memories=20, batch_size=16),
        {"num_sample_images": 0},
    ),
    (
        LSHNTask,
        lambda p: RetrievalDataModule(
            num_memories=8, batch_size=8, variant="identity", eval_queries_per_memory=1
        ),
        {"network": {"latent_dim": 8}, "eval_max_steps": 5, "num_trajectory_images": 0},
    ),
]


@pytest.mark.parametrize(
    ("task_class", "data", "options"), CASES, ids=lambda c: getattr(c, "__name__", "")
)
def test_train_scalars_are_synced_across_processes(
    tmp_path, make_trainer, task_class: type, data, options: dict
) -> None:
    torch.manual_seed(0)
    datamodule = data(tmp_path)
    task = _recording(task_class)(**data_sizes(datamodule), **options)
    make_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1).fit(task, datamodule)
    train = {name: sync for name, sync in task.sync_flags.items() if name.startswith("train/")}
    assert train, task.sync_flags  # the training loss (LSHN: its parts) was logged
    assert all(train.values()), train
    assert all(task.sync_flags.values()), task.sync_flags
