"""The private Lightning names this project relies on, in one place, so that a Lightning release
that changes them breaks here (and in ``tests/test_lightning_compat.py``), not all over.

Sections (the lead merges them into one file): task-side names (``tasks/``), LightningCLI
internals (``ahop_cli/``).
"""

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

import os as _os
from typing import Any as _Any

from lightning import Trainer as _Trainer
from lightning.fabric.utilities.cloud_io import get_filesystem as _get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint as _ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser as _LightningArgumentParser
from lightning.pytorch.cli import LightningCLI as _LightningCLI

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
