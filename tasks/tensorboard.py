"""TensorBoard images and figures from a task: one mixin for every task that draws them."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger


class TensorBoardImages:
    """Mixin for a ``LightningModule`` that writes images or figures to TensorBoard.

    :meth:`tensorboard` is the ``SummaryWriter`` of the first ``TensorBoardLogger`` (``None``
    without one); :meth:`logging_images` says whether to draw anything now: the task wants
    images, Lightning is not in its sanity check, and there is a TensorBoard to draw into.
    """

    def tensorboard(self) -> Any | None:
        """The TensorBoard ``SummaryWriter`` when a logger is a ``TensorBoardLogger``, else
        ``None``."""
        for logger in self.loggers:  # type: ignore[attr-defined]
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def logging_images(self, wanted: bool) -> bool:
        """Whether images are drawn now: ``wanted`` (the task's own setting), not a sanity check,
        and a TensorBoard logger attached."""
        trainer = self.trainer  # type: ignore[attr-defined]
        return bool(wanted) and not trainer.sanity_checking and self.tensorboard() is not None
