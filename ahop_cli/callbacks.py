"""Lightning callbacks the configs use, with ahop's error behaviour."""

from __future__ import annotations

from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor


class EarlyStopping(LightningEarlyStopping):
    """Lightning's ``EarlyStopping``, except when its metric is missing:

    - no metric of the monitored stage (e.g. no ``val/*`` at all) has been logged yet, because
      training stopped (``max_steps``, ``limit_train_batches``, ...) before the first validation:
      nothing to judge, so it warns once and lets the run end normally (Lightning raises);
    - the stage's metrics exist but not this one (a typo in ``monitor``): a one-line
      ``ValueError`` listing the metrics that are logged.

    Takes Lightning's arguments (``monitor``, ``mode``, ``patience``, ``min_delta``, ...).
    """

    _warned = False

    def _validate_condition_metric(self, logs: dict[str, Tensor]) -> bool:
        if logs.get(self.monitor) is not None:
            return True
        stage = self.monitor.split("/")[0] + "/" if "/" in self.monitor else ""
        if stage and not any(name.startswith(stage) for name in logs):
            if not self._warned:
                rank_zero_warn(
                    f"EarlyStopping(monitor={self.monitor!r}) found no {stage}* metric yet: "
                    "training stopped before the first validation, so nothing was checked"
                )
                self._warned = True
            return False
        raise ValueError(
            f"EarlyStopping monitors {self.monitor!r}, which the task does not log; set its "
            f"monitor to one of {sorted(logs)}"
        )
