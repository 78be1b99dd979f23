"""The command line: ``ahop {fit,validate,test,predict,export} ...`` (= ``python train.py ...``).

``fit`` / ``validate`` / ``test`` / ``predict`` are LightningCLI's subcommands; the others are
dispatched by :data:`EXTRA_COMMANDS` to their module's ``main(argv)`` before LightningCLI parses
anything, so they share one error handling (:func:`run_cli`).

Model and datamodule are chosen by ``class_path`` in the config (any ``tasks.*`` LightningModule and
``datamodules.*`` LightningDataModule). Every run gets, unless the config says otherwise:
a TensorBoard logger under ``runs/``, a checkpoint of the best monitored metric plus ``last.ckpt``,
a learning-rate monitor and a progress bar. ``--ckpt_path .../last.ckpt`` resumes a stopped run.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from argparse import ArgumentError
from collections.abc import Callable
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


def main(args: list[str] | None = None, run: bool = True, exit_on_error: bool = True) -> AhopCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv`` (used by tests).

    With ``exit_on_error=False`` a config the parser rejects raises instead of printing the usage
    and exiting (``run_cli`` turns it into one line).
    """
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
        parser_kwargs={"exit_on_error": exit_on_error},
    )


_UNION_HEADER = "Does not validate against any of the Union subtypes"
_CLASS_PATH_PROBLEM = re.compile(r"Problem with given class_path '([^']+)':\s*")


def summarize_error(error: BaseException) -> str:
    """One line for a config / data error.

    jsonargparse wraps an exception raised while it checks a ``class_path`` (a ``ValueError`` in a
    model's ``__init__``, an unknown option) in a multi-line report on every member of the
    ``Union[Module, None]`` type; keep only the reasons, which are what the user has to fix.
    """
    message = str(error)
    if _UNION_HEADER not in message:
        return " ".join(message.split())
    key = re.match(r'Parser key "([^"]+)"', message)
    reasons = []
    in_errors = False
    for line in message.splitlines():
        stripped = line.strip()
        if stripped == "Errors:":
            in_errors = True
        elif in_errors and stripped.startswith("- "):
            reasons.append(stripped[2:])
        elif in_errors and reasons and line.startswith(" " * 6):
            reasons[-1] += " " + stripped  # continuation of the previous reason
        elif in_errors:
            in_errors = False
    reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
    reasons = [_CLASS_PATH_PROBLEM.sub(r"\1: ", r) for r in reasons] or [message]
    prefix = f"{key.group(1)}: " if key else ""
    return prefix + "; ".join(" ".join(r.split()) for r in reasons)


def _run_export(argv: list[str]) -> None:
    from ahop_cli import export

    export.main(argv)


#: subcommands that are not LightningCLI's: name -> runner of the remaining arguments
EXTRA_COMMANDS: dict[str, Callable[[list[str]], object]] = {"export": _run_export}
EXTRA_COMMANDS["cv"] = lambda argv: importlib.import_module("ahop_cli.evaluate").main(argv)
EXTRA_COMMANDS["search"] = lambda argv: importlib.import_module("ahop_cli.search").main(argv)


def run_cli(argv: list[str] | None = None) -> None:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); configuration and data errors end with
    a one-line ``error: ...`` message, not a traceback (set ``AHOP_DEBUG=1`` to see it)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if args and args[0] in EXTRA_COMMANDS:
            EXTRA_COMMANDS[args[0]](args[1:])
        else:  # None: LightningCLI reads sys.argv itself (and warns when given it as a list)
            main(None if argv is None else args, exit_on_error=False)
    except (ArgumentError, *USER_ERRORS) as error:
        if os.environ.get("AHOP_DEBUG"):
            raise
        sys.exit(f"error: {summarize_error(error)}")


if __name__ == "__main__":
    run_cli()
