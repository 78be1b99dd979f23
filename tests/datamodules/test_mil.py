"""Tests for datamodules.mil: padding/mask, readers, MNIST-bags, folds, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch
from torch import nn

from datamodules.mil import (
    BagDataset,
    BagSet,
    MILDataModule,
    bags_from_instances,
    collate_bags,
    make_mnist_bags,
    make_synthetic_bags,
    read_corel_mat,
    read_mil_csv,
)
from datamodules.tensor_data import make_loader

SHARED_MIL = Path(__file__).resolve().parents[3] / "shared" / "data" / "mil"


def small_bagset() -> tuple[BagSet, list[int]]:
    lengths = [2, 4, 1]
    instances = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3) + 1.0  # no zeros
    offsets = torch.tensor([0, 2, 6, 7])
    return BagSet(instances, offsets, torch.tensor([0.0, 1.0, 1.0]), ["a", "b", "c"]), lengths


def test_collate_pads_and_masks() -> None:
    bags, lengths = small_bagset()
    x, mask, y = collate_bags([(bags.bag(i), bags.labels[i]) for i in range(3)])
    assert x.shape == (3, 4, 3) and x.dtype == torch.float32
    assert mask.dtype == torch.bool
    expected_mask = torch.tensor(
        [[False, False, True, True], [False, False, False, False], [False, True, True, True]]
    )
    assert torch.equal(mask, expected_mask)  # True = padding
    for i, length in enumerate(lengths):
        assert torch.equal(x[i, :length], bags.bag(i))
        assert (x[i, length:] == 0).all()
    assert torch.equal(y, bags.labels)
    # The vectorised batch path gives the same batch, in the requested order.
    for order in ([0, 1, 2], [2, 0]):
        px, pmask, py = bags.padded(order)
        cx, cmask, cy = collate_bags([(bags.bag(i), bags.labels[i]) for i in order])
        assert torch.equal(px, cx) and torch.equal(pmask, cmask) and torch.equal(py, cy)


def test_bag_dataset_loader_and_subset() -> None:
    bags, _ = small_bagset()
    loader = make_loader(BagDataset(bags), batch_size=2)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(2, 4, 3), (1, 1, 3)]
    sub = bags.subset([2, 0])
    assert sub.bag_ids == ["c", "a"] and sub.lengths.tolist() == [1, 2]
    assert torch.equal(sub.bag(1), bags.bag(0)) and torch.equal(sub.labels, torch.tensor([1.0, 0]))


def test_bags_from_instances_groups_by_first_appearance() -> None:
    features = np.arange(12, dtype=np.float32).reshape(6, 2)
    bag_ids = np.array([7, 3, 7, 5, 3, 5])
    labels = np.array([-1, -1, 1, -1, -1, -1])
    bags = bags_from_instances(features, bag_ids, labels)
    assert bags.bag_ids == [7, 3, 5]
    assert bags.labels.tolist() == [1.0, 0.0, 0.0]  # positive iff any instance is
    assert bags.bag(0).tolist() == [[0, 1], [4, 5]]  # file order within a bag
    assert bags.bag(1).tolist() == [[2, 3], [8, 9]]


def test_bagset_errors() -> None:
    with pytest.raises(ValueError, match="empty bags"):
        BagSet(torch.ones(3, 2), torch.tensor([0, 2, 2, 3]), torch.tensor([0.0, 1.0, 1.0]))
    nan = torch.ones(3, 2)
    nan[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN .* ids \['y'\]"):
        BagSet(nan, torch.tensor([0, 2, 3]), torch.tensor([0.0, 1.0]), ["x", "y"])
    with pytest.raises(ValueError, match="0 or 1"):
        BagSet(torch.ones(2, 2), torch.tensor([0, 1, 2]), torch.tensor([0.0, 2.0]))


def write_corel(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    bag_ids = np.repeat(np.arange(1, 7), [2, 3, 1, 2, 4, 2]).astype(np.uint8)
    features = scipy.sparse.random(14, 5, density=0.4, random_state=0, format="csc")
    labels = np.where(rng.random(14) < 0.3, 1.0, -1.0)
    labels[bag_ids == 1] = -1.0  # bag 1 negative
    labels[bag_ids == 2] = [-1.0, 1.0, -1.0]  # bag 2 positive through one instance
    scipy.io.savemat(
        path,
        {
            "bag_ids": bag_ids[None, :],
            "features": features,
            "labels": scipy.sparse.csc_matrix(labels[None, :]),
        },
    )
    return features.toarray(), bag_ids, labels


def test_read_corel_mat(tmp_path: Path) -> None:
    features, bag_ids, labels = write_corel(tmp_path / "fox.mat")
    bags = read_corel_mat(tmp_path / "fox.mat")
    assert len(bags) == 6 and bags.num_features == 5
    assert bags.lengths.tolist() == [2, 3, 1, 2, 4, 2]
    expected = [float((labels[bag_ids == b] > 0).any()) for b in range(1, 7)]
    assert bags.labels.tolist() == expected and expected[:2] == [0.0, 1.0]
    assert np.allclose(bags.instances.numpy(), features)
    dm = MILDataModule(dataset="fox", data_dir=str(tmp_path), num_folds=2, val_fraction=0.5)
    assert dm.num_features == 5


def write_csv(path: Path, rows: list[list[float]]) -> None:
    text = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


CSV_ROWS = [
    [1, 10, 0.5, 1.0],
    [1, 10, 0.75, 2.0],
    [0, 11, 0.1, 3.0],
    [1, 12, 0.2, 4.0],
    [0, 13, 0.3, 5.0],
    [0, 13, 0.4, 6.0],
]


def test_read_mil_csv_plain_and_gzip(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", CSV_ROWS)
    write_csv(tmp_path / "a.csv.gz", CSV_ROWS)
    plain, zipped = read_mil_csv(tmp_path / "a.csv"), read_mil_csv(tmp_path / "a.csv.gz")
    assert plain.bag_ids == [10, 11, 12, 13] and plain.labels.tolist() == [1, 0, 1, 0]
    assert plain.lengths.tolist() == [2, 1, 1, 2]
    assert torch.equal(plain.instances, zipped.instances)
    assert plain.bag(0).tolist() == [[0.5, 1.0], [0.75, 2.0]]


def test_reader_errors(tmp_path: Path) -> None:
    write_csv(tmp_path / "one.csv", [[1, 1, 0.1], [1, 2, 0.2]])
    with pytest.raises(ValueError, match="all 2 bags are positive"):
        read_mil_csv(tmp_path / "one.csv")
    write_csv(tmp_path / "nan.csv", [[1, 1, 0.1], [0, 2, "nan"]])
    with pytest.raises(ValueError, match=r"NaN .* line 2 \(bag 2\), column 2"):
        read_mil_csv(tmp_path / "nan.csv")
    write_csv(tmp_path / "mixed.csv", [[1, 1, 0.1], [0, 1, 0.2], [0, 2, 0.3]])
    with pytest.raises(ValueError, match="conflicting labels"):
        read_mil_csv(tmp_path / "mixed.csv")
    scipy.io.savemat(tmp_path / "bad.mat", {"features": np.ones((2, 2))})
    with pytest.raises(ValueError, match="missing keys"):
        read_corel_mat(tmp_path / "bad.mat")
    with pytest.raises(FileNotFoundError, match="tiger"):
        MILDataModule(dataset="tiger", data_dir=str(tmp_path)).setup()
    with pytest.raises(ValueError, match="allowed values: auto, synthetic"):
        MILDataModule(dataset="corel")
    with pytest.raises(ValueError, match="fold must be in"):
        MILDataModule(num_folds=5, fold=5)


def _labelled_images(n: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels all equal their digit, so a bag's digits can be read back."""
    labels = torch.arange(n) % 10
    return labels.float().view(n, 1, 1, 1).expand(n, 1, 2, 2).clone(), labels


def test_mnist_bags_label_rule_and_lengths() -> None:
    images, labels = _labelled_images()
    bags = make_mnist_bags(images, labels, num_bags=2000, mean_bag_length=10, std_bag_length=2)
    assert bags.num_features == 4
    digits = bags.instances[:, 0]
    for i in range(len(bags)):
        in_bag = digits[bags.offsets[i] : bags.offsets[i + 1]]
        assert bags.labels[i] == float((in_bag == 9).any())
    lengths = bags.lengths.float()
    assert abs(lengths.mean().item() - 10) < 0.3 and abs(lengths.std().item() - 2) < 0.3
    rate = bags.labels.mean().item()
    assert abs(rate - (1 - 0.9**10)) < 0.06  # natural positive rate
    short = make_mnist_bags(images, labels, num_bags=300, mean_bag_length=1, std_bag_length=3)
    assert short.lengths.min() == 1
    again = make_mnist_bags(images, labels, num_bags=2000, mean_bag_length=10, std_bag_length=2)
    assert torch.equal(again.instances, bags.instances)


def test_mnist_bags_balanced() -> None:
    images, labels = _labelled_images()
    bags = make_mnist_bags(images, labels, num_bags=101, target=3, balanced=True, seed=5)
    assert int(bags.labels.sum()) == 50
    digits = bags.instances[:, 0]
    for i in range(len(bags)):
        in_bag = digits[bags.offsets[i] : bags.offsets[i + 1]]
        assert bags.labels[i] == float((in_bag == 3).any()) == float(i % 2 == 1)
    with pytest.raises(ValueError, match="with and without digit 11"):
        make_mnist_bags(images, labels, num_bags=5, target=11)


def test_mnist_bags_module_from_digits() -> None:
    dm = MILDataModule(
        dataset="mnist_bags", image_source="digits", num_train_bags=60, num_test_bags=20
    )
    dm.setup()
    assert dm.fold_count == 1 and dm.num_features == 64
    assert dm.num_bags == {"train": 54, "val": 6, "test": 20}
    x, mask, y = next(iter(dm.train_dataloader()))
    assert x.shape[0] == 8 and x.shape[2] == 64 and y.dtype == torch.float32
    assert mask.shape == x.shape[:2] and (x[mask] == 0).all()


def test_folds_partition_and_stratify() -> None:
    base = MILDataModule(dataset="synthetic", num_folds=5, seed=1)
    pool = base.load()
    seen_test: list = []
    for dm in base.iter_folds():
        assert dm._loaded is pool  # bags read once for all folds
        dm.setup()
        ids = {name: set(s.bag_ids) for name, s in zip(("tr", "va", "te"), dm._require())}
        assert not (ids["tr"] & ids["va"] or ids["tr"] & ids["te"] or ids["va"] & ids["te"])
        assert len(ids["tr"] | ids["va"] | ids["te"]) == len(pool)
        assert dm.num_positive["test"] == 10 and dm.num_bags["test"] == 20  # stratified
        seen_test += sorted(ids["te"])
    assert sorted(seen_test) == list(range(len(pool)))  # test folds partition the bags
    assert len(list(base.iter_folds())) == 5


def test_inner_folds_partition_the_training_bags() -> None:
    """Inner validation folds come from the non-test bags only and partition them; with
    val_fraction 0 every non-test bag trains."""

    def fold(**kwargs) -> MILDataModule:
        dm = MILDataModule(dataset="synthetic", num_folds=5, fold=2, seed=3, **kwargs)
        dm.setup()
        return dm

    test = set(fold().split_ids("test"))
    vals = []
    for inner in range(4):
        dm = fold(inner_folds=4, inner_fold=inner)
        assert set(dm.split_ids("test")) == test
        train, val = set(dm.split_ids("train")), set(dm.split_ids("val"))
        assert not (train & val or train & test or val & test)
        assert dm.num_positive["val"] == 10  # stratified: 40 of the 80 training bags positive
        vals.append(val)
    assert set().union(*vals) == set(range(100)) - test and sum(map(len, vals)) == 80
    whole = fold(val_fraction=0.0)
    assert whole.num_bags == {"train": 80, "val": 0, "test": 20}
    assert list(whole.val_dataloader()) == []
    with pytest.raises(ValueError, match="inner_fold must be in"):
        MILDataModule(inner_folds=3, inner_fold=3)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        MILDataModule(val_fraction=1.0)


def test_own_csv_file_by_path(tmp_path: Path) -> None:
    rows = [f"{i % 2},bag{i},{i % 2 + 0.1 * k},{k}" for i in range(20) for k in range(3)]
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(rows) + "\n")
    dm = MILDataModule(dataset="csv", path=str(path), num_folds=4)
    dm.setup()
    assert dm.num_features == 2 and sum(dm.num_bags.values()) == 20
    assert set(dm.split_ids("test")) <= {f"bag{i}" for i in range(20)}
    with pytest.raises(ValueError, match="set path"):
        MILDataModule(dataset="csv").setup()
    with pytest.raises(FileNotFoundError, match="not found"):
        MILDataModule(dataset="mat", path=str(tmp_path / "none.mat")).setup()


def test_mnist_bags_ids_unique_across_train_and_test() -> None:
    dm = MILDataModule(
        dataset="mnist_bags", image_source="digits", num_train_bags=30, num_test_bags=10
    )
    dm.setup()
    ids = [set(dm.split_ids(s)) for s in ("train", "val", "test")]
    assert len(set().union(*ids)) == 40 and ids[2] == set(range(30, 40))


def test_standardisation_fitted_on_training_bags() -> None:
    dm = MILDataModule(dataset="synthetic", num_folds=4, fold=2)
    dm.setup()
    train = dm.train_set.instances
    assert torch.allclose(train.mean(0), torch.zeros(train.shape[1]), atol=1e-5)
    assert torch.allclose(train.std(0), torch.ones(train.shape[1]), atol=1e-4)
    raw = make_synthetic_bags(seed=0).subset(dm.train_set.bag_ids).instances
    assert torch.allclose(dm.feature_mean, raw.mean(0), atol=1e-6)
    assert not torch.allclose(dm.test_set.instances.mean(0), torch.zeros(train.shape[1]), atol=1e-3)
    same = MILDataModule(dataset="synthetic", num_folds=4, fold=2)
    same.setup()
    assert same.test_set.bag_ids == dm.test_set.bag_ids  # deterministic


def test_auto_falls_back_to_synthetic_or_musk1(tmp_path: Path) -> None:
    dm = MILDataModule(data_dir=str(tmp_path))
    assert dm.num_features == 16 and len(dm.load()) == 100
    rows = [[b % 2, b, float(b), float(i)] for b in range(20) for i in range(2)]
    write_csv(tmp_path / "musk1.csv.gz", rows)
    dm = MILDataModule(data_dir=str(tmp_path), num_folds=2)
    assert dm.num_features == 2 and len(dm.load()) == 20


@pytest.mark.skipif(not (SHARED_MIL / "elephant.mat").is_file(), reason="shared MIL data absent")
def test_real_elephant() -> None:
    dm = MILDataModule(dataset="elephant", data_dir=str(SHARED_MIL))
    bags = dm.load()
    assert len(bags) == 200 and int(bags.labels.sum()) == 100 and len(bags.instances) == 1391
    assert dm.num_features == 230 and bags.lengths.min() == 2 and bags.lengths.max() == 13
    dm.setup()
    assert sum(dm.num_bags.values()) == 200 and dm.num_bags["test"] == 20


@pytest.mark.skipif(not (SHARED_MIL / "musk1.csv").is_file(), reason="shared MIL data absent")
def test_real_musk1() -> None:
    bags = MILDataModule(dataset="musk1", data_dir=str(SHARED_MIL.parent)).load()  # finds mil/
    assert len(bags) == 92 and int(bags.labels.sum()) == 47 and len(bags.instances) == 476
    assert bags.num_features == 166


class _MeanPool(L.LightningModule):
    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.head = nn.Linear(num_features, 1)

    def training_step(self, batch, batch_idx):
        x, mask, y = batch
        keep = (~mask).unsqueeze(-1).float()
        pooled = (x * keep).sum(1) / keep.sum(1)
        return nn.functional.binary_cross_entropy_with_logits(self.head(pooled).squeeze(-1), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_runs_under_lightning_trainer(tmp_path: Path) -> None:
    dm = MILDataModule(dataset="synthetic")
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = _MeanPool(dm.num_features)
    before = model.head.weight.detach().clone()
    trainer.fit(model, datamodule=dm)
    # two padded training batches went through the masked mean: the head learned from them
    assert trainer.global_step == 2 and not torch.equal(model.head.weight, before)
    assert torch.isfinite(model.head.weight).all()
