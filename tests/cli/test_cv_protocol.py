"""The datamodule protocol of cross-validation (:mod:`datamodules.cv`): every datamodule of the
package implements it, and a new datamodule that does (defined here, unknown to the engine) runs
through ``ahop cv``'s engine without a change there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from lightning import LightningDataModule, LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ahop_cli.evaluate import Protocol, evaluate
from datamodules.cv import CrossValidatable, require_cross_validatable
from datamodules.images import ImageDataModule
from datamodules.mil import MILDataModule
from datamodules.retrieval import RetrievalDataModule
from datamodules.splits import check_split_options, kfold_split, validation_split
from datamodules.tabular import TabularDataModule


class TinyDataModule(LightningDataModule):
    """Two Gaussian blobs in 2-d; its validation share is called ``holdout`` (no other
    datamodule has that name, so only the protocol can tell the engine)."""

    validation_option = "holdout"

    def __init__(
        self,
        rows: int = 48,
        num_folds: int = 3,
        fold: int = 0,
        seed: int = 0,
        holdout: float = 0.25,
        inner_folds: int | None = None,
        inner_fold: int = 0,
    ) -> None:
        super().__init__()
        check_split_options(num_folds, fold, inner_folds, inner_fold, holdout)
        self.save_hyperparameters()
        self.rows: dict[str, Tensor] = {}

    @property
    def fold_count(self) -> int:
        return self.hparams.num_folds

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        generator = torch.Generator().manual_seed(123)  # the same data in every fold
        self.y = torch.arange(hp.rows) % 2
        self.x = torch.randn(hp.rows, 2, generator=generator) + 2.0 * self.y[:, None]
        rest, test = kfold_split(self.y, hp.num_folds, hp.fold, hp.seed)
        train, val = validation_split(
            self.y[rest], hp.seed, hp.holdout, hp.inner_folds, hp.inner_fold
        )
        self.rows = {"train": rest[train], "val": rest[val], "test": test}

    def split_ids(self, split: str) -> list[int]:
        return self.rows[split].tolist()

    def _loader(self, split: str) -> DataLoader:
        rows = self.rows[split]
        return DataLoader(TensorDataset(self.x[rows], self.y[rows]), batch_size=16)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class TinyClassifier(LightningModule):
    monitor = "val/acc"

    def __init__(self, lr: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(2, 2)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, on_epoch=True, on_step=False)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{stage}/acc", acc, on_epoch=True, on_step=False)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class NoFolds(LightningDataModule):
    """A datamodule without the protocol's members."""


def _config(tmp_path: Path, data_class: str) -> list[str]:
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 3, "logger": False, "accelerator": "cpu"},
        "model": {"class_path": f"{__name__}.TinyClassifier"},
        "data": {"class_path": f"{__name__}.{data_class}"},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", str(path)]


@pytest.mark.parametrize(
    "datamodule",
    [
        TabularDataModule(),
        MILDataModule(dataset="synthetic"),
        ImageDataModule(),
        RetrievalDataModule(),
        TinyDataModule(),
    ],
    ids=lambda dm: type(dm).__name__,
)
def test_every_datamodule_implements_the_protocol(datamodule: LightningDataModule) -> None:
    assert isinstance(datamodule, CrossValidatable)
    assert require_cross_validatable(datamodule) is datamodule
    name = datamodule.validation_option
    assert name is None or name in datamodule.hparams  # an init option of the datamodule


def test_the_protocol_is_what_the_datamodules_answer() -> None:
    tabular = TabularDataModule(num_folds=4)
    mil = MILDataModule(dataset="synthetic", num_folds=5)
    assert (tabular.fold_count, mil.fold_count, TabularDataModule().fold_count) == (4, 5, 1)
    tabular.setup("fit")
    ids = {split: tabular.split_ids(split) for split in ("train", "val", "test")}
    assert sorted(i for rows in ids.values() for i in rows) == list(range(569))  # every row once
    retrieval = RetrievalDataModule(num_memories=8, eval_queries_per_memory=2)
    retrieval.setup("fit")
    assert retrieval.fold_count == 1 and len(retrieval.split_ids("test")) == 16
    assert set(retrieval.split_ids("test")).isdisjoint(retrieval.split_ids("train"))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        retrieval.split_ids("dev")


def test_a_datamodule_without_the_protocol_gets_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NoFolds cannot be cross-validated: it lacks "):
        evaluate(_config(tmp_path, "NoFolds"), Protocol(), output_dir=tmp_path, log=None)


def test_a_new_datamodule_runs_through_the_engine(tmp_path: Path) -> None:
    """Outer folds from its fold_count, test ids from its split_ids, and the final fit of
    inner_cv on all training rows through its own validation option."""
    result = evaluate(
        _config(tmp_path, "TinyDataModule"),
        Protocol(inner_folds=2),
        output_dir=tmp_path / "runs",
        threads=1,
        log=None,
    )
    assert [f.fold for f in result.folds] == [0, 1, 2]
    tested = sorted(i for f in result.folds for i in f.test_ids)
    assert tested == list(range(48))  # the outer test folds partition the rows
    for fold in result.folds:
        assert fold.sizes == {"train": 32, "val": 0, "test": 16}  # holdout 0: all training rows
        assert 0.0 <= fold.metrics["test/acc"] <= 1.0
        assert fold.selection["rule"] == "inner_cv" and fold.epochs in (1, 2, 3)
        fit = yaml.safe_load((result.run_dir / "folds" / fold.key / "fit_config.yaml").read_text())
        assert fit["data"]["init_args"]["holdout"] == 0.0
    saved = json.loads((result.run_dir / "results.json").read_text())
    assert saved["summary"]["test/acc"]["n"] == 3
