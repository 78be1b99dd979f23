"""Turn an image dataset name into in-memory tensors: one loader for every image DataModule.

``load_images(name, split, data_dir)`` answers ``(images float32 (n, C, H, W) in [0, 1],
labels long (n,))`` for every name in :data:`IMAGE_SOURCES`:

=================  ==========  =================================================================
name               shape       where the data come from
=================  ==========  =================================================================
``digits``         (1, 8, 8)   scikit-learn's bundled 8x8 digits (offline), pixel values / 16
``mnist``          (1, 28, 28) IDX files in ``data_dir``, else torchvision download
``fashion_mnist``  (1, 28, 28) IDX files in ``data_dir``, else torchvision download
``cifar10``        (3, 32, 32) torchvision ``CIFAR10`` (python pickles under ``data_dir``)
=================  ==========  =================================================================

**Splits.** Sources have *native* splits (``train`` / ``test``; ``digits`` has a single ``all``).
A request for ``train`` or ``test`` is answered from the native split when its files are present.
``carve_from=<split>`` instead partitions that one native split, stratified by label, into a train
part and a test part (``carve_test_fraction`` of each class goes to test, shuffled with ``seed``;
both parts keep the file order); ``train`` then answers the train part and ``test`` the test part,
so the two never share an image. ``carve_from="auto"`` uses the native splits when all are
present and otherwise carves from the first one present. Carving is deterministic: same files,
fraction and seed give the same partition on every machine. ``digits`` is always carved (it has
no native test split). Validation splits are carved from ``train`` by the DataModules.

**Offline MNIST.** torchvision's ``MNIST(root, download=False)`` refuses a root without the
training files, so MNIST-format files are read directly with torchvision's public IDX reader from
the first of ``<data_dir>/<MNIST|FashionMNIST>/raw``, ``<data_dir>/raw`` or ``data_dir`` itself
that holds them (plain or ``.gz``). With only the 10k test split on disk, use
``carve_from="test"`` (or ``"auto"``).
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor
from torchvision import datasets as tv_datasets
from torchvision.datasets.mnist import read_image_file, read_label_file

from datamodules.errors import DataUnavailableError

SPLITS = ("train", "test")
DEFAULT_CARVE_TEST_FRACTION = 0.2
CARVE_AUTO = "auto"

Reader = Callable[[str, Path, bool], tuple[Tensor, Tensor]]
"""(native split, data_dir, download) -> (images float32 (n, C, H, W) in [0, 1], labels (n,))."""
Finder = Callable[[str, Path], bool]
"""(native split, data_dir) -> whether that split's files are present locally."""


@dataclass(frozen=True)
class ImageSource:
    """Everything the DataModules need to know about one image dataset.

    Attributes:
        name: registry name.
        shape: (C, H, W) of one image.
        class_names: one name per class index.
        mean, std: per-channel statistics of the [0, 1] images (for normalisation).
        splits: native splits, in preference order for ``carve_from="auto"``.
        is_present: tells whether a native split is on disk.
        read: loads a native split (downloading first when allowed and possible).
        how_to_get: appended to "not found" errors.
    """

    name: str
    shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...]
    is_present: Finder
    read: Reader
    how_to_get: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- digits (sklearn)


def _digits_present(split: str, data_dir: Path) -> bool:
    return split == "all"


def _read_digits(split: str, data_dir: Path, download: bool) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.as_tensor(bunch.target, dtype=torch.long)


# --------------------------------------------------------------------------- MNIST-format IDX

_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _idx_candidates(folder_name: str, data_dir: Path) -> list[Path]:
    return [data_dir / folder_name / "raw", data_dir / "raw", data_dir]


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_pair(folder_name: str, split: str, data_dir: Path) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of ``split`` in the first candidate folder holding both."""
    prefix = _IDX_PREFIX.get(split)
    if prefix is None:
        return None
    for folder in _idx_candidates(folder_name, data_dir):
        images = _find_idx_file(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx_file(folder, f"{prefix}-labels-idx1-ubyte")
        if images is not None and labels is not None:
            return images, labels
    return None


def read_idx(path: Path, reader: Callable[[str], Tensor]) -> Tensor:
    """Read an IDX file; torchvision's reader needs a plain file, so ``.gz`` uses a temp file.

    Raises:
        ValueError: a truncated or corrupt file (named).
    """
    try:
        if path.suffix != ".gz":
            return reader(str(path))
        with gzip.open(path, "rb") as src, tempfile.NamedTemporaryFile(suffix=".idx") as tmp:
            shutil.copyfileobj(src, tmp)
            tmp.flush()
            return reader(tmp.name)
    except (AssertionError, RuntimeError, ValueError, OSError, EOFError, KeyError) as error:
        reason = f"{type(error).__name__}: {error}".rstrip(": ")
        raise ValueError(
            f"{path} is not a readable IDX file (truncated or corrupt? {reason}); replace it with "
            "an intact copy"
        ) from None


@dataclass(frozen=True)
class _IdxFormat:
    """Finder and reader for a torchvision MNIST-style dataset stored as IDX files.

    A small class rather than closures so that the registry (and DataModules holding a source)
    can be pickled, e.g. by ``ddp_spawn``.
    """

    folder_name: str
    tv_class: type

    def is_present(self, split: str, data_dir: Path) -> bool:
        return _find_idx_pair(self.folder_name, split, data_dir) is not None

    def read(self, split: str, data_dir: Path, download: bool) -> tuple[Tensor, Tensor]:
        pair = _find_idx_pair(self.folder_name, split, data_dir)
        if pair is not None:
            images = read_idx(pair[0], read_image_file)
            labels = read_idx(pair[1], read_label_file)
        elif download:
            dataset = self.tv_class(root=str(data_dir), train=split == "train", download=True)
            images, labels = dataset.data, dataset.targets
        else:
            raise _not_found(self.folder_name, split, data_dir)
        if len(images) != len(labels):
            raise ValueError(
                f"{self.folder_name} {split}: {len(images)} images but {len(labels)} labels "
                f"in {data_dir}"
            )
        return images.unsqueeze(1).float() / 255.0, labels.long()


def _not_found(folder_name: str, split: str, data_dir: Path) -> FileNotFoundError:
    folders = ", ".join(str(p) for p in _idx_candidates(folder_name, data_dir))
    prefix = _IDX_PREFIX[split]
    return FileNotFoundError(
        f"{folder_name} {split} split not found: looked for {prefix}-images-idx3-ubyte[.gz] and "
        f"{prefix}-labels-idx1-ubyte[.gz] in {folders}."
    )


# --------------------------------------------------------------------------- CIFAR-10


def _cifar10_present(split: str, data_dir: Path) -> bool:
    files = {"train": tv_datasets.CIFAR10.train_list, "test": tv_datasets.CIFAR10.test_list}
    if split not in files:
        return False
    folder = data_dir / tv_datasets.CIFAR10.base_folder
    return all((folder / entry[0]).is_file() for entry in files[split])


def _read_cifar10(split: str, data_dir: Path, download: bool) -> tuple[Tensor, Tensor]:
    if not download and not _cifar10_present(split, data_dir):
        raise FileNotFoundError(
            f"cifar10 {split} split not found in {data_dir / tv_datasets.CIFAR10.base_folder}."
        )
    dataset = tv_datasets.CIFAR10(root=str(data_dir), train=split == "train", download=download)
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2)
    return images.float().div_(255.0).contiguous(), torch.as_tensor(dataset.targets)


# --------------------------------------------------------------------------- registry

_MNIST_HOW = (
    "Either pass download=True (needs internet), point data_dir at a folder holding the IDX "
    "files, or pass carve_from='test' (or 'auto') to carve train and test deterministically "
    "from the split that is present."
)
_MNIST_IDX = _IdxFormat("MNIST", tv_datasets.MNIST)
_FASHION_IDX = _IdxFormat("FashionMNIST", tv_datasets.FashionMNIST)

IMAGE_SOURCES: dict[str, ImageSource] = {
    "digits": ImageSource(
        name="digits",
        shape=(1, 8, 8),
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.3053,),
        std=(0.3760,),
        splits=("all",),
        is_present=_digits_present,
        read=_read_digits,
    ),
    "mnist": ImageSource(
        name="mnist",
        shape=(1, 28, 28),
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
        splits=SPLITS,
        is_present=_MNIST_IDX.is_present,
        read=_MNIST_IDX.read,
        how_to_get=_MNIST_HOW,
    ),
    "fashion_mnist": ImageSource(
        name="fashion_mnist",
        shape=(1, 28, 28),
        class_names=tuple(tv_datasets.FashionMNIST.classes),
        mean=(0.2860,),
        std=(0.3530,),
        splits=SPLITS,
        is_present=_FASHION_IDX.is_present,
        read=_FASHION_IDX.read,
        how_to_get=_MNIST_HOW,
    ),
    "cifar10": ImageSource(
        name="cifar10",
        shape=(3, 32, 32),
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        splits=SPLITS,
        is_present=_cifar10_present,
        read=_read_cifar10,
        how_to_get=(
            "Either pass download=True (needs internet) or point data_dir at the folder that "
            "holds cifar-10-batches-py/."
        ),
    ),
}


def get_source(name: str) -> ImageSource:
    """The :class:`ImageSource` called ``name``; ``ValueError`` listing the names otherwise."""
    if name not in IMAGE_SOURCES:
        raise ValueError(
            f"unknown image dataset {name!r}; allowed values: {', '.join(IMAGE_SOURCES)}"
        )
    return IMAGE_SOURCES[name]


def available_splits(name: str, data_dir: str | Path = "data") -> list[str]:
    """The native splits of ``name`` whose files are present under ``data_dir``."""
    source = get_source(name)
    return [split for split in source.splits if source.is_present(split, Path(data_dir))]


def stratified_split(labels: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Partition ``range(len(labels))`` into (kept, held-out) indices, stratified by label.

    ``fraction`` of each class (rounded by scikit-learn) is held out; the permutation is drawn
    from ``seed``. Both index tensors are sorted, so the parts keep the original order.

    Args:
        labels: (n,) class labels.
        fraction: held-out share in (0, 1).
        seed: random seed for the shuffle.

    Returns:
        kept (n - m,) and held_out (m,) long index tensors.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    indices = np.arange(len(labels))
    kept, held_out = train_test_split(
        indices, test_size=fraction, stratify=labels.cpu().numpy(), random_state=seed
    )
    return torch.as_tensor(np.sort(kept)), torch.as_tensor(np.sort(held_out))


def _resolve_carve(source: ImageSource, carve_from: str | None, data_dir: Path) -> str | None:
    """Which native split to carve from (``None`` = use native splits)."""
    if len(source.splits) == 1:
        if carve_from not in (None, CARVE_AUTO, source.splits[0]):
            raise ValueError(
                f"{source.name} has the single split {source.splits[0]!r}; carve_from must be "
                f"None, 'auto' or {source.splits[0]!r}, got {carve_from!r}"
            )
        return source.splits[0]
    if carve_from == CARVE_AUTO:
        present = [s for s in source.splits if source.is_present(s, data_dir)]
        if len(present) == len(source.splits) or not present:
            return None  # all native splits, or nothing local (download or a clear error)
        return present[0]
    if carve_from is not None and carve_from not in source.splits:
        raise ValueError(
            f"carve_from for {source.name} must be one of None, 'auto', "
            f"{', '.join(repr(s) for s in source.splits)}; got {carve_from!r}"
        )
    return carve_from


def load_images(
    name: str,
    split: str = "train",
    data_dir: str | Path = "data",
    download: bool = False,
    carve_from: str | None = None,
    carve_test_fraction: float = DEFAULT_CARVE_TEST_FRACTION,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Load one split of an image dataset as tensors.

    Args:
        name: one of :data:`IMAGE_SOURCES` (``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``).
        split: ``"train"`` or ``"test"``.
        data_dir: root folder of the local files (torchvision layout, or the IDX folder itself).
        download: let torchvision download missing files (needs internet).
        carve_from: ``None`` (native splits), a native split name to carve train and test from,
            or ``"auto"`` (native splits when all are present, else carve); see module doc.
        carve_test_fraction: share of each class that a carve puts into ``test``.
        seed: seed of the carve's stratified shuffle.

    Returns:
        images float32 (n, C, H, W) in [0, 1] and labels long (n,).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    source = get_source(name)
    root = Path(data_dir)
    carve = _resolve_carve(source, carve_from, root)
    native = split if carve is None else carve
    try:
        images, labels = source.read(native, root, download)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} {source.how_to_get}".strip()) from None
    except (OSError, RuntimeError) as err:  # URLError, a refused or dropped download, ...
        if not download:
            raise
        raise DataUnavailableError(
            f"{name} {native} split is not in {root} and downloading it failed "
            f"({type(err).__name__}: {err}). Offline, put the files there yourself (or point "
            f"data_dir at them) and set download: false. {source.how_to_get}"
        ) from None
    if carve is None:
        return images, labels
    train_idx, test_idx = stratified_split(labels, carve_test_fraction, seed)
    chosen = train_idx if split == "train" else test_idx
    return images[chosen], labels[chosen]
