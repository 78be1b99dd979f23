"""Tests for datamodules.image_sources: registry, digits, IDX reading, carving, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.image_sources import (
    IMAGE_SOURCES,
    available_splits,
    get_source,
    load_images,
    stratified_split,
)

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data"
HAS_SHARED_MNIST = (SHARED_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic 0x0000 08 <ndim>, big-endian sizes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 + array.ndim)
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def make_idx_split(folder: Path, prefix: str, n: int, seed: int, gz: bool = True) -> np.ndarray:
    """Write ``n`` random 28x28 images with labels ``i % 10`` as IDX; return the images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images


def test_registry_names_and_errors() -> None:
    assert set(IMAGE_SOURCES) == {"digits", "mnist", "fashion_mnist", "cifar10"}
    with pytest.raises(ValueError, match="allowed values: digits, mnist"):
        get_source("svhn")
    with pytest.raises(ValueError, match="split must be one of train, test"):
        load_images("digits", "val")
    with pytest.raises(ValueError, match="carve_from"):
        load_images("digits", "train", carve_from="test")
    with pytest.raises(ValueError, match="carve_from"):
        load_images("mnist", "train", carve_from="validation")


def test_digits_carved_train_test() -> None:
    train_x, train_y = load_images("digits", "train")
    test_x, test_y = load_images("digits", "test")
    assert train_x.shape[1:] == (1, 8, 8) and train_x.dtype == torch.float32
    assert train_y.dtype == torch.long
    assert len(train_x) + len(test_x) == 1797
    assert train_x.min() >= 0.0 and train_x.max() <= 1.0 and train_x.max() == 1.0
    # Stratified: every class has ~20 % of its images in test.
    counts_test = torch.bincount(test_y, minlength=10).float()
    counts_all = counts_test + torch.bincount(train_y, minlength=10)
    assert torch.allclose(counts_test / counts_all, torch.full((10,), 0.2), atol=0.02)
    # Train and test partition the 1797 images (compared as multisets of rows).
    from sklearn.datasets import load_digits

    full = torch.as_tensor(load_digits().images, dtype=torch.float32).flatten(1) / 16.0
    parts = torch.cat([train_x, test_x]).flatten(1)
    assert sorted(map(tuple, parts.tolist())) == sorted(map(tuple, full.tolist()))
    # Deterministic, and the seed matters.
    again_x, _ = load_images("digits", "train")
    assert torch.equal(train_x, again_x)
    other_x, _ = load_images("digits", "train", seed=1)
    assert not torch.equal(train_x, other_x)


def test_stratified_split_partitions_and_keeps_order() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = stratified_split(labels, 0.1, seed=3)
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(100))
    assert torch.equal(kept, kept.sort().values) and torch.equal(held, held.sort().values)
    assert torch.bincount(labels[held]).tolist() == [5, 3, 2]
    _, held2 = stratified_split(labels, 0.1, seed=3)
    assert torch.equal(held, held2)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        stratified_split(labels, 1.0)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_both_splits(tmp_path: Path, gz: bool) -> None:
    raw = tmp_path / "MNIST" / "raw"
    train_images = make_idx_split(raw, "train", 30, seed=0, gz=gz)
    test_images = make_idx_split(raw, "t10k", 20, seed=1, gz=gz)
    assert available_splits("mnist", tmp_path) == ["train", "test"]
    x, y = load_images("mnist", "train", tmp_path)
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0] * 255, torch.from_numpy(train_images).float())
    assert torch.equal(y, torch.arange(30) % 10)
    x, _ = load_images("mnist", "test", tmp_path)
    assert torch.allclose(x[:, 0] * 255, torch.from_numpy(test_images).float())
    # "auto" with both splits present uses the native splits.
    auto_x, _ = load_images("mnist", "test", tmp_path, carve_from="auto")
    assert torch.equal(auto_x, x)


def test_idx_folder_layouts(tmp_path: Path) -> None:
    images = make_idx_split(tmp_path / "raw", "t10k", 10, seed=0)
    for root in (tmp_path, tmp_path / "raw"):  # <data_dir>/raw, or data_dir = the IDX folder
        x, _ = load_images("mnist", "test", root)
        assert torch.allclose(x[:, 0] * 255, torch.from_numpy(images).float())
    fashion = make_idx_split(tmp_path / "other" / "FashionMNIST" / "raw", "t10k", 10, seed=5)
    x, _ = load_images("fashion_mnist", "test", tmp_path / "other")
    assert torch.allclose(x[:, 0] * 255, torch.from_numpy(fashion).float())
    assert get_source("fashion_mnist").class_names[0] == "T-shirt/top"


def test_missing_train_split_is_a_clear_error(tmp_path: Path) -> None:
    make_idx_split(tmp_path / "MNIST" / "raw", "t10k", 20, seed=0)
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        load_images("mnist", "train", tmp_path)
    assert "carve_from='test'" in str(info.value) and "train-images-idx3-ubyte" in str(info.value)


def test_carve_from_test_split(tmp_path: Path) -> None:
    make_idx_split(tmp_path / "MNIST" / "raw", "t10k", 100, seed=0)
    full_x, _ = load_images("mnist", "test", tmp_path)
    train_x, _ = load_images("mnist", "train", tmp_path, carve_from="test")
    test_x, test_y = load_images("mnist", "test", tmp_path, carve_from="test")
    assert len(train_x) == 80 and len(test_x) == 20
    assert torch.bincount(test_y, minlength=10).tolist() == [2] * 10  # stratified
    # The two parts partition the single split (random images are all distinct).
    rows = {tuple(r.tolist()): i for i, r in enumerate(full_x.flatten(1))}
    train_rows = {rows[tuple(r.tolist())] for r in train_x.flatten(1)}
    test_rows = {rows[tuple(r.tolist())] for r in test_x.flatten(1)}
    assert train_rows.isdisjoint(test_rows) and len(train_rows | test_rows) == 100
    auto_x, _ = load_images("mnist", "train", tmp_path, carve_from="auto")
    assert torch.equal(auto_x, train_x)
    # Carving with carve_from set ignores a native train split, so results do not depend on it.
    make_idx_split(tmp_path / "MNIST" / "raw", "train", 30, seed=9)
    again_x, _ = load_images("mnist", "train", tmp_path, carve_from="test")
    assert torch.equal(again_x, train_x)


def test_cifar10_missing_is_a_clear_error(tmp_path: Path) -> None:
    assert available_splits("cifar10", tmp_path) == []
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_images("cifar10", "train", tmp_path)
    source = get_source("cifar10")
    assert source.shape == (3, 32, 32) and len(source.mean) == 3 and source.num_classes == 10


@pytest.mark.skipif(not HAS_SHARED_MNIST, reason="shared MNIST test files not present")
def test_real_mnist_test_split() -> None:
    x, y = load_images("mnist", "test", SHARED_MNIST)
    assert x.shape == (10000, 1, 28, 28)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(y).tolist()[:3] == [980, 1135, 1032]
    assert abs(x.mean().item() - 0.1325) < 0.002  # MNIST test-set pixel mean
