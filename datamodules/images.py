"""``ImageDataModule``: image classification on digits, MNIST, FashionMNIST or CIFAR-10.

Images are held in memory as float32 in [0, 1] (see :mod:`datamodules.image_sources`) and every
batch is fetched with one indexing op. The per-batch transform runs on the whole batch tensor:
per-dataset normalisation (torchvision v2 ``Normalize``) and, on training batches only, the
CIFAR-10 augmentation (random crop with 4-pixel zero padding + horizontal flip).

The augmentation draws its crop offset and flip **per image**: torchvision's v2 ``RandomCrop``
applied to a batch tensor would draw one crop for the whole batch, which is a much weaker
augmentation. It uses torch's global RNG, so ``seed_everything`` makes it reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from lightning import LightningDataModule
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision.datasets.mnist import read_image_file
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import v2

from datamodules.image_sources import get_source, load_images, read_idx
from datamodules.splits import check_split_options, kfold_split, validation_split
from datamodules.tensor_data import IndexedTensorDataset, make_loader

# Datasets that are augmented by default (``augment=None``).
_AUGMENTED_BY_DEFAULT = frozenset({"cifar10"})


class RandomCropFlip(nn.Module):
    """Per-image random crop after zero padding, and random horizontal flip, on a whole batch.

    Args:
        padding: pixels of zero padding on each side before cropping back to (H, W).
        flip_p: probability of a horizontal flip per image.

    Shapes:
        images (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, padding: int = 4, flip_p: float = 0.5) -> None:
        super().__init__()
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.padding = padding
        self.flip_p = flip_p

    def forward(self, images: Tensor) -> Tensor:
        batch, channels, height, width = images.shape
        device = images.device
        pad = self.padding
        padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        # One gather over the flattened padded image: row/column offsets and the flip are all
        # folded into a (B, H*W) source index, which is much faster than 4-way fancy indexing.
        top = torch.randint(0, 2 * pad + 1, (batch,), device=device)
        left = torch.randint(0, 2 * pad + 1, (batch,), device=device)
        rows = top[:, None] + torch.arange(height, device=device)
        cols = left[:, None] + torch.arange(width, device=device)
        flip = torch.rand(batch, device=device) < self.flip_p
        cols = torch.where(flip[:, None], cols.flip(-1), cols)
        index = rows[:, :, None] * (width + 2 * pad) + cols[:, None, :]
        index = index.view(batch, 1, height * width).expand(batch, channels, height * width)
        return padded.flatten(2).gather(2, index).view(batch, channels, height, width)


class _TransformedImages(IndexedTensorDataset):
    """(images[, labels]) whose image batches pass through ``transform`` when fetched."""

    def __init__(self, images: Tensor, *rest: Tensor, transform: Callable[[Tensor], Tensor]):
        super().__init__(images, *rest)
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        images, *rest = self.tensors
        image = self.transform(images[index].unsqueeze(0)).squeeze(0)
        return (image, *(t[index] for t in rest))

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, ...]:
        images, *rest = super().__getitems__(indices)
        return (self.transform(images), *rest)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""Files of an image folder that ``predict_path`` reads (others are ignored)."""


def read_image_inputs(path: str | Path, shape: tuple[int, int, int]) -> tuple[Tensor, list]:
    """New images for ``predict``: a folder of image files or an IDX images file.

    Returns:
        images float32 (N, C, H, W) in [0, 1] (uint8 pixels / 255), and one id per image (the
        file name, or the position in the IDX file).

    Raises:
        FileNotFoundError / ValueError: no such path, no image in the folder, an unreadable file,
            or an image whose channels / size differ from ``shape`` (named; nothing is resized
            or converted silently).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predict_path: no file or folder {path}")
    channels, height, width = shape
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(
                f"predict_path {path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder"
            )
        images = []
        for file in files:
            try:
                image = decode_image(read_file(str(file)), mode=ImageReadMode.UNCHANGED)
            except (RuntimeError, ValueError) as error:
                raise ValueError(f"predict_path: cannot decode {file} ({error})") from None
            if image.shape[0] == 4 and channels == 3:  # RGBA -> RGB: alpha is not an input
                image = image[:3]
            if tuple(image.shape) != shape:
                raise ValueError(
                    f"predict_path: {file} is {tuple(image.shape)} (channels, height, width), the "
                    f"model takes {shape}; convert / resize the image to that"
                )
            images.append(image)
        batch, ids = torch.stack(images), [p.name for p in files]
    else:
        raw = read_idx(path, read_image_file)  # (N, H, W) uint8
        if channels != 1 or tuple(raw.shape[1:]) != (height, width):
            raise ValueError(
                f"predict_path {path}: IDX images of size {tuple(raw.shape[1:])}, the model takes "
                f"{shape}"
            )
        batch, ids = raw.unsqueeze(1), list(range(len(raw)))
    return batch.float() / 255.0, ids


class ImageDataModule(LightningDataModule):
    """Image classification data held in memory.

    Loaders yield ``(images float32 (B, C, H, W) normalised, labels long (B,))``.

    Args:
        dataset: ``digits`` (offline, bundled with scikit-learn), ``mnist``, ``fashion_mnist``
            or ``cifar10``.
        data_dir: root of the local files (see :func:`datamodules.image_sources.load_images`).
        download: let torchvision download missing files (needs internet).
        carve_from: ``None``, a native split or ``"auto"``: carve train/test from one split
            (e.g. ``"test"`` for the offline MNIST test files); see ``image_sources``.
        carve_test_fraction: share of each class that a carve puts into the test split.
        val_fraction: share of each class of the training split held out for validation
            (``0``: no validation images); unused with ``inner_folds``.
        num_folds: if set, stratified k-fold over the pool of the training and test splits:
            the test images are fold ``fold``, the rest train (see :mod:`datamodules.splits`);
            ``None``: the dataset's own (or carved) test split.
        fold: test fold in ``[0, num_folds)``.
        inner_folds: if set, the validation images are inner fold ``inner_fold`` of a
            stratified ``inner_folds``-fold split of the training images.
        inner_fold: the inner validation fold, in ``[0, inner_folds)``.
        batch_size: training batch size.
        eval_batch_size: batch size of val/test/predict loaders (default: ``batch_size``).
        normalize: subtract the dataset mean and divide by its std, per channel.
        augment: random crop (padding 4) + horizontal flip on training batches;
            ``None`` = on for CIFAR-10 only.
        seed: seed of the carve, fold and validation splits and of the training shuffle.
        predict_path: new images for ``predict``: a folder of image files (PNG, JPEG, ...; ids
            = file names) or an MNIST-style IDX images file (ids = positions); pixels / 255,
            then normalised as in training. Default: the test split.

    Image ids (:meth:`split_ids`) number the training split's images first, then the test split's.
    """

    #: the validation share option (:class:`datamodules.cv.CrossValidatable`)
    validation_option = "val_fraction"

    def __init__(
        self,
        dataset: str = "digits",
        data_dir: str = "data",
        download: bool = False,
        carve_from: str | None = None,
        carve_test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        num_folds: int | None = None,
        fold: int = 0,
        inner_folds: int | None = None,
        inner_fold: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        normalize: bool = True,
        augment: bool | None = None,
        seed: int = 0,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        source = get_source(dataset)
        check_split_options(num_folds, fold, inner_folds, inner_fold, val_fraction)
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError("batch_size and eval_batch_size must be >= 1")
        self.source = source
        self.image_shape: tuple[int, int, int] = source.shape
        self.num_classes: int = source.num_classes
        self.class_names: list[str] = list(source.class_names)
        self.augment = dataset in _AUGMENTED_BY_DEFAULT if augment is None else augment
        self._mean = torch.tensor(source.mean if normalize else (0.0,) * source.shape[0])
        self._std = torch.tensor(source.std if normalize else (1.0,) * source.shape[0])
        normalise = v2.Normalize(mean=list(self._mean.tolist()), std=list(self._std.tolist()))
        self.eval_transform: Callable[[Tensor], Tensor] = normalise
        self.train_transform: Callable[[Tensor], Tensor] = (
            v2.Compose([RandomCropFlip(padding=4), normalise]) if self.augment else normalise
        )
        self.train_set: _TransformedImages | None = None
        self.val_set: _TransformedImages | None = None
        self.test_set: _TransformedImages | None = None
        self.predict_set: tuple[_TransformedImages, list] | None = None
        self._ids: dict[str, Tensor] = {}

    @property
    def fold_count(self) -> int:
        """Folds a runner should iterate: ``num_folds``, or 1 for the fixed test split."""
        return self.hparams.num_folds or 1

    def _load(self, split: str) -> tuple[Tensor, Tensor]:
        hp = self.hparams
        return load_images(
            hp.dataset,
            split,
            data_dir=hp.data_dir,
            download=hp.download,
            carve_from=hp.carve_from,
            carve_test_fraction=hp.carve_test_fraction,
            seed=hp.seed,
        )

    def prepare_data(self) -> None:
        """Download the files once (rank 0) when ``download=True``."""
        if self.hparams.download:
            for split in ("train", "test"):
                self._load(split)

    def setup(self, stage: str | None = None) -> None:
        """Load the splits that ``stage`` needs (all of them for ``None``; with ``num_folds``
        every split, since the folds cut the pool of both)."""
        hp = self.hparams
        wants_fit = stage in (None, "fit", "validate") or hp.num_folds is not None
        new_inputs = stage == "predict" and hp.predict_path is not None  # not the test split
        wants_test = (stage in (None, "test", "predict") and not new_inputs) or (
            hp.num_folds is not None
        )
        if hp.num_folds is not None and self.test_set is None:
            train_images, train_labels = self._load("train")
            test_images, test_labels = self._load("test")
            images = torch.cat([train_images, test_images])
            labels = torch.cat([train_labels, test_labels])
            rest, test_idx = kfold_split(labels, hp.num_folds, hp.fold, hp.seed)
            self._ids["test"] = test_idx
            self.test_set = _TransformedImages(
                images[test_idx], labels[test_idx], transform=self.eval_transform
            )
        elif wants_test and self.test_set is None:
            images, labels = self._load("test")
            self._ids["test"] = len(self._load("train")[1]) + torch.arange(len(labels))
            self.test_set = _TransformedImages(images, labels, transform=self.eval_transform)
        if wants_fit and self.train_set is None:
            if hp.num_folds is None:
                images, labels = self._load("train")
                rest = torch.arange(len(labels))
            images, labels = images[rest], labels[rest]
            train_idx, val_idx = validation_split(
                labels, hp.seed, hp.val_fraction, hp.inner_folds, hp.inner_fold
            )
            self._ids["train"], self._ids["val"] = rest[train_idx], rest[val_idx]
            self.train_set = _TransformedImages(
                images[train_idx], labels[train_idx], transform=self.train_transform
            )
            self.val_set = _TransformedImages(
                images[val_idx], labels[val_idx], transform=self.eval_transform
            )

    def split_ids(self, split: str) -> list[int]:
        """Ids of the images in ``split`` (train | val | test), in loader order (see class doc)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; allowed: train, val, test")
        if split not in self._ids:
            raise RuntimeError("call setup() before asking for split ids")
        return self._ids[split].tolist()

    def _loader(self, dataset: _TransformedImages | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        hp = self.hparams
        if train:
            return make_loader(dataset, hp.batch_size, shuffle=True, seed=hp.seed)
        return make_loader(dataset, hp.eval_batch_size or hp.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def _predict_inputs(self) -> tuple[_TransformedImages, list]:
        if self.predict_set is None:
            if self.hparams.predict_path is None:
                self.setup("test")
                self.predict_set = (self.test_set, list(range(len(self.test_set))))
            else:
                images, ids = read_image_inputs(self.hparams.predict_path, self.image_shape)
                self.predict_set = (_TransformedImages(images, transform=self.eval_transform), ids)
        return self.predict_set

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._predict_inputs()[0], train=False)

    def prediction_ids(self) -> list:
        """One id per image ``predict_dataloader`` serves (file names for an image folder)."""
        return self._predict_inputs()[1]

    def export_metadata(self) -> dict:
        """What an exported graph's user must apply to raw images (written to metadata.json)."""
        channels = self.image_shape[0]
        normalize = self.hparams.normalize
        return {
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "normalization": {
                "mean": list(self.source.mean) if normalize else [0.0] * channels,
                "std": list(self.source.std) if normalize else [1.0] * channels,
                "applies_to": "pixels scaled to [0, 1] (uint8 / 255), per channel: "
                "(x - mean) / std",
            },
        }

    def denormalize(self, images: Tensor) -> Tensor:
        """Undo the normalisation for display: (B, C, H, W) -> (B, C, H, W) clamped to [0, 1]."""
        shape = (-1, 1, 1)
        mean = self._mean.to(images.device, images.dtype).view(shape)
        std = self._std.to(images.device, images.dtype).view(shape)
        return (images * std + mean).clamp(0.0, 1.0)
