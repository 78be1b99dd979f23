"""Quiet Lightning for runs that report their own results (the evaluation engine, benchmarks)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from lightning.pytorch.callbacks import Callback

#: loggers whose per-Trainer info lines (GPU available, model summary ...) a quiet run hides
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")

#: warnings that small data and short runs raise on every fit, and that say nothing new
HARMLESS_WARNINGS = (
    ".*does not have many workers.*",
    ".*number of training batches.*",
    ".*could not find the monitored key.*",
    ".*Total length of .* across ranks is zero.*",
    ".*smaller than the logging interval.*",
    ".*You called `self.log.*",
    ".*litlogger.*",
    "LightningCLI's args parameter.*",
    ".*treespec.*",
    ".*LeafSpec.*is deprecated.*",
    ".*The dirpath has changed.*",
    ".*Checkpoint directory.*exists and is not empty.*",
    ".*WeightAveraging callback with a model that overrides the configure_model.*",
)


@contextlib.contextmanager
def quiet_lightning(
    level: int = logging.WARNING,
    warning_patterns: Iterable[str] = HARMLESS_WARNINGS,
    loggers: Iterable[str] = LIGHTNING_LOGGERS,
) -> Iterator[None]:
    """Within the block: Lightning's loggers at ``level`` and the warnings matching
    ``warning_patterns`` ignored; both are restored afterwards.

    Args:
        level: the least severe record the Lightning loggers still show.
        warning_patterns: regular expressions of warning messages to ignore.
        loggers: names of the loggers to quiet.
    """
    quieted = [logging.getLogger(name) for name in loggers]
    levels = [logger.level for logger in quieted]
    for logger in quieted:
        logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            for pattern in warning_patterns:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, before in zip(quieted, levels):
            logger.setLevel(before)


#: what torchmetrics says when a class is absent from the batches seen so far: expected in
#: Lightning's sanity check (its first validation batches; a file sorted by class has one class
#: there), whose metrics are discarded
SANITY_CHECK_WARNINGS = (".*No positive samples in targets.*", ".*No negative samples in targets.*")


class QuietSanityCheck(Callback):
    """Ignores :data:`SANITY_CHECK_WARNINGS` while Lightning's sanity check runs; in the real
    validation epochs, whose metrics count, they still show."""

    def __init__(self) -> None:
        self._filters: warnings.catch_warnings | None = None

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self._filters = warnings.catch_warnings()
        self._filters.__enter__()
        for pattern in SANITY_CHECK_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)

    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._filters is not None:
            self._filters.__exit__(None, None, None)
            self._filters = None
