"""Fixtures shared by the test folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

#: a Trainer that prints, logs and saves nothing unless a test asks for it
QUIET_TRAINER: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "enable_checkpointing": False,
}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test: small matrices on a shared 2-core machine, where a
    second thread only adds contention (use with ``pytestmark = pytest.mark.usefixtures``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., L.Trainer]:
    """``make_trainer(**kwargs)``: a quiet :data:`QUIET_TRAINER` Trainer writing under the test's
    ``tmp_path``; ``kwargs`` add or override Trainer arguments."""

    def make(**kwargs: Any) -> L.Trainer:
        return L.Trainer(**{**QUIET_TRAINER, "default_root_dir": tmp_path, **kwargs})

    return make
