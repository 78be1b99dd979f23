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
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


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


def _pass_through(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return batch


def make_loader(
    dataset: IndexedTensorDataset,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A ``DataLoader`` over an :class:`IndexedTensorDataset` that fetches whole batches at once."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=_pass_through,
        generator=generator,
        num_workers=0,
    )
