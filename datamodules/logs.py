"""The ``ahop.data`` logger: every decision a datamodule takes about the data (column kinds,
imputed cells, unseen categories) is reported here, so nothing about the data changes silently.

INFO level, printed to stderr unless the application configured logging itself when this was
imported (then its handlers, e.g. pytest's, receive the records).
Only rank 0 reports, so a DDP run prints each decision once.
"""

from __future__ import annotations

import functools
import logging

from lightning.fabric.utilities.rank_zero import rank_zero_only

log = logging.getLogger("ahop.data")
log.setLevel(logging.INFO)
if not logging.getLogger().hasHandlers():
    log.addHandler(logging.StreamHandler())


def report(message: str) -> None:
    """Log one data decision at INFO level (rank 0 only)."""
    if rank_zero_only.rank == 0:
        log.info(message)


def warn(message: str) -> None:
    """Log a data decision the user most likely wants to revisit, at WARNING level (rank 0)."""
    if rank_zero_only.rank == 0:
        log.warning(message)


@functools.cache
def warn_once(message: str) -> None:
    """:func:`warn`, once per process for the same message (a decision every fold repeats)."""
    warn(message)
