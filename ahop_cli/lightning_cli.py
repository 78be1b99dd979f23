"""The LightningCLI of ahop: :class:`AhopCLI`, :func:`main` (build / run it on a list of
arguments) and the two helpers that go from a built CLI to a config dict and back
(:func:`dump_config`, :func:`build_cli`).

``fit`` / ``validate`` / ``test`` / ``predict`` are LightningCLI's subcommands. Model and
datamodule are chosen by ``class_path`` in the config (any ``tasks.*`` LightningModule and
``datamodules.*`` LightningDataModule); ``--config NAME.yaml`` also finds ``configs/NAME.yaml`` and
the configs shipped with the package. Every run gets, unless the config says otherwise: a
TensorBoard logger under ``runs/``, the checkpoints of :mod:`ahop_cli.checkpoints` (``last.ckpt``
every epoch, the ``--best_k`` best by the task's monitored metric, ``interrupted.ckpt`` on a crash),
a learning-rate monitor and a progress bar; ``predict`` writes its predictions to
``--predictions`` (:mod:`ahop_cli.predictions`). ``--ckpt_path .../last.ckpt`` resumes a stopped
run. Checkpoints are only ever loaded with ``weights_only=True``.

The command line around it (``ahop cv``, ``ahop search``, ``ahop export`` and the one-line errors)
is :mod:`ahop_cli.cli`; this module imports none of those commands, so the evaluation engine can
build CLIs from here without a circle.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from ahop_cli.checkpoints import SPECIAL_CKPT_PATHS, default_checkpoint_callbacks, read_checkpoint
from ahop_cli.config_edit import to_yaml
from ahop_cli.paths import check_writable_dir, resolve_config
from ahop_cli.predictions import PredictionWriter
from tasks.class_paths import import_class
from tasks.lightning_compat import SubcommandHooksCLI
from tasks.links import link_data_sizes

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "ahop", "default_hp_metric": False},
    },
    "max_epochs": 20,
    "log_every_n_steps": 10,
}

#: the tasks and datamodules a config can name (``--model.help NAME`` shows one's options)
TASK_CLASSES = (
    "tasks.tabular.TabularClassifier",
    "tasks.image.ImageClassifier",
    "tasks.mil.MILClassifier",
    "tasks.retrieval.RetrievalTask",
    "tasks.lshn.LSHNTask",
)
DATA_CLASSES = (
    "datamodules.tabular.TabularDataModule",
    "datamodules.images.ImageDataModule",
    "datamodules.mil.MILDataModule",
    "datamodules.retrieval.RetrievalDataModule",
)


# ----------------------------------------------------------------------------- trainer checks
def _stops_by_itself(trainer: Any) -> bool:
    """Whether a run with ``max_epochs=-1`` has another stopping rule."""
    max_steps = trainer.get("max_steps")
    callbacks = trainer.get("callbacks") or []
    stopping = any(
        isinstance(c, EarlyStopping) or "EarlyStopping" in str(getattr(c, "class_path", c))
        for c in callbacks
    )
    return bool(trainer.get("max_time")) or (max_steps not in (None, -1)) or stopping


def check_trainer_options(trainer: Any) -> None:
    """One-line errors for trainer settings Lightning would reject with a traceback, or that
    would run forever without a word.

    ``max_epochs: -1`` (Lightning: no epoch limit) is accepted only together with another way to
    stop: ``max_steps``, ``max_time`` or an ``EarlyStopping`` callback.
    """
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if max_epochs is not None and max_epochs < -1:
        raise ValueError(f"trainer.max_epochs={max_epochs}: must be >= 0 (or -1 = no limit)")
    if max_epochs == -1 and not _stops_by_itself(trainer):
        raise ValueError(
            "trainer.max_epochs=-1 means no epoch limit, and nothing else would stop this run: "
            "set a positive max_epochs, or add max_steps / max_time / an EarlyStopping callback"
        )
    if max_steps is not None and max_steps < -1:
        raise ValueError(f"trainer.max_steps={max_steps}: must be >= 0 (or -1 = no limit)")
    devices = trainer.get("devices")
    if isinstance(devices, int) and devices < 1 and devices != -1:
        raise ValueError(
            f"trainer.devices={devices}: must be >= 1, -1 (all), 'auto' or a list of device ids"
        )
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        count = int(devices)
        if count < 1 and count != -1:
            raise ValueError(f"trainer.devices={devices}: must be >= 1, -1 (all) or 'auto'")
    accelerator = str(trainer.get("accelerator") or "auto").lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator={accelerator}: no CUDA GPU is visible on this machine "
            "(torch.cuda.is_available() is False); use --trainer.accelerator cpu (or auto)"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ValueError("trainer.accelerator=mps: MPS is not available here; use cpu or auto")


def _logger_folders(logger: Any) -> list[str]:
    loggers = logger if isinstance(logger, list) else [logger]
    folders = []
    for entry in loggers:
        init_args = getattr(entry, "init_args", None) or {}
        save_dir = init_args.get("save_dir") if hasattr(init_args, "get") else None
        if save_dir:
            folders.append(str(save_dir))
    return folders


def check_output_folders(trainer: Any) -> None:
    """The folders a run writes to (logger ``save_dir``, ``default_root_dir``) are writable."""
    if trainer.get("default_root_dir"):
        check_writable_dir(trainer["default_root_dir"], "trainer.default_root_dir")
    logger = trainer.get("logger")
    if logger not in (None, False, True):
        for folder in _logger_folders(logger):
            check_writable_dir(folder, "trainer.logger.init_args.save_dir")


# ----------------------------------------------------------------------------- the CLI
class SaveConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` beside the run's logs; a run without a logger
    (``--trainer.logger false``) writes it to ``trainer.default_root_dir`` when the config sets
    one, and nowhere otherwise (never into the working folder, Lightning's fallback)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.logger is None and not self.config.get("trainer", {}).get("default_root_dir"):
            return
        super().setup(trainer, pl_module, stage)


class AhopCLI(SubcommandHooksCLI):
    """LightningCLI with ahop's checkpoints, prediction files, safe loading and checks.

    - checkpoints of :func:`ahop_cli.checkpoints.default_checkpoint_callbacks` watching the
      model's own ``monitor`` (a config that lists its own ``ModelCheckpoint`` keeps it instead);
    - ``--best_k`` (fit): how many best checkpoints to keep beside ``last.ckpt``;
    - ``--predictions`` (predict): where :class:`~ahop_cli.predictions.PredictionWriter` writes;
    - every ``--ckpt_path`` is read with ``weights_only=True`` and checked first
      (:func:`~ahop_cli.checkpoints.read_checkpoint`); Trainer settings and output folders are
      checked before anything is built (:func:`check_trainer_options`).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # weights_only is not an option: checkpoints are always loaded with weights_only=True
        return {k: v | {"weights_only"} for k, v in LightningCLI.subcommands().items()}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        link_data_sizes(parser)  # the datamodule's sizes -> the task's init arguments
        parser.add_argument(
            "--best_k",
            type=int,
            default=1,
            help="fit: how many best checkpoints (by the task's monitored metric) to keep beside "
            "last.ckpt (0 = none)",
        )

    def add_subcommand_arguments(self, parser: LightningArgumentParser, subcommand: str) -> None:
        if subcommand == "predict":
            parser.add_argument(
                "--predictions",
                type=str | None,
                default=None,
                help="file to write the predictions to: .csv for classifiers (id, prob_<class>..., "
                "predicted), .pt for retrieval / LSHN outputs; default predictions.csv / "
                "predictions.pt in trainer.default_root_dir",
            )

    def subcommand_kwargs(self, subcommand: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "weights_only": True}

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:  # before Lightning reads the checkpoint's hyperparameters
            ckpt_path = self.config[subcommand].get("ckpt_path")
            if ckpt_path is not None and str(ckpt_path) not in SPECIAL_CKPT_PATHS:
                read_checkpoint(ckpt_path)  # one-line errors for a missing / corrupt / unsafe file

    def _own_config(self) -> Any:
        """The parsed config of the running subcommand (or the whole one without)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._own_config()
        best_k = config.get("best_k", 1)
        if best_k is None or best_k < 0:
            raise ValueError(f"--best_k={best_k}: must be >= 0")
        check_trainer_options(config["trainer"])
        check_output_folders(config["trainer"])

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config_init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = {**(config_init.get("trainer") or {}), **kwargs}
        configured = list(trainer.get("callbacks") or [])
        added: list[Callback] = []
        if trainer.get("enable_checkpointing", True) is not False and not any(
            isinstance(c, ModelCheckpoint) for c in configured
        ):
            added += default_checkpoint_callbacks(
                getattr(self.model, "monitor", None),
                getattr(self.model, "monitor_mode", "min"),
                self._own_config().get("best_k", 1),
            )
        if trainer.get("logger") not in (None, False) and not any(
            isinstance(c, LearningRateMonitor) for c in configured
        ):
            added.append(LearningRateMonitor(logging_interval="epoch"))
        if self.subcommand == "predict":
            added.append(PredictionWriter(self._own_config().get("predictions")))
        return super().instantiate_trainer(**{**kwargs, "callbacks": configured + added})


def main(args: list[str] | None = None, run: bool = True, exit_on_error: bool = True) -> AhopCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (used by tests).

    With ``exit_on_error=False`` a config the parser rejects raises instead of printing the usage
    and exiting (``run_cli`` turns it into one line).
    """
    if args is None:  # LightningCLI reads sys.argv itself (and warns when also given a list)
        sys.argv[1:] = resolve_config_args(sys.argv[1:])
    else:
        args = resolve_config_args(args)
    return AhopCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        save_config_callback=SaveConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
        parser_kwargs={"exit_on_error": exit_on_error},
    )


def resolve_config_args(args: list[str]) -> list[str]:
    """``--config NAME.yaml`` -> the file it names (see :func:`ahop_cli.paths.resolve_config`);
    an inline YAML document (several lines, as the evaluation engine passes) is left as it is."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out) and "\n" not in out[i + 1]:
            out[i + 1] = resolve_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
    return out


# ----------------------------------------------------------------------------- help
def _configured_classes(args: list[str]) -> dict[str, str]:
    """The ``model`` / ``data`` class paths that the configs and options in ``args`` choose."""
    chosen: dict[str, str] = {}
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else ""
        if arg == "--config" and Path(value).is_file():
            config = yaml.safe_load(Path(value).read_text()) or {}
            for key in ("model", "data"):
                entry = config.get(key)
                if isinstance(entry, dict) and "class_path" in entry:
                    chosen[key] = entry["class_path"]
        elif arg in ("--model", "--data") and value and not value.endswith((".yaml", ".yml")):
            chosen[arg[2:]] = value
    return chosen


def class_options_help(class_path: str, key: str) -> str:
    """The ``--<key>.init_args.*`` options of a task / datamodule, with their docstring Args."""
    parser = ArgumentParser(prog="ahop", add_help=False)
    parser.add_class_arguments(import_class(class_path), f"{key}.init_args")
    text = parser.format_help()
    body = text.split("\n\n", 1)[1] if "\n\n" in text else text  # drop the usage line
    return f"{key}: {class_path}\n{body.strip()}\n"


def extended_help(args: list[str]) -> str:
    """What ``ahop fit --help`` adds after LightningCLI's help: the options of the configured
    task and datamodule (or the available ones and how to see their options)."""
    chosen = _configured_classes(args)
    if not chosen:
        return (
            "\nTasks (--model CLASS): "
            + ", ".join(TASK_CLASSES)
            + "\nData (--data CLASS): "
            + ", ".join(DATA_CLASSES)
            + "\nTheir options: `ahop fit --config configs/tabular.yaml --help` (the configured "
            "ones) or `ahop fit --model.help tasks.tabular.TabularClassifier`.\n"
        )
    sections = [class_options_help(path, key) for key, path in chosen.items()]
    return "\nOptions of the configured classes:\n\n" + "\n".join(sections)


# ----------------------------------------------------------------------------- config dicts
def dump_config(cli: AhopCLI) -> dict[str, Any]:
    """The complete config of a built CLI (every option, defaults included) as a dict."""
    return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))


def build_cli(config: Mapping[str, Any]) -> AhopCLI:
    """Parse and instantiate ``config`` (a dict as from :func:`dump_config`) without running."""
    return main(["--config", to_yaml(config)], run=False, exit_on_error=False)
