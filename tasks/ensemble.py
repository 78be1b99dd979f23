"""``EnsembleTask``: the mean prediction of several trained tasks of one kind (e.g. the models of
the inner folds of a cross-validation, which ``ahop cv --selection inner_cv_ensemble`` tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from tasks.base import BaseTask


class EnsembleTask(BaseTask):
    """Averages the members' class (or positive-bag) probabilities; metrics and logging are the
    members' own (``test/auroc`` ... of the mean probabilities; ``test/loss`` = the members' mean
    loss).

    Args:
        members: trained tasks of the same class whose ``shared_step`` returns
            ``(loss, (probabilities, target))`` (every ahop classifier).
    """

    def __init__(self, members: Sequence[BaseTask]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        kinds = {type(m) for m in members}
        if len(kinds) > 1:
            raise ValueError(
                f"ensemble members must be of one class, got {sorted(map(str, kinds))}"
            )
        self.members = nn.ModuleList(members)
        self.monitor, self.monitor_mode = members[0].monitor, members[0].monitor_mode
        self.build()

    def configure_metrics(self) -> MetricCollection | None:
        return self.members[0].configure_metrics()

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        outputs = [member.shared_step(batch, stage) for member in self.members]
        loss = torch.stack([loss for loss, _ in outputs]).mean()
        if outputs[0][1] is None:
            return loss, None
        probabilities = torch.stack([inputs[0] for _, inputs in outputs]).mean(dim=0)
        return loss, (probabilities, *outputs[0][1][1:])

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Mean of the members' ``predict_step`` probabilities."""
        return torch.stack(
            [member.predict_step(batch, batch_idx, dataloader_idx) for member in self.members]
        ).mean(dim=0)
