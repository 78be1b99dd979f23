"""A progress bar for long fits: rows per second, the epoch's remaining time, and the steps a
task reports besides its batches (e.g. the tabular retrieval model's memory refresh).

:class:`RowsProgressBar` is Lightning's ``TQDMProgressBar`` with, in the training bar's postfix,

* ``rows/s``: training rows per second since the epoch started (the bar's own rate counts batches);
* ``eta``: the epoch's remaining time at that rate;
* whatever ``pl_module.progress_metrics()`` returns (when the module has it), e.g.
  ``refresh: "2x 0.41s"``: how often the memory was re-encoded this epoch and the seconds it took.

A task that wants it returns :func:`progress_bar_for` from ``configure_callbacks``: it replaces the
trainer's default bar and is never added where the run has no bar
(``trainer.enable_progress_bar=false``).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from torch import Tensor


def _rows_in(batch: Any) -> int:
    """Rows of a batch: the leading size of its first tensor (0 when there is none)."""
    first = batch[0] if isinstance(batch, list | tuple) and batch else batch
    return int(first.shape[0]) if isinstance(first, Tensor) and first.dim() else 0


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RowsProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` whose training postfix adds ``rows/s``, the epoch's ``eta`` and the
    module's :meth:`progress_metrics` (see the module docstring). Takes ``TQDMProgressBar``'s
    arguments (``refresh_rate``, ``process_position``, ``leave``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch_start = time.perf_counter()
        self._rows = 0

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._epoch_start, self._rows = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self._rows += _rows_in(batch)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, i)

    def rate_metrics(self, done_batches: int, total_batches: float) -> dict[str, str]:
        """``rows/s`` and ``eta`` of the running epoch after ``done_batches`` of ``total_batches``."""
        elapsed = time.perf_counter() - self._epoch_start
        if not self._rows or elapsed <= 0:
            return {}
        metrics = {"rows/s": f"{self._rows / elapsed:.0f}"}
        if done_batches and total_batches not in (None, float("inf")):
            left = max(0.0, float(total_batches) - done_batches) * elapsed / done_batches
            metrics["eta"] = format_seconds(left)
        return metrics

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics: dict[str, Any] = {}  # first, so that a narrow terminal still shows them
        bar = self._train_progress_bar
        if trainer.training and bar is not None:
            metrics.update(self.rate_metrics(bar.n, bar.total))
        extra = getattr(pl_module, "progress_metrics", None)
        if callable(extra):
            metrics.update(extra())
        return {**metrics, **super().get_metrics(trainer, pl_module)}


def progress_bar_for(trainer: L.Trainer | None) -> list[RowsProgressBar]:
    """``[RowsProgressBar()]`` when ``trainer`` shows Lightning's default bar, else ``[]`` (no bar
    wanted, or the run chose another kind of bar)."""
    current = getattr(trainer, "progress_bar_callback", None) if trainer is not None else None
    if type(current) is not TQDMProgressBar:
        return []
    return [
        RowsProgressBar(
            refresh_rate=current.refresh_rate,
            process_position=current.process_position,
            leave=current._leave,
        )
    ]
