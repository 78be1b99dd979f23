"""The one place where ahop reaches into Lightning (and TensorBoard) past their public API.

Each helper names what it stands for; when a Lightning release moves one of these internals, this
file is the only one to change (tests/tasks/test_lightning_compat.py and
tests/cli/test_lightning_cli_compat.py fail first). Where a public equivalent exists it is used
instead. Two sections: logger / hparams internals (used by tasks), LightningCLI internals (used by
ahop_cli).
"""

from __future__ import annotations

import os as _os
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any
from typing import Any as _Any

import numpy as np
from lightning import Trainer as _Trainer
from lightning.fabric.utilities.cloud_io import get_filesystem as _get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint as _ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser as _LightningArgumentParser
from lightning.pytorch.cli import LightningCLI as _LightningCLI
from torch import Tensor

# --- logger / hparams internals (used by tasks)


def flatten_params(params: Mapping[Any, Any], delimiter: str = "/") -> dict[str, Any]:
    """Nested hyperparameters as one level, ``{"model": {"lr": 1}} -> {"model/lr": 1}``.

    The keys Lightning's loggers write (its private ``_flatten_dict``): mappings, namespaces,
    dataclasses and lists of mappings are opened (``"dl/0/a"``); any other value is kept.
    """
    flat: dict[str, Any] = {}

    def visit(value: Any, key: str) -> None:
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        elif isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping):
            for name, item in value.items():
                visit(item, f"{key}{delimiter}{name}" if key else str(name))
        elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            for index, item in enumerate(value):
                visit(item, f"{key}/{index}")
        else:
            flat[key] = value

    for name, value in params.items():
        visit(value, str(name))
    return flat


def sanitize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Values TensorBoard's hparams plugin accepts (what ``TensorBoardLogger._sanitize_params``
    does): numpy scalars become Python numbers, anything but bool / int / float / str / a tensor
    of at most one dimension becomes its ``str``."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            value = value.item()
        multi_dim = isinstance(value, Tensor) and value.ndim > 1  # TensorBoard takes <= 1-d
        if type(value) not in (bool, int, float, str, Tensor) or multi_dim:
            value = str(value)
        clean[key] = value
    return clean


def tensorboard_file_writer(logger: Any) -> Any:
    """The event-file writer of a ``TensorBoardLogger``'s ``SummaryWriter`` (private in torch:
    ``SummaryWriter._get_file_writer``, which reopens it when closed), for raw summaries."""
    return logger.experiment._get_file_writer()


def skip_datamodule_hparams_logging(datamodule: Any) -> None:
    """Keep Lightning from logging a datamodule's hyperparameters itself (flat, at fit start):
    the task logs them nested beside its own. Lightning's private ``_log_hyperparams`` flag is
    what ``save_hyperparameters(logger=False)`` sets, but a datamodule built elsewhere chose."""
    datamodule._log_hyperparams = False


# --- LightningCLI internals (used by ahop_cli)
# LightningCLI has no public hook for two things ahop's CLI does; these wrappers give it public
# ones and are the only place that touches the private methods behind them:
# - an argument of one subcommand only (``ahop predict --predictions``): Lightning builds each
#   subcommand's parser in ``_prepare_subcommand_parser`` and calls the public
#   ``add_arguments_to_parser`` without saying for which subcommand;
# - a keyword of the Trainer call that is not an option (``weights_only=True`` for every
#   ``fit`` / ``validate`` / ``test`` / ``predict``): the call's keywords come from
#   ``_prepare_subcommand_kwargs``.
# - writing a checkpoint atomically (``<file>.partial``, then a rename): ``ModelCheckpoint`` writes
#   through ``_save_checkpoint`` and remembers the file in ``_last_checkpoint_saved``.
# Everything else of ahop's CLI uses public hooks (``subcommands``, ``add_arguments_to_parser``,
# ``parse_arguments``, ``before_instantiate_classes``, ``instantiate_trainer``,
# ``save_config_callback``).


#: the private Lightning methods overridden here, with their parameters (checked against the
#: installed Lightning by the tests)
LIGHTNING_CLI_PRIVATE_METHODS: dict[tuple[type, str], tuple[str, ...]] = {
    (_LightningCLI, "_prepare_subcommand_parser"): ("self", "klass", "subcommand", "kwargs"),
    (_LightningCLI, "_prepare_subcommand_kwargs"): ("self", "subcommand"),
    (_ModelCheckpoint, "_save_checkpoint"): ("self", "trainer", "filepath"),
}
#: private attributes set here (``ModelCheckpoint``: the file written last)
LIGHTNING_CLI_PRIVATE_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    _ModelCheckpoint: ("_last_checkpoint_saved",),
}


class SubcommandHooksCLI(_LightningCLI):
    """LightningCLI with two public hooks per subcommand (``fit`` / ``validate`` / ...).

    - :meth:`add_subcommand_arguments`: add arguments to one subcommand's parser;
    - :meth:`subcommand_kwargs`: change the keyword arguments of the Trainer call that runs it.
    """

    def add_subcommand_arguments(self, parser: _LightningArgumentParser, subcommand: str) -> None:
        """Implement to add arguments that only ``subcommand`` has."""

    def subcommand_kwargs(self, subcommand: str, kwargs: dict[str, _Any]) -> dict[str, _Any]:
        """Implement to change the keyword arguments of ``trainer.<subcommand>(...)``."""
        return kwargs

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: _Any
    ) -> _LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        self.add_subcommand_arguments(parser, subcommand)
        return parser

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, _Any]:
        return self.subcommand_kwargs(subcommand, super()._prepare_subcommand_kwargs(subcommand))


class AtomicSaveMixin:
    """For a ``ModelCheckpoint`` subclass: write a checkpoint to ``<file>.partial`` and rename it
    into place (local file systems), so a crash while writing never leaves a truncated checkpoint
    behind."""

    def _save_checkpoint(self, trainer: _Trainer, filepath: str) -> None:
        if type(_get_filesystem(filepath)).__name__ != "LocalFileSystem":
            super()._save_checkpoint(trainer, filepath)  # remote stores write whole objects
            return
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            _os.replace(partial, filepath)
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_checkpoint_saved = filepath
