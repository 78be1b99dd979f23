"""tasks.links: the command line gives the task its datamodule's sizes at instantiation; in
Python, data_sizes(datamodule) gives the same arguments; a task without them says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from ahop_cli import cli as ahop_cli
from datamodules.images import ImageDataModule
from datamodules.mil import MILDataModule
from datamodules.retrieval import RetrievalDataModule
from tasks.image import ImageClassifier
from tasks.links import DATA_SIZES, data_sizes
from tasks.lshn import LSHNTask
from tasks.retrieval import RetrievalTask

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _built(config: str, tmp_path: Path, *extra: str):
    args = ["--config", str(CONFIGS / config), "--trainer.logger", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path), *extra]
    return ahop_cli.main(args, run=False)


@pytest.mark.parametrize(
    ("config", "sizes"),
    [
        (
            "tabular.yaml",
            ("num_features", "num_classes", "num_numeric", "categorical_cardinalities"),
        ),
        ("image.yaml", ("image_shape", "num_classes")),
        ("retrieval.yaml", ("image_shape", "dim", "num_memories")),
        ("lshn.yaml", ("image_shape", "dim", "num_memories")),
    ],
)
def test_cli_links_the_datamodule_sizes_into_the_task(
    config: str, sizes: tuple[str, ...], tmp_path: Path
) -> None:
    cli = _built(config, tmp_path)
    for name in sizes:
        want = getattr(cli.datamodule, name)
        got = cli.model.hparams[name]
        assert (list(got) if isinstance(want, (list, tuple)) else got) == (
            list(want) if isinstance(want, (list, tuple)) else want
        ), name
    assert cli.model.built  # the networks exist before fit: no size is left to read at setup


def test_the_linked_value_replaces_one_set_in_the_config(tmp_path: Path) -> None:
    cli = _built("image.yaml", tmp_path, "--model.init_args.num_classes", "3")
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes == 10


def test_data_sizes_are_the_datamodule_attributes_that_exist(tmp_path: Path) -> None:
    assert data_sizes(ImageDataModule(dataset="digits")) == {
        "image_shape": (1, 8, 8),
        "num_classes": 10,
    }
    assert data_sizes(MILDataModule(dataset="synthetic", data_dir=str(tmp_path))) == {
        "num_features": 16
    }
    retrieval = RetrievalDataModule(dataset="digits", num_memories=7)
    assert retrieval.memories is None  # reading a size loads the memories
    assert data_sizes(retrieval) == {"image_shape": (1, 8, 8), "dim": 64, "num_memories": 7}
    assert retrieval.memories.shape == (7, 64)
    assert set(data_sizes(retrieval)) <= set(DATA_SIZES)


@pytest.mark.parametrize(
    ("task", "missing"),
    [
        (ImageClassifier, "image_shape, num_classes"),
        (RetrievalTask, "dim, num_memories"),
        (LSHNTask, "dim, num_memories, image_shape"),
    ],
)
def test_a_task_without_its_sizes_names_them(task: type, missing: str) -> None:
    with pytest.raises(ValueError, match=rf"{task.__name__} needs {missing} \(sizes of the data\)"):
        task()


def test_predict_rows_take_the_checkpoints_sizes_not_the_training_data(tmp_path: Path) -> None:
    """A tabular datamodule with predict_path and nothing fitted reads no training rows for its
    sizes: the link is skipped and the task keeps those of --ckpt_path's hyperparameters."""
    from datamodules.tabular import TabularDataModule

    datamodule = TabularDataModule(predict_path=str(tmp_path / "new.csv"))
    assert data_sizes(datamodule) == {}
    assert datamodule.preprocessor is None and not datamodule.datasets
