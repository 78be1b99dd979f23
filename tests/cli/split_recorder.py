"""A callback for the evaluation tests: appends the sample ids of every fit and test to a JSON-lines
file (named by the ``AHOP_TEST_SPLIT_LOG`` environment variable), and fails the fits of one outer
fold when ``AHOP_TEST_FAIL_FOLD`` names it (an interruption in the middle of a run)."""

from __future__ import annotations

import json
import os

from lightning import Callback, LightningModule, Trainer

from datamodules.cv import require_cross_validatable


class RecordSplits(Callback):
    def _write(self, trainer: Trainer, event: str, splits: tuple[str, ...]) -> None:
        hp = trainer.datamodule.hparams
        row = {
            "event": event,
            "pid": os.getpid(),
            "fold": hp.get("fold"),
            "seed": hp.get("seed"),
            "inner_fold": hp.get("inner_fold") if hp.get("inner_folds") else None,
            **{
                split: require_cross_validatable(trainer.datamodule).split_ids(split)
                for split in splits
            },
        }
        with open(os.environ["AHOP_TEST_SPLIT_LOG"], "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        fail = os.environ.get("AHOP_TEST_FAIL_FOLD")
        if fail is not None and int(fail) == trainer.datamodule.hparams.get("fold"):
            raise RuntimeError(f"interrupted in fold {fail}")
        self._write(trainer, "fit", ("train", "val"))

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, "test", ("test",))
