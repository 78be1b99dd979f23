"""``RetrievalDataModule``: stored patterns and corrupted queries for associative-memory retrieval.

The *memories* are ``num_memories`` patterns, flattened to ``(N, D)`` in ``[0, 1]``, drawn (with
``memory_seed``) from an image dataset of :mod:`datamodules.image_sources` (``digits``, offline,
the default; ``mnist``, ``fashion_mnist``, ``cifar10``) or generated at random (``binary``: 0/1
entries; ``uniform``: U[0, 1] entries, ``synthetic_dim`` features). A *query* is a variant of a
stored pattern made by an :mod:`ahop.variants` corruption; its label is the index of the memory
it came from (its *source*). Loaders yield ``(queries (B, D), sources (B,) long)``.

Seeds. Every query set is drawn with its own generator, seeded from ``(seed, stage, epoch)``:
validation and test queries are fixed (different for the two), while training queries are
corrupted afresh every epoch. The training sampler is a ``DistributedSampler`` (one replica
outside distributed runs), so Lightning keeps it under DDP and calls its ``set_epoch``, which
also tells the dataset which epoch's corruptions to serve; every rank draws the same corruptions
and reads its own shard of them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ahop.checks import check_int, check_positive_ints
from ahop.variants import VARIANTS, Variant, build_variant
from datamodules.cv import check_split
from datamodules.image_sources import IMAGE_SOURCES, load_images
from datamodules.tensor_data import IndexedTensorDataset, _pass_through, make_loader

#: seed streams of the query sets (mixed with ``seed`` and the epoch)
STREAMS = {"train": 0, "val": 1, "test": 2}

#: ``(num_memories, generator, options) -> (patterns (N, D) in [0, 1], image_shape (C, H, W))``
MemorySource = Callable[[int, torch.Generator, dict[str, Any]], tuple[Tensor, tuple[int, ...]]]


def stream_seed(seed: int, stream: int, epoch: int = 0) -> int:
    """A 63-bit seed for the query set ``(seed, stream, epoch)``; distinct tuples never collide
    in practice (``numpy.random.SeedSequence`` hashing), unlike ``seed + epoch`` schemes."""
    return int(np.random.SeedSequence([seed, stream, epoch]).generate_state(2, np.uint64)[0] >> 1)


def _image_memories(
    name: str, num_memories: int, generator: torch.Generator, options: dict[str, Any]
) -> tuple[Tensor, tuple[int, ...]]:
    images, _ = load_images(
        name,
        options["split"],
        options["data_dir"],
        download=options.get("download", False),
        carve_from=options["carve_from"],
    )
    if num_memories > len(images):
        raise ValueError(
            f"num_memories={num_memories} exceeds the {len(images)} images of the {name} "
            f"{options['split']!r} split; lower num_memories"
        )
    chosen = torch.randperm(len(images), generator=generator)[:num_memories].sort().values
    return images[chosen].flatten(1).contiguous(), tuple(images.shape[1:])


def _synthetic_shape(dim: int) -> tuple[int, int, int]:
    # square images when the dimension allows (784 -> 28x28), for masks by rows and image grids
    side = math.isqrt(dim)
    return (1, side, side) if side * side == dim else (1, 1, dim)


def _binary_memories(
    num_memories: int, generator: torch.Generator, options: dict[str, Any]
) -> tuple[Tensor, tuple[int, ...]]:
    dim = options["synthetic_dim"]
    patterns = torch.randint(0, 2, (num_memories, dim), generator=generator).float()
    return patterns, _synthetic_shape(dim)


def _uniform_memories(
    num_memories: int, generator: torch.Generator, options: dict[str, Any]
) -> tuple[Tensor, tuple[int, ...]]:
    dim = options["synthetic_dim"]
    return torch.rand(num_memories, dim, generator=generator), _synthetic_shape(dim)


#: where stored patterns come from, by ``dataset`` name
MEMORY_SOURCES: dict[str, MemorySource] = {
    **{name: partial(_image_memories, name) for name in IMAGE_SOURCES},
    "binary": _binary_memories,
    "uniform": _uniform_memories,
}


def make_queries(
    memories: Tensor, variant: Variant, per_memory: int, seed: int
) -> tuple[Tensor, Tensor]:
    """``per_memory`` variants of every memory: queries ``(N * per_memory, D)`` and their
    sources ``(N * per_memory,)`` (``0..N-1`` repeated), drawn with a generator seeded ``seed``."""
    check_int(per_memory, "queries per memory")
    sources = torch.arange(len(memories)).repeat(per_memory)
    generator = torch.Generator(device=memories.device).manual_seed(seed)
    return variant(memories[sources], generator), sources


class EpochVariantDataset(Dataset):
    """Variants of stored patterns, redrawn for every epoch (``set_epoch``), fetched by batch.

    Args:
        memories: stored patterns ``(N, D)``.
        variant: the corruption.
        per_memory: queries per memory and epoch.
        seed: base seed; epoch ``e`` uses ``stream_seed(seed, STREAMS["train"], e)``.
    """

    def __init__(self, memories: Tensor, variant: Variant, per_memory: int, seed: int) -> None:
        self.memories, self.variant = memories, variant
        self.per_memory, self.seed = per_memory, seed
        self.epoch = 0
        self._drawn: tuple[int, tuple[Tensor, Tensor]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Serve the corruptions of ``epoch`` from now on."""
        self.epoch = epoch

    def current(self) -> tuple[Tensor, Tensor]:
        """The epoch's queries ``(N * per_memory, D)`` and sources, drawn once per epoch."""
        if self._drawn is None or self._drawn[0] != self.epoch:
            seed = stream_seed(self.seed, STREAMS["train"], self.epoch)
            self._drawn = (
                self.epoch,
                make_queries(self.memories, self.variant, self.per_memory, seed),
            )
        return self._drawn[1]

    def __len__(self) -> int:
        return len(self.memories) * self.per_memory

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        queries, sources = self.current()
        return queries[index], sources[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        queries, sources = self.current()
        idx = torch.as_tensor(indices, dtype=torch.long)
        return queries[idx], sources[idx]


class EpochSampler(DistributedSampler):
    """Shuffling sampler that passes ``set_epoch`` on to its :class:`EpochVariantDataset`.

    It is a ``DistributedSampler`` (with the process group's size and rank when one exists, else
    one replica), so Lightning keeps it under DDP instead of wrapping it, and calls ``set_epoch``.
    """

    def __init__(self, dataset: EpochVariantDataset, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=True,
            seed=seed,
        )

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)


class RetrievalDataModule(LightningDataModule):
    """Stored patterns ``memories (N, D)`` and corrupted queries labelled with their source.

    Args:
        dataset: where the memories come from: ``digits`` (offline), ``mnist``,
            ``fashion_mnist``, ``cifar10`` (see :mod:`datamodules.image_sources`), or random
            ``binary`` / ``uniform`` patterns of ``synthetic_dim`` features.
        data_dir: root of the local image files (e.g. ``../shared/data`` for the offline MNIST).
        split: which split of an image dataset the memories are drawn from.
        carve_from: passed to :func:`~datamodules.image_sources.load_images` (``"test"`` when only
            MNIST's test split is on disk; leave ``None`` with the full dataset).
        num_memories: number of stored patterns ``N``.
        memory_seed: seed of the choice (or generation) of the memories.
        variant: an :mod:`ahop.variants` name (``identity``, ``noise``, ``mask``, ``bias``,
            ``mixed``); ``image_shape`` is passed on for image-aware variants.
        variant_kwargs: the variant's options (e.g. ``{difficulty: 0.5}`` or ``{sigma: 0.2}``).
        queries_per_memory: training queries per memory and epoch.
        eval_queries_per_memory: validation (and test) queries per memory.
        seed: seed of the corruptions and the training shuffle.
        batch_size: queries per batch.
        synthetic_dim: feature dimension of ``binary`` / ``uniform`` patterns.
        download: let torchvision download a missing image dataset (needs internet; done once,
            on rank 0, in ``prepare_data``).

    Attributes:
        memories: ``(N, D)`` float32 in ``[0, 1]`` (after ``setup``).
        image_shape: ``(C, H, W)`` of one pattern (``(1, s, s)`` or ``(1, 1, D)`` for synthetic).
        num_memories: ``N``.
        dim: ``D``. These three sizes load the memories when read before ``setup``.
    """

    #: no validation share to set: every split's queries are drawn from the same memories
    #: (:class:`datamodules.cv.CrossValidatable`)
    validation_option = None

    def __init__(
        self,
        dataset: str = "digits",
        data_dir: str = "data",
        split: str = "train",
        carve_from: str | None = None,
        num_memories: int = 100,
        memory_seed: int = 0,
        variant: str = "mixed",
        variant_kwargs: dict[str, Any] | None = None,
        queries_per_memory: int = 4,
        eval_queries_per_memory: int = 2,
        seed: int = 0,
        batch_size: int = 256,
        synthetic_dim: int = 784,
        download: bool = False,
    ) -> None:
        super().__init__()
        if dataset not in MEMORY_SOURCES:
            raise ValueError(
                f"unknown retrieval dataset {dataset!r}; allowed values: "
                f"{', '.join(MEMORY_SOURCES)}"
            )
        VARIANTS.get(variant)  # ValueError listing the variants for an unknown name
        check_positive_ints(
            num_memories=num_memories,
            queries_per_memory=queries_per_memory,
            eval_queries_per_memory=eval_queries_per_memory,
            batch_size=batch_size,
            synthetic_dim=synthetic_dim,
        )
        self.save_hyperparameters()
        self.memories: Tensor | None = None
        self._image_shape: tuple[int, ...] | None = None
        self._datasets: dict[str, Dataset] = {}

    # -- data -----------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download the image files once (rank 0) when ``download=True``."""
        hp = self.hparams
        if hp.download and hp.dataset in IMAGE_SOURCES:
            load_images(hp.dataset, hp.split, hp.data_dir, download=True, carve_from=hp.carve_from)

    def setup(self, stage: str | None = None) -> None:
        if self.memories is not None:
            return
        hp = self.hparams
        generator = torch.Generator().manual_seed(hp.memory_seed)
        memories, image_shape = MEMORY_SOURCES[hp.dataset](hp.num_memories, generator, dict(hp))
        self.memories = memories.float().contiguous()
        self._image_shape = tuple(int(s) for s in image_shape)
        variant = self.build_variant(hp.variant, hp.variant_kwargs)
        self._datasets = {
            "train": EpochVariantDataset(self.memories, variant, hp.queries_per_memory, hp.seed),
            **{
                stage: IndexedTensorDataset(
                    *make_queries(
                        self.memories,
                        variant,
                        hp.eval_queries_per_memory,
                        stream_seed(hp.seed, STREAMS[stage]),
                    )
                )
                for stage in ("val", "test")
            },
        }

    @property
    def fold_count(self) -> int:
        """One fold: the memories are fixed and every split queries all of them."""
        return 1

    def split_ids(self, split: str) -> list[str]:
        """Ids ``<split>/<position>`` of the queries of ``split`` (train | val | test) after
        ``setup``; each split's queries come from its own random stream, so no query is shared
        (the memories they corrupt are, by design: retrieval recalls stored patterns)."""
        check_split(split)
        return [f"{split}/{i}" for i in range(len(self._dataset(split)))]

    # -- sizes (what LightningCLI links to the task: tasks/links.py) -----------------------------
    def _ensure_ready(self) -> Tensor:
        """The memories, loaded now (``prepare_data`` + ``setup``) if they are not yet."""
        if self.memories is None:
            self.prepare_data()
            self.setup()
        return self._require_setup()

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one pattern (loads the memories if they are not yet)."""
        self._ensure_ready()
        return self._image_shape

    @property
    def num_memories(self) -> int:
        """``N``, the stored patterns (loads the memories if they are not yet)."""
        return int(self._ensure_ready().shape[0])

    @property
    def dim(self) -> int:
        """``D``, the size of a pattern (loads the memories if they are not yet)."""
        return int(self._ensure_ready().shape[1])

    def _require_setup(self) -> Tensor:
        if self.memories is None:
            raise RuntimeError("call setup() first: the memories are loaded there")
        return self.memories

    def build_variant(self, variant: str, variant_kwargs: dict[str, Any] | None = None) -> Variant:
        """The variant ``variant`` with options ``variant_kwargs`` (plus this data's
        ``image_shape`` for the image-aware variants)."""
        self._require_setup()
        accepted = set(inspect.signature(VARIANTS.get(variant)).parameters)
        kwargs = dict(variant_kwargs or {})
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ValueError(
                f"variant {variant!r} has no option(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(accepted)) or 'none'}"
            )
        if "image_shape" in accepted:
            kwargs.setdefault("image_shape", self._image_shape)
        return build_variant(variant, **kwargs)

    def queries_for(
        self,
        variant: str,
        variant_kwargs: dict[str, Any] | None = None,
        per_memory: int = 1,
        seed: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """Ad-hoc evaluation queries: ``per_memory`` variants of every memory.

        Returns:
            queries ``(N * per_memory, D)`` and their sources ``(N * per_memory,)`` long, drawn
            with a generator seeded ``seed`` (the same call gives the same queries).
        """
        memories = self._require_setup()
        return make_queries(memories, self.build_variant(variant, variant_kwargs), per_memory, seed)

    # -- loaders ----------------------------------------------------------------------------------

    def _dataset(self, stage: str) -> Dataset:
        self._require_setup()
        return self._datasets[stage]

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=EpochSampler(dataset, self.hparams.seed),
            collate_fn=_pass_through,
            num_workers=0,
        )

    def val_dataloader(self) -> DataLoader:
        return make_loader(self._dataset("val"), self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return make_loader(self._dataset("test"), self.hparams.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
