"""tasks.lightning_compat: the helpers give what Lightning's internals give (checked against
them while they exist), and the TensorBoard hparams of a run are written through them."""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from tasks.lightning_compat import (
    flatten_params,
    sanitize_params,
    skip_datamodule_hparams_logging,
    tensorboard_file_writer,
)


@dataclass
class _Options:
    lr: float = 0.1


PARAMS = {
    "model": {"network": {"patch_size": 2, "similarity_kwargs": None}, "opt": _Options()},
    "data": Namespace(batch_size=32, folds=[{"a": 1}, {"b": 2}]),
    "sizes": [1, 2, 3],
    "empty": [],
    7: "seven",
}


def test_flatten_params_opens_mappings_namespaces_dataclasses_and_lists_of_mappings() -> None:
    assert flatten_params(PARAMS) == {
        "model/network/patch_size": 2,
        "model/network/similarity_kwargs": None,
        "model/opt/lr": 0.1,
        "data/batch_size": 32,
        "data/folds/0/a": 1,
        "data/folds/1/b": 2,
        "sizes": [1, 2, 3],
        "7": "seven",
    }


def test_flatten_params_matches_lightning_where_it_has_its_own() -> None:
    private = pytest.importorskip("lightning.fabric.utilities.logger")
    if not hasattr(private, "_flatten_dict"):
        pytest.skip("this Lightning has no _flatten_dict any more")
    assert flatten_params(PARAMS) == private._flatten_dict(PARAMS)


def test_sanitize_params_keeps_what_tensorboard_takes() -> None:
    params = {
        "int": 1,
        "float": 0.5,
        "bool": True,
        "str": "dot",
        "np": np.float32(0.25),
        "list": [1, 2],
        "none": None,
        "vector": torch.ones(2),
        "matrix": torch.ones(2, 2),
    }
    clean = sanitize_params(params)
    assert clean["np"] == 0.25 and type(clean["np"]) is float
    assert (clean["int"], clean["float"], clean["bool"], clean["str"]) == (1, 0.5, True, "dot")
    assert clean["list"] == "[1, 2]" and clean["none"] == "None"
    assert isinstance(clean["vector"], torch.Tensor) and isinstance(clean["matrix"], str)
    if hasattr(TensorBoardLogger, "_sanitize_params"):  # what Lightning's own gives
        assert clean == TensorBoardLogger._sanitize_params(dict(params))


def test_file_writer_writes_to_the_loggers_event_file(tmp_path) -> None:
    from torch.utils.tensorboard.summary import scalar

    logger = TensorBoardLogger(tmp_path, name="tb", default_hp_metric=False)
    tensorboard_file_writer(logger).add_summary(scalar("probe", 1.0))
    logger.experiment.flush()
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))


def test_skip_datamodule_hparams_logging_turns_off_lightnings_own_logging() -> None:
    from datamodules.images import ImageDataModule

    datamodule = ImageDataModule(dataset="digits")
    assert datamodule._log_hyperparams
    skip_datamodule_hparams_logging(datamodule)
    assert not datamodule._log_hyperparams
