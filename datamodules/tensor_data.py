"""In-memory tensor datasets that batch by index (no per-row Python in the hot loop).

``IndexedTensorDataset.__getitems__`` receives the whole list of indices a sampler chose for a
batch and answers with one fancy-indexing op per tensor. ``DataLoader`` calls it when present,
so ``make_loader`` pairs it with a pass-through collate. Because it is an ordinary
``DataLoader`` with an ordinary sampler, Lightning can still swap in a ``DistributedSampler``
under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


class IndexedTensorDataset(Dataset):
    """Tensors sharing their first dimension, indexed a whole batch at a time.

    Args:
        *tensors: tensors with the same length along dim 0 (features, targets, ...).
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("IndexedTensorDataset needs at least one tensor")
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(f"all tensors must have the same length, got {sorted(lengths)}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


class EpochShuffleSampler(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from a checkpoint sees the
    same batches as an uninterrupted one (a ``RandomSampler`` draws from the global RNG instead).
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


def _pass_through(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return batch


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A ``DataLoader`` that fetches whole batches at once through ``dataset.__getitems__``.

    Training loaders (``shuffle=True``) use an :class:`EpochShuffleSampler`, reproducible across
    resumes; no loader draws from the global random generator. Evaluation loaders built inside a
    distributed run get an unrepeated distributed sampler, so every sample is evaluated exactly
    once (Lightning's default sampler would pad the last ranks with duplicates and bias the
    synchronised metrics).
    """
    if shuffle:
        sampler: Sampler[int] | None = EpochShuffleSampler(len(dataset), seed)
    elif dist.is_available() and dist.is_initialized():
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
    else:
        sampler = None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        collate_fn=_pass_through,
        num_workers=0,
        # its own generator: starting an epoch's iterator then leaves the global RNG (dropout,
        # augmentation) untouched, so a run resumed from a checkpoint draws the same numbers
        generator=torch.Generator().manual_seed(seed),
    )
