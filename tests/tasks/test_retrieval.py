"""Tests for tasks.retrieval: fixed-similarity evaluation, A-Hop training that beats its untrained
start, metrics against a direct computation, checkpoints with their memories, TensorBoard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from ahop.functional import retrieve
from ahop.objectives import fraction_correctly_retrieved
from ahop.separation import build_separation
from ahop.similarity import build_similarity
from datamodules.retrieval import RetrievalDataModule
from tasks.links import data_sizes
from tasks.retrieval import RetrievalTask

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(**kwargs) -> RetrievalDataModule:
    args = {"num_memories": 50, "queries_per_memory": 2, "batch_size": 32}
    return RetrievalDataModule(**{**args, **kwargs})


def _validate(make_trainer, task: RetrievalTask, datamodule) -> dict[str, float]:
    return make_trainer().validate(task, datamodule=datamodule, verbose=False)[0]


@pytest.mark.parametrize(
    ("similarity", "separation"),
    [("manhattan", "softmax"), ("euclidean", "max"), ("cosine", "softmax")],
)
def test_fixed_similarity_retrieves_uncorrupted_queries(
    tmp_path: Path, similarity: str, separation: str, make_trainer
) -> None:
    datamodule = _data(variant="identity")
    task = RetrievalTask(
        **data_sizes(datamodule), similarity=similarity, separation=separation, beta=1000.0
    )
    metrics = _validate(make_trainer, task, datamodule)
    assert metrics["val/acc"] == 1.0 and metrics["val/fraction_retrieved"] == 1.0
    assert metrics["val/mse"] < 1e-6
    test = make_trainer().test(task, datamodule=datamodule, verbose=False)[0]
    assert test["test/acc"] == 1.0


def test_metrics_match_a_direct_computation(tmp_path: Path, make_trainer) -> None:
    """Noisy queries, batches of unequal size: the logged means equal the per-query means."""
    datamodule = _data(variant="mixed", variant_kwargs={"difficulty": 0.7}, batch_size=23)
    task = RetrievalTask(
        **data_sizes(datamodule),
        similarity="euclidean",
        separation="softmax",
        beta=2.0,
        threshold=3.0,
    )
    metrics = _validate(make_trainer, task, datamodule)
    queries, sources = datamodule._datasets["val"].tensors
    memories = datamodule.memories
    weights = build_separation("softmax", beta=2.0)(
        build_similarity("euclidean")(memories, queries)
    )
    output = weights @ memories
    accuracy = float((weights.argmax(-1) == sources).float().mean())
    assert 0.3 < accuracy < 1.0  # the queries are hard enough for the check to mean something
    assert metrics["val/acc"] == pytest.approx(accuracy, abs=1e-6)
    fraction = float(fraction_correctly_retrieved(output, memories[sources], 3.0))
    assert metrics["val/fraction_retrieved"] == pytest.approx(fraction, abs=1e-6)
    mse = float((output - memories[sources]).pow(2).mean())
    assert metrics["val/mse"] == pytest.approx(mse, rel=1e-4)


def test_default_threshold_scales_with_the_image_size() -> None:
    task = RetrievalTask(similarity="dot", dim=64, num_memories=3)
    assert task.stage_metrics["val_metrics"]["fraction_retrieved"].threshold == pytest.approx(
        50 * 64 / 784
    )
    task = RetrievalTask(similarity="dot", dim=784, num_memories=3, threshold=10.0)
    assert task.stage_metrics["val_metrics"]["fraction_retrieved"].threshold == 10.0


def test_fit_with_a_fixed_similarity_says_nothing_to_fit(tmp_path: Path, make_trainer) -> None:
    task = RetrievalTask(**data_sizes(_data()), similarity="manhattan")
    with pytest.raises(ValueError, match=r"nothing to fit.*validate"):
        make_trainer(max_epochs=1).fit(task, datamodule=_data())


def test_adaptive_training_beats_the_untrained_similarity(tmp_path: Path, make_trainer) -> None:
    """Five epochs of association cross-entropy on fresh corruptions raise the accuracy on the
    fixed validation queries well above the untrained 0.1 (<k,q> - ||k-q||²) start."""
    torch.manual_seed(0)
    datamodule = _data(
        num_memories=100, queries_per_memory=8, batch_size=128, variant_kwargs={"difficulty": 0.5}
    )
    task = RetrievalTask(
        **data_sizes(datamodule),
        similarity_kwargs={"beta_dis": 0.1, "beta_dot": 0.1},
        num_sample_images=0,
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    )
    before = _validate(make_trainer, task, datamodule)
    initial = task.similarity.weights.detach().clone()
    make_trainer(max_epochs=5).fit(task, datamodule=datamodule)
    after = _validate(make_trainer, task, datamodule)
    assert not torch.equal(task.similarity.weights, initial)  # the footprint weights moved
    assert after["val/acc"] >= before["val/acc"] + 0.05, (before, after)
    assert after["val/loss"] < 0.5 * before["val/loss"]
    assert after["val/fraction_retrieved"] > before["val/fraction_retrieved"] + 0.2


def test_checkpoint_keeps_the_memories_and_reproduces_outputs(tmp_path: Path, make_trainer) -> None:
    datamodule = _data()
    task = RetrievalTask(
        **data_sizes(datamodule), similarity_kwargs={"beta_dis": 0.1, "beta_dot": 0.1}
    )
    trainer = make_trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(task, datamodule=datamodule)
    trainer.save_checkpoint(tmp_path / "task.ckpt")
    state = torch.load(tmp_path / "task.ckpt", weights_only=True)["state_dict"]
    torch.testing.assert_close(state["memories"], datamodule.memories)
    # no datamodule needed: sizes, image shape and memories come from the checkpoint
    loaded = RetrievalTask.load_from_checkpoint(tmp_path / "task.ckpt").eval()
    assert tuple(loaded.hparams.image_shape) == (1, 8, 8)
    torch.testing.assert_close(loaded.memories, datamodule.memories)
    queries = datamodule._datasets["val"].tensors[0][:10]
    with torch.no_grad():
        torch.testing.assert_close(loaded(queries), task.eval()(queries))
    # and it evaluates to the same metrics on the same data
    again = _validate(make_trainer, loaded, datamodule)
    assert again["val/acc"] == pytest.approx(_validate(make_trainer, task, datamodule)["val/acc"])


def test_other_memories_are_refused(tmp_path: Path, make_trainer) -> None:
    datamodule = _data()
    task = RetrievalTask(**data_sizes(datamodule), similarity="manhattan")
    _validate(make_trainer, task, datamodule)
    # same sizes, other stored digits: the query labels would point at the wrong patterns
    with pytest.raises(ValueError, match=r"memories \(50, 64\) differ from the datamodule"):
        _validate(make_trainer, task, _data(memory_seed=1))
    with pytest.raises(ValueError, match=r"memories \(50, 64\) differ from the datamodule's \(40"):
        _validate(make_trainer, task, _data(num_memories=40))
    # ... unless the new patterns are set on purpose
    other = _data(memory_seed=1)
    other.setup("validate")
    task.set_memories(other.memories)
    assert 0.5 < _validate(make_trainer, task, other)["val/acc"] <= 1.0
    with pytest.raises(ValueError, match=r"memories of shape \(50, 10\) do not fit"):
        task.set_memories(torch.zeros(50, 10))


def test_loaded_checkpoint_refuses_a_datamodule_with_other_memories(
    tmp_path: Path, make_trainer
) -> None:
    task = RetrievalTask(**data_sizes(_data()), similarity="dot")
    trainer = make_trainer()
    trainer.validate(task, datamodule=_data(), verbose=False)
    trainer.save_checkpoint(tmp_path / "dot.ckpt")
    loaded = RetrievalTask.load_from_checkpoint(tmp_path / "dot.ckpt")
    with pytest.raises(ValueError, match=r"memories .* differ from the datamodule"):
        _validate(make_trainer, loaded, _data(memory_seed=3))
    # ckpt_path route: setup copies the data's memories, the restore brings the old ones back
    fresh = RetrievalTask(**data_sizes(_data()), similarity="dot")
    with pytest.raises(ValueError, match=r"memories .* differ from the datamodule"):
        make_trainer().validate(
            fresh, datamodule=_data(memory_seed=3), ckpt_path=tmp_path / "dot.ckpt"
        )


def test_tensorboard_gets_the_retrieval_grid_and_metrics(tmp_path: Path, make_trainer) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb", default_hp_metric=False)
    task = RetrievalTask(
        **data_sizes(_data()),
        num_sample_images=5,
        similarity_kwargs={"beta_dis": 0.1, "beta_dot": 0.1},
    )
    trainer = make_trainer(max_epochs=1, limit_train_batches=2, logger=logger)
    trainer.fit(task, datamodule=_data())
    tags: dict[str, set[str]] = {"images": set(), "scalars": set()}
    shapes = []
    for event in (tmp_path / "tb").rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(event))
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
        if "val/retrieval" in accumulator.Tags()["images"]:
            image = accumulator.Images("val/retrieval")[-1]
            shapes.append((image.height, image.width))
    assert "val/retrieval" in tags["images"]
    assert {
        "val/acc",
        "val/fraction_retrieved",
        "val/mse",
        "val/loss",
        "val/acc_best",
        "train/acc",
        "train/loss_epoch",
        "val/energy_step_0",
        "val/energy_step_1",
    } <= tags["scalars"]
    # three rows (query / retrieved / source) of five 8x8 digits with 2-pixel padding
    assert shapes == [(3 * 10 + 2, 5 * 10 + 2)]


@pytest.mark.parametrize("similarity", ["dot", "manhattan"])
def test_multi_step_retrieval(tmp_path: Path, similarity: str, make_trainer) -> None:
    datamodule = _data(variant="noise", variant_kwargs={"sigma": 0.3})
    task = RetrievalTask(
        **data_sizes(datamodule), similarity=similarity, separation="softmax", beta=0.5, steps=3
    )
    metrics = _validate(make_trainer, task, datamodule)
    queries, sources = datamodule._datasets["val"].tensors
    expected = retrieve(
        queries,
        datamodule.memories,
        similarity=similarity,
        separation="softmax",
        beta=0.5,
        steps=3,
        return_details=True,
    )
    with torch.no_grad():
        torch.testing.assert_close(task(queries), expected.output)
    # the metrics judge the final step: its weights and its output
    accuracy = float((expected.weights.argmax(-1) == sources).float().mean())
    assert metrics["val/acc"] == pytest.approx(accuracy, abs=1e-6)
    one_step = RetrievalTask(
        **data_sizes(datamodule), similarity=similarity, separation="softmax", beta=0.5, steps=1
    )
    one_step_mse = _validate(make_trainer, one_step, datamodule)["val/mse"]
    assert metrics["val/mse"] != pytest.approx(one_step_mse)


def test_energy_of_every_step_is_logged_and_descends(tmp_path: Path, make_trainer) -> None:
    datamodule = _data(variant="noise", variant_kwargs={"sigma": 0.3})
    task = RetrievalTask(**data_sizes(datamodule), similarity="dot", beta=2.0, steps=3)
    metrics = _validate(make_trainer, task, datamodule)
    queries, _ = datamodule._datasets["val"].tensors
    expected = retrieve(
        queries, datamodule.memories, beta=2.0, steps=3, return_energies=True
    ).energies.mean(-1)
    logged = torch.tensor([metrics[f"val/energy_step_{t}"] for t in range(4)])
    torch.testing.assert_close(logged, expected.float(), rtol=1e-5, atol=1e-5)
    assert (logged.diff() <= 0).all()  # dot + softmax: CCCP
    # no energy for the normalised polynomial: nothing logged, unless it is asked for
    quiet = _validate(
        make_trainer,
        RetrievalTask(**data_sizes(datamodule), similarity="dot", separation="polynomial"),
        datamodule,
    )
    assert not any(name.startswith("val/energy") for name in quiet)
    with pytest.raises(ValueError, match="has no energy"):
        RetrievalTask(
            similarity="dot", separation="polynomial", log_energy=True, dim=3, num_memories=2
        )
    off = _validate(
        make_trainer,
        RetrievalTask(**data_sizes(datamodule), similarity="dot", log_energy=False),
        datamodule,
    )
    assert "val/energy_step_0" not in off


def test_uhop_stage_one_at_setup_then_fit_and_checkpoint(tmp_path: Path, make_trainer) -> None:
    """validate = U-Hop (stage I on the stored memories, no queries seen); fit also trains the
    feature map on variants; a checkpoint brings the trained map back."""
    datamodule = _data(variant_kwargs={"difficulty": 0.5})
    kwargs = {"similarity": "uhop", "beta": 0.5, "similarity_kwargs": {"separation_epochs": 30}}
    task = RetrievalTask(**data_sizes(datamodule), num_sample_images=0, **kwargs)
    _validate(make_trainer, task, datamodule)
    initial = build_similarity("uhop", dim=64).features.weight
    stage_one = task.similarity.features.weight.detach().clone()
    assert not torch.equal(stage_one, initial)
    trainer = make_trainer(max_epochs=1)
    # setup keeps the memories it already holds: no second stage I
    trainer.fit(task, datamodule=datamodule)
    assert not torch.equal(task.similarity.features.weight, stage_one)
    trainer.save_checkpoint(tmp_path / "uhop.ckpt")
    loaded = RetrievalTask.load_from_checkpoint(tmp_path / "uhop.ckpt").eval()
    queries = datamodule._datasets["val"].tensors[0][:10]
    with torch.no_grad():
        torch.testing.assert_close(loaded(queries), task.eval()(queries))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"similarity": "hamming"}, "allowed values: adaptive, cosine, dot, euclidean, manhattan"),
        ({"separation": "argmax"}, "allowed values: .*softmax"),
        ({"similarity_kwargs": {"beta_dist": 1.0}}, "no option.*beta_dist.*allowed: .*beta_dis"),
        ({"separation": "polynomial", "separation_kwargs": {"power": 3}}, "no option.*power"),
        ({"beta": 0.0}, "beta must be > 0"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"num_sample_images": -1}, "num_sample_images"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrievalTask(**kwargs)
