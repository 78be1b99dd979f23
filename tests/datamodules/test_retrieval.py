"""Tests for datamodules.retrieval: memories, seeded queries labelled with their source,
per-epoch training corruptions, fixed evaluation sets, argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.image_sources import available_splits, load_images
from datamodules.retrieval import (
    MEMORY_SOURCES,
    RetrievalDataModule,
    make_queries,
    stream_seed,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
HAS_MNIST = SHARED.is_dir() and bool(available_splits("mnist", SHARED))


def _datamodule(**kwargs) -> RetrievalDataModule:
    args = {"dataset": "digits", "num_memories": 20, "queries_per_memory": 3, "batch_size": 16}
    datamodule = RetrievalDataModule(**{**args, **kwargs})
    datamodule.setup("fit")
    return datamodule


def _all(loader) -> tuple[torch.Tensor, torch.Tensor]:
    queries, sources = zip(*loader)
    return torch.cat(queries), torch.cat(sources)


def _train_epoch(datamodule: RetrievalDataModule, epoch: int) -> tuple[torch.Tensor, ...]:
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning does before every epoch
    queries, sources = _all(loader)
    order = sources.argsort(stable=True)  # the shuffle aside: compare the corruptions themselves
    return queries[order], sources[order]


def test_shapes_range_and_sources_index_the_memories() -> None:
    datamodule = _datamodule()
    memories = datamodule.memories
    assert memories.shape == (20, 64) and memories.dtype == torch.float32
    assert datamodule.image_shape == (1, 8, 8) and datamodule.dim == 64
    assert memories.min() >= 0 and memories.max() <= 1 and memories.max() > 0.5
    # the memories are real digits, chosen without repeats
    images, _ = load_images("digits", "train")
    pool = images.flatten(1)
    assert all((pool == m).all(-1).any() for m in memories)
    assert len(torch.unique(memories, dim=0)) == 20
    for stage, loader, size in [
        ("train", datamodule.train_dataloader(), 60),
        ("val", datamodule.val_dataloader(), 40),
        ("test", datamodule.test_dataloader(), 40),
    ]:
        queries, sources = _all(loader)
        assert queries.shape == (size, 64) and sources.dtype == torch.long, stage
        assert queries.min() >= 0 and queries.max() <= 1, stage
        assert torch.bincount(sources, minlength=20).tolist() == [size // 20] * 20, stage
        # each query is a corruption of its own source, closer to it than to most memories
        distance = torch.cdist(queries, memories)
        own = distance.gather(1, sources[:, None]).squeeze(1)
        assert (own < distance.median(dim=1).values).float().mean() > 0.9, stage


def test_same_seed_same_data_other_seeds_differ() -> None:
    first, again = _datamodule(), _datamodule()
    torch.testing.assert_close(first.memories, again.memories, rtol=0, atol=0)
    for stage in ("val", "test"):
        loader = getattr(first, f"{stage}_dataloader")()
        torch.testing.assert_close(_all(loader), _all(getattr(again, f"{stage}_dataloader")()))
    torch.testing.assert_close(_train_epoch(first, 3), _train_epoch(again, 3))
    assert not torch.equal(_datamodule(memory_seed=1).memories, first.memories)
    other = _all(_datamodule(seed=1).val_dataloader())[0]
    assert not torch.equal(other, _all(first.val_dataloader())[0])


def test_training_corruptions_change_per_epoch_evaluation_sets_are_fixed() -> None:
    datamodule = _datamodule()
    epoch0, epoch1 = _train_epoch(datamodule, 0), _train_epoch(datamodule, 1)
    assert torch.equal(epoch0[1], epoch1[1])  # same sources ...
    assert not torch.equal(epoch0[0], epoch1[0])  # ... fresh corruptions
    torch.testing.assert_close(_train_epoch(datamodule, 0), epoch0)  # epoch 0 again: same
    # the shuffle also changes with the epoch
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(0)
    order0 = _all(loader)[1]
    loader.sampler.set_epoch(1)
    assert not torch.equal(order0, _all(loader)[1])
    val, test = _all(datamodule.val_dataloader()), _all(datamodule.test_dataloader())
    torch.testing.assert_close(_all(datamodule.val_dataloader()), val)  # no redraw
    assert torch.equal(val[1], test[1]) and not torch.equal(val[0], test[0])
    assert not any(torch.equal(val[0], e[0][: len(val[0])]) for e in (epoch0, epoch1))


def test_identity_variant_queries_are_the_memories() -> None:
    datamodule = _datamodule(variant="identity", eval_queries_per_memory=2)
    queries, sources = _all(datamodule.val_dataloader())
    torch.testing.assert_close(queries, datamodule.memories[sources], rtol=0, atol=0)


def test_variant_options_and_image_shape_reach_the_variant() -> None:
    # a top-half mask needs the image shape: rows 0-3 of every 8x8 digit are hidden
    datamodule = _datamodule(variant="mask", variant_kwargs={"fraction": 0.5, "mode": "top"})
    queries, sources = _all(datamodule.val_dataloader())
    images = queries.view(-1, 8, 8)
    assert (images[:, :4] == 0).all()
    torch.testing.assert_close(images[:, 4:], datamodule.memories[sources].view(-1, 8, 8)[:, 4:])
    noisy = _datamodule(variant="noise", variant_kwargs={"sigma": 0.3}).val_dataloader()
    mild = _datamodule(variant="noise", variant_kwargs={"sigma": 0.05}).val_dataloader()
    memories = _datamodule().memories

    def error(loader) -> float:
        queries, sources = _all(loader)
        return float((queries - memories[sources]).abs().mean())

    assert error(noisy) > 2 * error(mild)


@pytest.mark.parametrize("dataset", ["binary", "uniform"])
def test_synthetic_memories(dataset: str) -> None:
    datamodule = _datamodule(dataset=dataset, synthetic_dim=36, num_memories=50)
    memories = datamodule.memories
    assert memories.shape == (50, 36) and datamodule.image_shape == (1, 6, 6)
    assert memories.min() >= 0 and memories.max() <= 1
    if dataset == "binary":
        assert set(memories.unique().tolist()) == {0.0, 1.0}
    else:
        assert len(memories.unique()) > 1000 and 0.4 < memories.mean() < 0.6
    # a dimension that is not a square gives one-row "images"
    assert _datamodule(dataset=dataset, synthetic_dim=10).image_shape == (1, 1, 10)
    queries, _ = _all(datamodule.val_dataloader())
    assert queries.shape == (100, 36)


def test_queries_for_is_seeded_and_labelled() -> None:
    datamodule = _datamodule()
    queries, sources = datamodule.queries_for("noise", {"sigma": 0.2}, per_memory=3, seed=5)
    assert queries.shape == (60, 64) and sources.tolist() == list(range(20)) * 3
    again = datamodule.queries_for("noise", {"sigma": 0.2}, per_memory=3, seed=5)
    torch.testing.assert_close((queries, sources), again, rtol=0, atol=0)
    other = datamodule.queries_for("noise", {"sigma": 0.2}, per_memory=3, seed=6)[0]
    assert not torch.equal(queries, other)
    masked = datamodule.queries_for("mask", {"mode": "bottom"}, seed=0)[0].view(-1, 8, 8)
    assert (masked[:, 4:] == 0).all()


def test_helpers_used_by_benchmarks() -> None:
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "binary", "uniform"} <= set(
        MEMORY_SOURCES
    )
    seeds = {
        stream_seed(s, stream, epoch) for s in (0, 1) for stream in (0, 1, 2) for epoch in (0, 1)
    }
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)
    memories = torch.rand(4, 9)
    from ahop.variants import build_variant

    queries, sources = make_queries(memories, build_variant("identity"), 2, seed=0)
    assert sources.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    torch.testing.assert_close(queries, memories[sources])
    with pytest.raises(ValueError, match=r"per memory"):
        make_queries(memories, build_variant("identity"), 0, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "svhn"}, "allowed values: digits, mnist, fashion_mnist, cifar10, binary"),
        ({"variant": "blur"}, "allowed values: .*mask.*mixed"),
        ({"num_memories": 0}, "num_memories must be an integer >= 1"),
        ({"queries_per_memory": 1.5}, "queries_per_memory must be an integer"),
        ({"batch_size": -1}, "batch_size"),
    ],
)
def test_bad_arguments_name_the_allowed_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrievalDataModule(**kwargs)


def test_bad_values_found_at_setup() -> None:
    with pytest.raises(ValueError, match=r"num_memories=5000 exceeds the \d+ images of the digits"):
        _datamodule(num_memories=5000)
    with pytest.raises(ValueError, match=r"has no option.*sigmaa.*allowed: .*sigma"):
        _datamodule(variant="noise", variant_kwargs={"sigmaa": 0.1})
    with pytest.raises(ValueError, match=r"difficulty must be in"):
        _datamodule(variant="mixed", variant_kwargs={"difficulty": 2.0})
    with pytest.raises(ValueError, match=r"split must be one of"):
        _datamodule(split="validation")
    with pytest.raises(RuntimeError, match=r"setup"):
        RetrievalDataModule().val_dataloader()


@pytest.mark.skipif(not HAS_MNIST, reason="needs MNIST IDX files in ../shared/data")
def test_mnist_memories_from_the_carved_test_split() -> None:
    datamodule = _datamodule(
        dataset="mnist", data_dir=str(SHARED), carve_from="test", num_memories=30
    )
    assert datamodule.memories.shape == (30, 784) and datamodule.image_shape == (1, 28, 28)
    assert datamodule.memories.min() >= 0 and datamodule.memories.max() == 1
    queries, sources = _all(datamodule.val_dataloader())
    assert queries.shape == (60, 784) and sources.max() == 29
