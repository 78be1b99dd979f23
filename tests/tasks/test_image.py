"""Tests for ahop.image_models and tasks.image: shapes, errors, Lightning wiring, TensorBoard
figures, and that the classifier learns digits."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from ahop.image_models import HopfieldImageClassifier
from ahop_cli import cli as ahop_cli
from datamodules.image_sources import load_images
from datamodules.images import ImageDataModule
from tasks.image import ImageClassifier, confusion_matrix_figure, image_grid_figure
from tasks.links import data_sizes

TINY = {"embedding_dim": 16, "num_heads": 2, "num_layers": 1, "patch_size": 2}


@pytest.mark.parametrize("similarity", ["dot", "manhattan", "adaptive"])
@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_network_shapes_and_gradients(similarity: str, stem: str) -> None:
    torch.manual_seed(0)
    net = HopfieldImageClassifier(
        (3, 8, 12), num_classes=5, stem=stem, similarity=similarity, pooling_quantity=2, **TINY
    )
    images = torch.randn(4, 3, 8, 12)
    logits = net(images)
    assert logits.shape == (4, 5)
    assert net.tokens(images).shape == (4, (8 // 2) * (12 // 2), 16)
    logits.sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_network_is_per_image() -> None:
    """An image's logits do not depend on the other images of its batch (eval mode)."""
    torch.manual_seed(0)
    net = HopfieldImageClassifier((1, 8, 8), 10, similarity="adaptive", **TINY).eval()
    images = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(images)[2:3], net(images[2:3]), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": 3}, "must divide"),
        ({"embedding_dim": 10, "num_heads": 4}, "divisible by num_heads"),
        ({"stem": "resnet"}, "allowed values: patch, conv"),
        ({"num_classes": 1}, "num_classes"),
        ({"similarity": "bogus"}, "allowed values"),
    ],
)
def test_network_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"image_shape": (1, 8, 8), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        HopfieldImageClassifier(**args)


def test_network_rejects_wrong_image_shape() -> None:
    net = HopfieldImageClassifier((1, 8, 8), 10, **TINY)
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 1, 8, 8\)"):
        net(torch.zeros(2, 3, 8, 8))


def test_task_fast_dev_run_reads_sizes_and_predicts(tmp_path: Path, make_trainer) -> None:
    datamodule = ImageDataModule(dataset="digits", batch_size=32)
    task = ImageClassifier(**data_sizes(datamodule), network=TINY)
    trainer = make_trainer(fast_dev_run=True)
    trainer.fit(task, datamodule=datamodule)
    assert tuple(task.hparams.image_shape) == (1, 8, 8) and task.hparams.num_classes == 10
    trainer.test(task, datamodule=datamodule)
    (probs, *_) = trainer.predict(task, datamodule=datamodule)
    assert probs.shape == (32, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(32))
    assert task.example_input(3).shape == (3, 1, 8, 8)
    # a checkpoint rebuilds the network without the datamodule
    trainer.save_checkpoint(tmp_path / "task.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "task.ckpt").eval()
    images = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), task.eval()(images))


def _tensorboard_tags(log_dir: Path) -> dict[str, set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, set[str]] = {"images": set(), "scalars": set()}
    for event in log_dir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(event))
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    return tags


def test_tensorboard_gets_sample_grid_and_confusion_matrix(tmp_path: Path, make_trainer) -> None:
    datamodule = ImageDataModule(dataset="digits", batch_size=64)
    task = ImageClassifier(**data_sizes(datamodule), num_sample_images=6, network=TINY)
    logger = TensorBoardLogger(tmp_path, name="tb", default_hp_metric=False)
    trainer = make_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, logger=logger)
    trainer.fit(task, datamodule=datamodule)
    tags = _tensorboard_tags(tmp_path / "tb")
    assert {"val/samples", "val/confusion_matrix"} <= tags["images"]
    assert {"val/acc", "val/acc_best"} <= tags["scalars"]
    # two validation batches of 64 images were counted, then the matrix was reset
    assert task.val_confusion.update_count == 0


def test_no_figures_without_tensorboard(tmp_path: Path, make_trainer) -> None:
    datamodule = ImageDataModule(dataset="digits", batch_size=64)
    task = ImageClassifier(**data_sizes(datamodule), network=TINY)
    trainer = make_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(task, datamodule=datamodule)
    assert task.val_confusion.update_count == 0 and task._samples is None


def test_figures_have_titles_and_counts() -> None:
    grid = image_grid_figure(torch.rand(5, 3, 8, 8), [f"t{i}" for i in range(5)])
    assert [ax.get_title() for ax in grid.axes] == [f"t{i}" for i in range(5)]
    matrix = torch.tensor([[3, 1], [0, 4]])
    figure = confusion_matrix_figure(matrix, ["a", "b"])
    texts = sorted(t.get_text() for t in figure.axes[0].texts)
    assert texts == ["0", "1", "3", "4"]


def test_network_fits_a_batch_of_digits() -> None:
    """Gradients reach every part: 40 steps fit 64 real digits."""
    torch.manual_seed(0)
    images, labels = load_images("digits", "train")
    images, labels = (images[:64] - 0.3) / 0.37, labels[:64]
    net = HopfieldImageClassifier(
        (1, 8, 8),
        10,
        embedding_dim=32,
        num_heads=4,
        num_layers=1,
        patch_size=2,
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = (net.eval()(images).argmax(-1) == labels).float().mean()
    assert accuracy > 0.9


def test_task_passes_network_options_and_rejects_unknown_ones() -> None:
    task = ImageClassifier(
        image_shape=(1, 8, 8), num_classes=10, network={**TINY, "pooling_quantity": 3}
    )
    assert task.network.head[1].in_features == 3 * TINY["embedding_dim"]
    with pytest.raises(ValueError, match=r"no option\(s\) patch_sise; allowed: patch_size, stem"):
        ImageClassifier(network={"patch_sise": 2})
    with pytest.raises(ValueError, match="num_classes: set by the task from the data"):
        ImageClassifier(network={"num_classes": 3})


def test_cli_sets_one_network_option_and_rejects_unknown_ones(tmp_path: Path) -> None:
    from ahop_cli.cli import main

    config = str(Path(__file__).resolve().parents[2] / "configs" / "image.yaml")
    cli = ahop_cli.main(
        ["--config", config, "--model.init_args.network.embedding_dim", "16"], run=False
    )
    network = cli.model.hparams.network
    assert network["embedding_dim"] == 16 and network["patch_size"] == 2  # the rest kept
    assert cli.model.network.head[1].in_features == 16
    with pytest.raises(argparse.ArgumentError, match="patch_sise"):
        main(
            ["--config", config, "--model.init_args.network.patch_sise", "3"],
            run=False,
            exit_on_error=False,
        )
