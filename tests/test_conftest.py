"""The shared fixtures of tests/conftest.py do what the test files rely on."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.usefixtures("one_thread")
def test_one_thread_runs_torch_on_one_thread() -> None:
    assert torch.get_num_threads() == 1


def test_make_trainer_is_quiet_under_tmp_path(tmp_path, make_trainer) -> None:
    trainer = make_trainer(max_epochs=3)
    assert trainer.default_root_dir == str(tmp_path) and trainer.max_epochs == 3
    assert trainer.logger is None and trainer.checkpoint_callback is None
    assert not trainer.progress_bar_callback
    assert make_trainer(enable_checkpointing=True).checkpoint_callback is not None
