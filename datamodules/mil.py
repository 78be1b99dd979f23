"""``MILDataModule``: multiple-instance learning bags, padded into batches with a padding mask.

**Batches.** Every loader yields ``(instances, mask, labels)``:

- ``instances`` float32 (B, L_max, F): the bags' instances, zero-filled after each bag's end;
- ``mask`` bool (B, L_max): **True marks PADDING** (the ``key_padding_mask`` convention of
  ``nn.MultiheadAttention`` and hopfield-layers' ``stored_pattern_padding_mask``);
- ``labels`` float32 (B,): 1.0 for a positive bag, 0.0 for a negative one (for BCE-with-logits).

Bags keep their order (nothing is sorted by length) and instances keep their order in the bag.

**Datasets** (``dataset=``, registry :data:`MIL_DATASETS`):

- ``elephant``, ``fox``, ``tiger``: Corel ``<name>.mat`` (keys ``bag_ids``, ``features`` sparse,
  instance ``labels`` in {-1, +1}; a bag is positive iff any of its instances is);
- ``musk1``, ``musk2``, ``ucsb_breast_cancer``: ``<name>.csv[.gz]`` without header; column 0 =
  bag label, column 1 = bag id, the rest = instance features;
- ``mnist_bags``: MNIST-bags of Ilse et al. (2018), instances are flattened images (F = C*H*W);
- ``csv`` / ``mat``: your own bags, read from ``path`` in the musk / Corel layout;
- ``synthetic``: a small deterministic Gaussian bag set (see :func:`make_synthetic_bags`);
- ``auto`` (default): ``musk1`` when its file is in ``data_dir``, else ``synthetic``.

Files are looked up in ``data_dir`` and ``data_dir/mil``.

**Protocol** (the split options of :mod:`datamodules.splits`, shared with the other datamodules).
File and synthetic datasets use stratified ``num_folds``-fold cross-validation over bags: ``fold``
selects the test fold. The validation bags come from the remaining bags only: inner fold
``inner_fold`` of a stratified ``inner_folds``-fold split when ``inner_folds`` is set (what
``ahop cv`` uses for model selection and searches), else a stratified ``val_fraction`` share
(``0``: no validation bags, every non-test bag trains). ``mnist_bags`` follows Ilse et al.: fixed
training bags drawn from the training images and test bags drawn from the test images (``fold`` is
ignored, :attr:`MILDataModule.fold_count` is 1). Feature standardisation is fitted on the training
bags only (instances of the val and test bags are excluded). :meth:`MILDataModule.split_ids` gives
the bag ids of each split (test bags of ``mnist_bags`` are numbered after the training bags).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse
import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.image_sources import load_images
from datamodules.splits import check_split_options, kfold_split, validation_split
from datamodules.tensor_data import make_loader

# --------------------------------------------------------------------------- bag storage


@dataclass
class BagSet:
    """Bags stored flat: instances of bag ``i`` are ``instances[offsets[i]:offsets[i + 1]]``.

    Attributes:
        instances: float32 (N, F), all instances, bag after bag.
        offsets: long (num_bags + 1,), non-decreasing, ``offsets[0] == 0``, ``offsets[-1] == N``.
        labels: float32 (num_bags,) in {0, 1}.
        bag_ids: the bags' ids in the source (for error messages); defaults to positions.
    """

    instances: Tensor
    offsets: Tensor
    labels: Tensor
    bag_ids: list | None = None

    def __post_init__(self) -> None:
        self.instances = torch.as_tensor(self.instances, dtype=torch.float32)
        self.offsets = torch.as_tensor(self.offsets, dtype=torch.long)
        self.labels = torch.as_tensor(self.labels, dtype=torch.float32)
        if self.bag_ids is None:
            self.bag_ids = list(range(len(self.labels)))
        if self.instances.ndim != 2:
            raise ValueError(f"instances must be (N, F), got shape {tuple(self.instances.shape)}")
        if len(self.offsets) != len(self.labels) + 1 or len(self.bag_ids) != len(self.labels):
            raise ValueError("offsets must have num_bags + 1 entries and bag_ids num_bags")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.instances):
            raise ValueError("offsets must start at 0 and end at the number of instances")
        lengths = self.lengths
        if (lengths < 0).any():
            raise ValueError("offsets must be non-decreasing")
        empty = torch.nonzero(lengths == 0).flatten().tolist()
        if empty:
            raise ValueError(f"empty bags (no instances): ids {self._ids(empty)}")
        bad_rows = ~torch.isfinite(self.instances).all(dim=1)
        if bad_rows.any():
            bag_of_row = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
            bad = torch.unique(bag_of_row[bad_rows]).tolist()
            raise ValueError(f"bags with NaN or infinite features: ids {self._ids(bad)}")
        if not torch.isin(self.labels, torch.tensor([0.0, 1.0])).all():
            raise ValueError("bag labels must be 0 or 1")

    def _ids(self, positions: list[int], limit: int = 10) -> str:
        shown = [self.bag_ids[p] for p in positions[:limit]]
        more = f" ... ({len(positions)} in all)" if len(positions) > limit else ""
        return f"{shown}{more}"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> Tensor:
        """long (num_bags,): instances per bag."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def num_features(self) -> int:
        return self.instances.shape[1]

    def bag(self, index: int) -> Tensor:
        """float32 (L_i, F): the instances of bag ``index``."""
        return self.instances[self.offsets[index] : self.offsets[index + 1]]

    def _instance_index(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Flat instance rows of the chosen bags, and their new offsets."""
        lengths = self.lengths[indices]
        offsets = torch.zeros(len(indices) + 1, dtype=torch.long)
        torch.cumsum(lengths, 0, out=offsets[1:])
        within = torch.arange(int(offsets[-1])) - torch.repeat_interleave(offsets[:-1], lengths)
        return torch.repeat_interleave(self.offsets[:-1][indices], lengths) + within, offsets

    def subset(self, indices: Tensor | Sequence[int]) -> BagSet:
        """The bags at ``indices``, in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        rows, offsets = self._instance_index(idx)
        return BagSet(
            self.instances[rows], offsets, self.labels[idx], [self.bag_ids[i] for i in idx.tolist()]
        )

    def padded(self, indices: Tensor | Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Batch of bags at ``indices``: (instances (B, L_max, F), mask (B, L_max), labels (B,)).

        ``mask`` is True at padding positions; padded instances are zeros.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        lengths = self.lengths[idx]
        max_len = int(lengths.max()) if len(idx) else 0
        position = torch.arange(max_len)
        mask = position[None, :] >= lengths[:, None]
        rows = self.offsets[:-1][idx][:, None] + position[None, :]
        rows = rows.masked_fill(mask, 0)  # any valid row; zeroed below
        instances = self.instances[rows].masked_fill(mask[..., None], 0.0)
        return instances, mask, self.labels[idx]


def collate_bags(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Pad a list of ``(instances (L_i, F), label)`` bags into one batch.

    Returns:
        instances float32 (B, L_max, F) zero-padded, mask bool (B, L_max) with True = padding,
        labels (B,) stacked in the given order.
    """
    bags = [bag for bag, _ in batch]
    lengths = torch.tensor([len(bag) for bag in bags])
    instances = torch.nn.utils.rnn.pad_sequence(bags, batch_first=True)
    mask = torch.arange(instances.shape[1])[None, :] >= lengths[:, None]
    labels = torch.stack([torch.as_tensor(label) for _, label in batch])
    return instances, mask, labels


class BagDataset(Dataset):
    """A :class:`BagSet` as a dataset; ``__getitems__`` returns a whole padded batch at once."""

    def __init__(self, bags: BagSet) -> None:
        self.bags = bags

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.bags.bag(index), self.bags.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        return self.bags.padded(indices)


# --------------------------------------------------------------------------- builders / readers


def bags_from_instances(
    features: np.ndarray | Tensor, bag_ids: np.ndarray, instance_labels: np.ndarray
) -> BagSet:
    """Group instance rows into bags by id.

    Bags are ordered by the first appearance of their id and instances keep their file order.
    A bag is positive iff any of its instance labels is > 0 (works for {0, 1} and {-1, +1}).

    Args:
        features: (N, F) instance features.
        bag_ids: (N,) bag id per instance.
        instance_labels: (N,) label per instance.
    """
    bag_ids = np.asarray(bag_ids).ravel()
    instance_labels = np.asarray(instance_labels, dtype=np.float64).ravel()
    features = np.asarray(features, dtype=np.float32)
    if not len(bag_ids) == len(instance_labels) == len(features):
        raise ValueError(
            f"{len(features)} feature rows, {len(bag_ids)} bag ids, "
            f"{len(instance_labels)} labels: they must match"
        )
    if len(bag_ids) == 0:
        raise ValueError("no instances")
    classes = np.unique(instance_labels)
    if len(classes) > 2:
        raise ValueError(f"labels must take two values, found {classes.tolist()}")
    unique, first, inverse = np.unique(bag_ids, return_index=True, return_inverse=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    bag_of_row = rank[inverse]  # bag position in first-appearance order
    order = np.argsort(bag_of_row, kind="stable")
    counts = np.bincount(bag_of_row, minlength=len(unique))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    positive = np.zeros(len(unique), dtype=np.float32)
    np.maximum.at(positive, bag_of_row, (instance_labels > 0).astype(np.float32))
    ids_in_order = unique[np.argsort(first, kind="stable")].tolist()
    return BagSet(torch.from_numpy(features[order]), offsets, positive, ids_in_order)


def read_corel_mat(path: str | Path, require_two_classes: bool = True) -> BagSet:
    """Read a Corel MIL ``.mat`` file (elephant, fox, tiger).

    Keys: ``bag_ids`` (instance -> bag id), ``features`` (N, F), dense or sparse, ``labels``
    (instance labels in {-1, +1}, dense or sparse); a bag is positive iff any instance is.

    Raises:
        ValueError: a truncated or corrupt file, missing keys or malformed content (the file is
            named in every message).
    """
    try:
        content = scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError, scipy.io.matlab.MatReadError) as error:
        raise ValueError(
            f"{path} is not a readable MATLAB .mat file (truncated or corrupt? "
            f"{type(error).__name__}: {error}); replace it with an intact copy"
        ) from None
    missing = [key for key in ("bag_ids", "features", "labels") if key not in content]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected bag_ids, features, labels")

    def dense(value: object) -> np.ndarray:
        return value.toarray() if scipy.sparse.issparse(value) else np.asarray(value)

    try:
        features = dense(content["features"]).astype(np.float32)
        bags = bags_from_instances(features, dense(content["bag_ids"]), dense(content["labels"]))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
    if require_two_classes:
        _check_two_classes(bags, path)
    return bags


def read_mil_csv(path: str | Path, require_two_classes: bool = True) -> BagSet:
    """Read a MIL CSV (musk1, musk2, UCSB breast cancer); ``.gz`` is decompressed on the fly.

    No header; column 0 = bag label (0/1, or -1/+1), column 1 = bag id, the rest = features.
    Every instance row of a bag must carry the same bag label.

    Raises:
        ValueError: an empty, unparsable or malformed file; non-numeric or infinite cells are
            named by line and column.
    """
    try:
        table = pd.read_csv(path, header=None)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise ValueError(f"{path}: cannot read it as a MIL CSV ({reason})") from None
    if table.shape[1] < 3:
        raise ValueError(f"{path}: need columns label, bag id, features...; got {table.shape[1]}")
    labels = pd.to_numeric(table.iloc[:, 0], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(labels).any():
        line = int(np.flatnonzero(np.isnan(labels))[0]) + 1
        raise ValueError(
            f"{path}: column 0 (bag label) must be numeric; line {line} holds "
            f"{table.iloc[line - 1, 0]!r}"
        )
    bag_ids = table.iloc[:, 1].to_numpy()
    raw = table.iloc[:, 2:]
    parsed = raw.apply(pd.to_numeric, errors="coerce")
    bad = (parsed.isna() | np.isinf(parsed)).to_numpy()
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{path}: {int(bad.sum())} feature cell(s) are NaN / missing, non-numeric or "
            f"infinite, e.g. line {row + 1} (bag {bag_ids[row]}), column {col + 2} (0-based): "
            f"{str(raw.iloc[row, col])!r}; MIL features must be finite numbers"
        )
    features = parsed.to_numpy(np.float32)
    per_bag = pd.Series(labels > 0).groupby(bag_ids).nunique()
    conflicting = per_bag.index[per_bag.to_numpy() > 1].tolist()
    if conflicting:
        raise ValueError(f"{path}: bags with conflicting labels: ids {conflicting[:10]}")
    bags = bags_from_instances(features, bag_ids, labels)
    if require_two_classes:
        _check_two_classes(bags, path)
    return bags


def _check_two_classes(bags: BagSet, source: object) -> None:
    positives = int(bags.labels.sum())
    if positives in (0, len(bags)):
        raise ValueError(
            f"{source}: all {len(bags)} bags are {'positive' if positives else 'negative'}; "
            "MIL needs positive and negative bags"
        )


def make_mnist_bags(
    images: Tensor,
    labels: Tensor,
    num_bags: int,
    target: int = 9,
    mean_bag_length: float = 10.0,
    std_bag_length: float = 2.0,
    balanced: bool = False,
    seed: int = 0,
) -> BagSet:
    """MNIST-bags (Ilse et al., 2018): a bag is positive iff it holds an image of ``target``.

    Bag lengths are ``round(N(mean_bag_length, std_bag_length))`` clipped to >= 1; instances are
    drawn uniformly with replacement from ``images``. With ``balanced=True`` exactly
    ``num_bags // 2`` bags are positive (bag ``i`` is positive iff ``i`` is odd): negative bags
    draw from non-target images only, and a positive bag that drew no target image gets one
    random position replaced by a random target image. Otherwise labels follow the natural rate
    ``1 - (1 - p_target) ** L``.

    Args:
        images: (n, C, H, W) or (n, F) images; instances are flattened to F = C*H*W.
        labels: (n,) digit labels.
        num_bags: bags to draw.

    Returns:
        a :class:`BagSet` with F = C*H*W features.
    """
    if num_bags < 1:
        raise ValueError(f"num_bags must be >= 1, got {num_bags}")
    if mean_bag_length < 1 or std_bag_length < 0:
        raise ValueError("mean_bag_length must be >= 1 and std_bag_length >= 0")
    flat = images.reshape(len(images), -1).float()
    is_target = labels == target
    targets = torch.nonzero(is_target).flatten()
    others = torch.nonzero(~is_target).flatten()
    if len(targets) == 0 or len(others) == 0:
        raise ValueError(f"need images with and without digit {target} to build MNIST-bags")
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.normal(mean_bag_length, std_bag_length, num_bags)), 1, None)
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    offsets = torch.zeros(num_bags + 1, dtype=torch.long)
    torch.cumsum(lengths, 0, out=offsets[1:])
    total = int(offsets[-1])
    bag_of_row = torch.repeat_interleave(torch.arange(num_bags), lengths)
    if not balanced:
        rows = torch.as_tensor(rng.integers(0, len(flat), total))
    else:
        positive = torch.arange(num_bags) % 2 == 1
        rows = torch.as_tensor(rng.integers(0, len(flat), total))
        neg_rows = ~positive[bag_of_row]
        rows[neg_rows] = others[torch.as_tensor(rng.integers(0, len(others), int(neg_rows.sum())))]
        hits = torch.zeros(num_bags, dtype=torch.long)
        hits.index_add_(0, bag_of_row, is_target[rows].long())
        lacking = torch.nonzero(positive & (hits == 0)).flatten()
        slot = torch.as_tensor(rng.integers(0, lengths[lacking].numpy()))
        rows[offsets[lacking] + slot] = targets[
            torch.as_tensor(rng.integers(0, len(targets), len(lacking)))
        ]
    hits = torch.zeros(num_bags, dtype=torch.long)
    hits.index_add_(0, bag_of_row, is_target[rows].long())
    return BagSet(flat[rows], offsets, (hits > 0).float())


def make_synthetic_bags(
    num_bags: int = 100,
    num_features: int = 16,
    min_length: int = 3,
    max_length: int = 12,
    witness_shift: float = 2.5,
    seed: int = 0,
) -> BagSet:
    """A small deterministic bag set for offline runs and tests.

    Instances are N(0, I) in ``num_features`` dimensions; bag lengths are uniform in
    [min_length, max_length]. Bag ``i`` is positive iff ``i`` is odd (half the bags); a positive
    bag holds 1-3 *witness* instances whose first 4 features are shifted by ``witness_shift``.
    Everything is drawn from ``numpy.random.default_rng(seed)``.
    """
    if num_bags < 2 or not 1 <= min_length <= max_length or num_features < 1:
        raise ValueError("need num_bags >= 2, num_features >= 1, 1 <= min_length <= max_length")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, num_bags)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    instances = rng.standard_normal((int(offsets[-1]), num_features)).astype(np.float32)
    labels = (np.arange(num_bags) % 2 == 1).astype(np.float32)
    for bag in np.flatnonzero(labels):  # one-time generation of ~50 bags, not a hot loop
        count = min(int(rng.integers(1, 4)), int(lengths[bag]))
        slots = rng.choice(int(lengths[bag]), size=count, replace=False)
        instances[offsets[bag] + slots, : min(4, num_features)] += witness_shift
    return BagSet(torch.from_numpy(instances), offsets, labels)


# --------------------------------------------------------------------------- dataset registry

Loaded = BagSet | tuple[BagSet, BagSet]
"""A pool of bags for k-fold CV, or fixed (train, test) bags."""


def _find_file(data_dir: Path, names: Sequence[str]) -> Path | None:
    for folder in (data_dir, data_dir / "mil"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _file_loader(stem: str, suffixes: Sequence[str], reader: Callable[[Path], BagSet]):
    def load(dm: MILDataModule) -> BagSet:
        names = [stem + suffix for suffix in suffixes]
        path = _find_file(Path(dm.hparams.data_dir), names)
        if path is None:
            data_dir = Path(dm.hparams.data_dir)
            raise FileNotFoundError(
                f"{stem}: none of {names} found in {data_dir} or {data_dir / 'mil'}; "
                "set data_dir to the folder holding the file"
            )
        return _read_cached(reader, path.resolve(), path.stat().st_mtime_ns)

    return load


@functools.lru_cache(maxsize=8)
def _read_cached(reader: Callable[[Path], BagSet], path: Path, mtime_ns: int) -> BagSet:
    """Read a file once per process (an evaluation builds a datamodule per fold and trial); the
    modification time is part of the key, so an edited file is read again. Callers never modify
    the returned pool (:meth:`BagSet.subset` copies)."""
    return reader(path)


def _load_mnist_bags(dm: MILDataModule) -> tuple[BagSet, BagSet]:
    hp = dm.hparams
    pools = []
    for split, num_bags, seed_offset in (
        ("train", hp.num_train_bags, 0),
        ("test", hp.num_test_bags, 1),
    ):
        images, labels = load_images(
            hp.image_source,
            split,
            data_dir=hp.data_dir,
            download=hp.download,
            carve_from=hp.image_carve_from,
            seed=hp.seed,
        )
        pools.append(
            make_mnist_bags(
                images,
                labels,
                num_bags,
                target=hp.target_digit,
                mean_bag_length=hp.mean_bag_length,
                std_bag_length=hp.std_bag_length,
                balanced=hp.balanced,
                seed=hp.seed * 2 + seed_offset,
            )
        )
    train, test = pools
    test.bag_ids = [len(train) + i for i in range(len(test))]  # ids unique across both pools
    return train, test


def _load_synthetic(dm: MILDataModule) -> BagSet:
    return make_synthetic_bags(seed=dm.hparams.seed)


def _load_path(reader: Callable[[Path], BagSet]) -> Callable[[MILDataModule], BagSet]:
    def load(dm: MILDataModule) -> BagSet:
        if not dm.hparams.path:
            raise ValueError(
                f"dataset {dm.hparams.dataset!r} reads the file given by path; set path"
            )
        path = Path(dm.hparams.path)
        if not path.is_file():
            raise FileNotFoundError(f"MIL file {path} not found (path option)")
        return _read_cached(reader, path.resolve(), path.stat().st_mtime_ns)

    return load


def _load_auto(dm: MILDataModule) -> BagSet:
    if _find_file(Path(dm.hparams.data_dir), ["musk1.csv", "musk1.csv.gz"]) is not None:
        return MIL_DATASETS["musk1"](dm)
    return _load_synthetic(dm)


_CSV = (".csv", ".csv.gz")
MIL_DATASETS: dict[str, Callable[[MILDataModule], Loaded]] = {
    "auto": _load_auto,
    "synthetic": _load_synthetic,
    "mnist_bags": _load_mnist_bags,
    "elephant": _file_loader("elephant", [".mat"], read_corel_mat),
    "fox": _file_loader("fox", [".mat"], read_corel_mat),
    "tiger": _file_loader("tiger", [".mat"], read_corel_mat),
    "musk1": _file_loader("musk1", _CSV, read_mil_csv),
    "musk2": _file_loader("musk2", _CSV, read_mil_csv),
    "ucsb_breast_cancer": _file_loader("ucsb_breast_cancer", _CSV, read_mil_csv),
    "csv": _load_path(read_mil_csv),  # your own bags: path = a CSV in the musk layout
    "mat": _load_path(read_corel_mat),  # path = a .mat in the Corel layout
}


# --------------------------------------------------------------------------- DataModule


class MILDataModule(LightningDataModule):
    """Bags of instances for multiple-instance classification.

    Loaders yield ``(instances float32 (B, L_max, F), mask bool (B, L_max), labels float32 (B,))``
    with ``mask`` True at padding (see module doc). After :meth:`setup`: ``num_features``,
    ``num_bags`` (bags per split), ``num_positive`` (positive bags per split).

    Args:
        dataset: a name in :data:`MIL_DATASETS` (``auto``: musk1 if present, else synthetic).
        data_dir: folder of the benchmark files (also searched: ``data_dir/mil``) and image root.
        num_folds: folds of the stratified cross-validation over bags.
        fold: test fold index in ``[0, num_folds)``.
        val_fraction: stratified share of the non-test bags held out for validation (``0``: no
            validation bags); unused with ``inner_folds``.
        inner_folds: if set, the validation bags are inner fold ``inner_fold`` of a stratified
            ``inner_folds``-fold split of the non-test bags.
        inner_fold: the inner validation fold, in ``[0, inner_folds)``.
        seed: seed of folds, validation split and generated bags.
        batch_size: bags per training batch.
        eval_batch_size: bags per val / test / predict batch (``None``: ``batch_size``).
        standardize: standardise features with mean/std of the training bags' instances.
        image_source: ``mnist_bags``: the image data set (see
            :func:`datamodules.image_sources.load_images`).
        image_carve_from: ``mnist_bags``: ``"auto"`` carves from the MNIST split on disk when
            the other is missing.
        download: ``mnist_bags``: let torchvision download missing images.
        target_digit: ``mnist_bags``: a bag is positive iff it holds this digit.
        mean_bag_length: ``mnist_bags``: mean instances per bag.
        std_bag_length: ``mnist_bags``: standard deviation of the bag length.
        num_train_bags: ``mnist_bags``: training bags.
        num_test_bags: ``mnist_bags``: test bags.
        balanced: ``mnist_bags``: as many positive as negative bags.
        path: the file of ``dataset: csv`` (musk layout: label, bag id, features; ``.gz`` ok)
            or ``dataset: mat`` (Corel layout).
        predict_path: a bag file for ``predict`` in the format of the training files (``.mat``
            as Corel, else a MIL CSV; the label column is read but not used), standardised with
            the training bags' statistics. Default: the test bags.
    """

    #: the validation share option (:class:`datamodules.cv.CrossValidatable`)
    validation_option = "val_fraction"

    def __init__(
        self,
        dataset: str = "auto",
        data_dir: str = "data",
        num_folds: int = 10,
        fold: int = 0,
        val_fraction: float = 0.1,
        inner_folds: int | None = None,
        inner_fold: int = 0,
        seed: int = 0,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        standardize: bool = True,
        image_source: str = "mnist",
        image_carve_from: str | None = "auto",
        download: bool = False,
        target_digit: int = 9,
        mean_bag_length: float = 10.0,
        std_bag_length: float = 2.0,
        num_train_bags: int = 200,
        num_test_bags: int = 50,
        balanced: bool = False,
        path: str | None = None,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if dataset not in MIL_DATASETS:
            raise ValueError(
                f"unknown MIL dataset {dataset!r}; allowed values: {', '.join(MIL_DATASETS)}"
            )
        check_split_options(num_folds, fold, inner_folds, inner_fold, val_fraction)
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError("batch_size and eval_batch_size must be >= 1")
        self._loaded: Loaded | None = None
        self.train_set: BagSet | None = None
        self.val_set: BagSet | None = None
        self.test_set: BagSet | None = None
        self.feature_mean: Tensor | None = None
        self.feature_std: Tensor | None = None
        self.predict_set: BagSet | None = None

    @property
    def fold_count(self) -> int:
        """Folds a runner should iterate: ``num_folds``, or 1 for fixed train/test bags."""
        return 1 if self.hparams.dataset == "mnist_bags" else self.hparams.num_folds

    def with_fold(self, fold: int) -> MILDataModule:
        """A copy of this DataModule set to ``fold`` (reusing the loaded bags, if any)."""
        # LightningCLI adds private entries (e.g. `_class_path`) to hparams: not arguments
        arguments = {k: v for k, v in self.hparams.items() if not k.startswith("_")}
        clone = type(self)(**{**arguments, "fold": fold})
        clone._loaded = self._loaded
        return clone

    def iter_folds(self) -> Iterator[MILDataModule]:
        """DataModules for every fold, so a runner can do a whole cross-validation at once."""
        for fold in range(self.fold_count):
            yield self.with_fold(fold)

    def load(self) -> Loaded:
        """The dataset's bags (a pool, or fixed (train, test) bags), read once and cached."""
        if self._loaded is None:
            self._loaded = MIL_DATASETS[self.hparams.dataset](self)
        return self._loaded

    def split_indices(self) -> tuple[Tensor, Tensor]:
        """(train+val, test) bag indices of the pool for the current fold (sorted)."""
        pool = self.load()
        if isinstance(pool, tuple):
            raise ValueError(f"{self.hparams.dataset} has fixed train/test bags, no folds")
        hp = self.hparams
        return kfold_split(pool.labels, hp.num_folds, hp.fold, hp.seed)

    def setup(self, stage: str | None = None) -> None:
        """Split bags into train / val / test and standardise features (fitted on train)."""
        if self.train_set is not None:
            return
        loaded = self.load()
        if isinstance(loaded, tuple):
            train_pool, test = loaded
        else:
            rest_idx, test_idx = self.split_indices()
            train_pool, test = loaded.subset(rest_idx), loaded.subset(test_idx)
        hp = self.hparams
        train_idx, val_idx = validation_split(
            train_pool.labels, hp.seed, hp.val_fraction, hp.inner_folds, hp.inner_fold
        )
        train, val = train_pool.subset(train_idx), train_pool.subset(val_idx)
        if self.hparams.standardize:
            mean = train.instances.mean(dim=0)
            std = train.instances.std(dim=0)
            std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant features
            self.feature_mean, self.feature_std = mean, std
            for bags in (train, val, test):
                bags.instances = (bags.instances - mean) / std
        self.train_set, self.val_set, self.test_set = train, val, test

    def _require(self) -> tuple[BagSet, BagSet, BagSet]:
        if self.train_set is None or self.val_set is None or self.test_set is None:
            raise RuntimeError("call setup() first")
        return self.train_set, self.val_set, self.test_set

    def split_ids(self, split: str) -> list:
        """The ids (from the source file; positions for generated bags) of the bags in ``split``
        (``train`` | ``val`` | ``test``), in loader order."""
        sets = dict(zip(("train", "val", "test"), self._require()))
        if split not in sets:
            raise ValueError(f"unknown split {split!r}; allowed: train, val, test")
        return list(sets[split].bag_ids)

    @property
    def num_features(self) -> int:
        """F, the instance feature dimension."""
        loaded = self.load()
        return (loaded[0] if isinstance(loaded, tuple) else loaded).num_features

    @property
    def num_bags(self) -> dict[str, int]:
        """Bags per split, e.g. ``{"train": 74, "val": 9, "test": 9}``."""
        return dict(zip(("train", "val", "test"), (len(s) for s in self._require())))

    @property
    def num_positive(self) -> dict[str, int]:
        """Positive bags per split."""
        return dict(zip(("train", "val", "test"), (int(s.labels.sum()) for s in self._require())))

    def _loader(self, bags: BagSet, train: bool) -> DataLoader:
        hp = self.hparams
        if train:
            return make_loader(BagDataset(bags), hp.batch_size, shuffle=True, seed=hp.seed)
        return make_loader(BagDataset(bags), hp.eval_batch_size or hp.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._require()[0], train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._require()[1], train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._require()[2], train=False)

    def _predict_bags(self) -> BagSet:
        if self.predict_set is None:
            path = self.hparams.predict_path
            if path is None:
                self.predict_set = self._require()[2]
            else:
                self.predict_set = self._read_predict_path(Path(path))
        return self.predict_set

    def _read_predict_path(self, path: Path) -> BagSet:
        if not path.is_file():
            raise FileNotFoundError(f"predict_path: no bag file {path}")
        self.setup("predict")  # the training bags' standardisation
        reader = read_corel_mat if path.suffix == ".mat" else read_mil_csv
        bags = reader(path, require_two_classes=False)
        if bags.num_features != self._require()[0].num_features:
            raise ValueError(
                f"predict_path {path}: bags with {bags.num_features} features per instance, the "
                f"training bags have {self._require()[0].num_features}"
            )
        if self.feature_mean is not None:
            bags.instances = (bags.instances - self.feature_mean) / self.feature_std
        return bags

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._predict_bags(), train=False)

    def prediction_ids(self) -> list:
        """The id of every bag ``predict_dataloader`` serves (the bag ids of the file)."""
        return list(self._predict_bags().bag_ids)
