"""The one place where ahop reaches into Lightning (and TensorBoard) past their public API.

Each helper names what it stands for; when a Lightning release moves one of these internals, this
file is the only one to change (tests/tasks/test_lightning_compat.py fails first). Where a public
equivalent exists it is used instead.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
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
