"""Tests for datamodules.images: ImageDataModule and the batch augmentation."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from datamodules.image_sources import load_images
from datamodules.images import ImageDataModule, RandomCropFlip
from tests.datamodules.test_image_sources import make_idx_split


def test_digits_default_module() -> None:
    dm = ImageDataModule(batch_size=32)
    assert dm.image_shape == (1, 8, 8) and dm.num_classes == 10 and dm.class_names[3] == "3"
    assert not dm.augment
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.long
    train_x, _ = dm.train_set.tensors
    val_x, val_y = dm.val_set.tensors
    raw_x, raw_y = load_images("digits", "train")
    assert len(train_x) + len(val_x) == len(raw_x)
    # Stratified validation split (10 % of each class).
    ratio = torch.bincount(val_y, minlength=10) / torch.bincount(raw_y, minlength=10)
    assert torch.allclose(ratio, torch.full((10,), 0.1), atol=0.03)
    # Normalised with the published digits statistics: ~zero mean, unit std.
    whole = dm.train_set.__getitems__(list(range(len(train_x))))[0]
    assert abs(whole.mean().item()) < 0.05 and abs(whole.std().item() - 1.0) < 0.05
    # denormalize inverts the normalisation of eval batches.
    vx, _ = next(iter(dm.val_dataloader()))
    assert torch.allclose(dm.denormalize(vx), val_x[: len(vx)], atol=1e-6)
    with pytest.raises(RuntimeError, match="setup"):
        dm.test_dataloader()
    dm.setup("test")
    assert len(dm.test_set) == 1797 - len(raw_x)


def test_loaders_are_deterministic() -> None:
    a, b = ImageDataModule(batch_size=16, seed=4), ImageDataModule(batch_size=16, seed=4)
    a.setup("fit")
    b.setup("fit")
    assert torch.equal(next(iter(a.train_dataloader()))[1], next(iter(b.train_dataloader()))[1])
    first_val = next(iter(a.val_dataloader()))[1]
    assert torch.equal(first_val, a.val_set.tensors[1][:16])  # eval loaders keep order


def test_mnist_from_idx_with_carve(tmp_path: Path) -> None:
    make_idx_split(tmp_path / "MNIST" / "raw", "t10k", 200, seed=0)
    dm = ImageDataModule(
        dataset="mnist", data_dir=str(tmp_path), carve_from="test", batch_size=10, val_fraction=0.25
    )
    dm.setup()
    assert dm.image_shape == (1, 28, 28)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (120, 40, 40)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (10, 1, 28, 28)
    assert torch.allclose(dm.denormalize(x), dm.test_set.tensors[0][:10], atol=1e-6)
    missing = ImageDataModule(dataset="mnist", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="carve_from"):
        missing.setup("fit")


def test_k_fold_over_the_pool_of_both_splits() -> None:
    """With num_folds the test folds partition train + test images; inner folds the rest."""
    seen: list[int] = []
    for fold in range(3):
        dm = ImageDataModule(num_folds=3, fold=fold, inner_folds=2, inner_fold=1, seed=4)
        assert dm.fold_count == 3
        dm.setup("fit")
        train, val, test = (set(dm.split_ids(s)) for s in ("train", "val", "test"))
        assert not (train & val or train & test or val & test)
        assert len(train | val | test) == 1797 and len(test) == len(dm.test_set)
        assert torch.bincount(dm.test_set.tensors[1]).min() >= 55  # stratified (~60 a class)
        seen += sorted(test)
    assert sorted(seen) == list(range(1797))
    fixed = ImageDataModule()
    fixed.setup()
    assert fixed.fold_count == 1 and min(fixed.split_ids("test")) == len(fixed.train_set) + len(
        fixed.val_set
    )


def test_random_crop_flip_is_per_image() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 3, 8, 8)
    batch = image.expand(64, -1, -1, -1).contiguous()
    out = RandomCropFlip(padding=2, flip_p=0.5)(batch)
    assert out.shape == batch.shape
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 10  # different crops/flips across the batch
    # Each output is a window of the zero-padded (possibly flipped) image.
    padded = nn.functional.pad(image[0], (2, 2, 2, 2))
    windows = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
    windows += [w.flip(-1) for w in windows]
    for o in out[:8]:
        assert any(torch.equal(o, w) for w in windows)
    flipped = RandomCropFlip(padding=0, flip_p=1.0)(batch)
    assert torch.equal(flipped, batch.flip(-1))
    assert torch.equal(RandomCropFlip(padding=0, flip_p=0.0)(batch), batch)
    with pytest.raises(ValueError, match="flip_p"):
        RandomCropFlip(flip_p=2.0)


def test_augmentation_only_on_training_batches() -> None:
    dm = ImageDataModule(batch_size=64, augment=True)
    dm.setup("fit")
    idx = list(range(64))
    torch.manual_seed(0)
    augmented = dm.train_set.__getitems__(idx)[0]
    plain = dm.eval_transform(dm.train_set.tensors[0][:64])
    assert not torch.equal(augmented, plain)
    val_a = dm.val_set.__getitems__(idx[:8])[0]
    val_b = dm.val_set.__getitems__(idx[:8])[0]
    assert torch.equal(val_a, val_b)


def test_cifar10_settings_and_errors(tmp_path: Path) -> None:
    dm = ImageDataModule(dataset="cifar10", data_dir=str(tmp_path))
    assert dm.augment and dm.image_shape == (3, 32, 32) and dm.class_names[0] == "airplane"
    with pytest.raises(FileNotFoundError, match="download=True"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="allowed values"):
        ImageDataModule(dataset="imagenet")
    with pytest.raises(ValueError, match="val_fraction"):
        ImageDataModule(val_fraction=1.0)


class _LinearClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_runs_under_lightning_trainer(tmp_path: Path) -> None:
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = _LinearClassifier()
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, datamodule=ImageDataModule(batch_size=16))
    # two training batches (16 digits each) moved the weights; the validation loss is finite
    assert trainer.global_step == 2
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
