"""Command-line entry point: ``python train.py {fit,validate,test,predict} --config configs/X.yaml``.

Model and datamodule are chosen by ``class_path`` in the config (any ``tasks.*`` LightningModule and
``datamodules.*`` LightningDataModule). Every run gets, unless the config says otherwise:
a TensorBoard logger under ``runs/``, a checkpoint of the best monitored metric plus ``last.ckpt``,
a learning-rate monitor and a progress bar. ``--ckpt_path .../last.ckpt`` resumes a stopped run.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from datamodules.tabular_sources import DataUnavailableError

#: errors that describe a bad config or bad data; anything else is a bug and keeps its traceback
USER_ERRORS = (ValueError, FileNotFoundError, DataUnavailableError)

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "ahop", "default_hp_metric": False},
    },
    "max_epochs": 20,
    "log_every_n_steps": 10,
}


class AhopCLI(LightningCLI):
    """LightningCLI that adds the checkpoint and LR-monitor callbacks every task wants.

    The checkpoint watches the model's own ``monitor`` attribute (``val/acc`` for classifiers),
    so configs do not have to repeat it; a config that lists its own ``ModelCheckpoint`` keeps it.
    """

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        configured = list(callbacks) + list(config.get("callbacks") or [])
        added: list[Callback] = []
        if config.get("enable_checkpointing", True) is not False and not any(
            isinstance(c, ModelCheckpoint) for c in configured
        ):
            added.append(
                ModelCheckpoint(
                    monitor=getattr(self.model, "monitor", None),
                    mode=getattr(self.model, "monitor_mode", "min"),
                    save_last=True,
                    filename="best-{epoch:03d}-{step}",
                    auto_insert_metric_name=False,
                )
            )
        if config.get("logger") not in (None, False) and not any(
            isinstance(c, LearningRateMonitor) for c in configured
        ):
            added.append(LearningRateMonitor(logging_interval="epoch"))
        return super()._instantiate_trainer(config, list(callbacks) + added)


def main(args: list[str] | None = None, run: bool = True) -> AhopCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv`` (used by tests)."""
    return AhopCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def run_cli() -> None:
    """Run the CLI; configuration and data errors end with a one-line message, not a traceback
    (set ``AHOP_DEBUG=1`` to see the traceback)."""
    try:
        main()
    except USER_ERRORS as error:
        if os.environ.get("AHOP_DEBUG"):
            raise
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    run_cli()
