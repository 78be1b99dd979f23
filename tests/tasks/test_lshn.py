"""Tests for tasks.lshn.LSHNTask: full-batch training wiring, symmetric W_hh, per-cue metrics,
Hebbian option, TensorBoard trajectory / energy, checkpoint reload and argument errors."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from ahop.lshn import scale_to_pm1
from datamodules.retrieval import RetrievalDataModule
from tasks.links import data_sizes
from tasks.lshn import CUE_METRICS, LSHNTask, energy_figure

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def make_trainer(make_trainer):
    """The shared quiet Trainer, for one epoch and without the sanity check by default."""
    return functools.partial(make_trainer, max_epochs=1, num_sanity_val_steps=0)


FAST = {"network": {"latent_dim": 16}, "eval_max_steps": 30, "noise_sigmas": (0.1, 0.5)}


def _data(num_memories: int = 12, steps_per_epoch: int = 3) -> RetrievalDataModule:
    return RetrievalDataModule(
        dataset="digits",
        num_memories=num_memories,
        variant="identity",
        queries_per_memory=steps_per_epoch,
        eval_queries_per_memory=1,
        batch_size=num_memories,
    )


def test_fit_trains_full_batch_keeps_w_hh_symmetric_and_logs_every_cue(
    tmp_path: Path, make_trainer
) -> None:
    torch.manual_seed(0)
    datamodule = _data()
    task = LSHNTask(
        **data_sizes(datamodule), **FAST, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2)
    )
    logger = TensorBoardLogger(str(tmp_path), name="lshn", default_hp_metric=False)
    trainer = make_trainer(logger=logger, max_epochs=2)
    trainer.fit(task, datamodule)

    assert trainer.global_step == 6  # 12 memories * 3 / batch 12 = 3 steps per epoch
    assert task.hparams.dim == 64 and task.hparams.image_shape == (1, 8, 8)
    torch.testing.assert_close(task.memories, datamodule.memories, rtol=0, atol=0)
    w = task.model.attractor.weight_hh
    assert isinstance(w, torch.nn.Parameter) and torch.count_nonzero(w) > 0
    torch.testing.assert_close(w, w.t(), rtol=0, atol=0)

    metrics = trainer.callback_metrics
    cues = ["half_mask", "noise_0.1", "noise_0.5", "query"]
    assert task.cue_names == cues
    for cue in cues:
        for name in CUE_METRICS:
            value = metrics[f"val/{cue}/{name}"]
            assert torch.isfinite(value) and 0.0 <= value <= 1.0, (cue, name, value)
    assert "val/fraction_retrieved" in metrics and "val/fraction_retrieved_best" in metrics
    assert metrics["train/binarization_weight"] == 1.0  # official schedule, before step 500
    # threshold 50 * 64 / 784 for 8x8 digits
    assert task.criterion_threshold == pytest.approx(50 * 64 / 784)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event,) = list(Path(logger.log_dir).glob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(event), size_guidance={"images": 0})
    accumulator.Reload()
    images = accumulator.Tags()["images"]
    assert "val/trajectory" in images and "val/energy" in images
    grid = accumulator.Images("val/trajectory")[-1]
    # rows: 8 half-mask cues; columns: cue, states after 0, 1, 2, 5, 10, 20, 30 steps, sign,
    # stored image = 10; 8x8 tiles enlarged x4 to 32 px, plus make_grid's 2-px padding
    assert (grid.width, grid.height) == (10 * 34 + 2, 8 * 34 + 2)


def test_symmetrize_hook_is_what_keeps_w_hh_symmetric(tmp_path: Path, make_trainer) -> None:
    """Without the hook, AdamW's update of W_hh is not symmetric (the test above can fail)."""

    class NoSymmetrize(LSHNTask):
        def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
            pass

    torch.manual_seed(0)
    task = NoSymmetrize(
        **data_sizes(_data()), **FAST, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2)
    )
    make_trainer(limit_val_batches=0).fit(task, _data())
    w = task.model.attractor.weight_hh
    assert (w - w.t()).abs().max() > 1e-6


def test_hebbian_attractor_uses_clean_latents(tmp_path: Path, make_trainer) -> None:
    torch.manual_seed(0)
    datamodule = _data()
    task = LSHNTask(
        **data_sizes(datamodule), **{**FAST, "network": {"latent_dim": 16, "attractor": "hebbian"}}
    )
    trainer = make_trainer()
    trainer.fit(task, datamodule)
    names = {name for name, _ in task.named_parameters()}
    assert "model.attractor.weight_hh" not in names  # a buffer, never trained
    trainer.validate(task, datamodule, verbose=False)
    with torch.no_grad():
        z = task.model.encode(scale_to_pm1(task.memories))
    expected = z.t() @ z / (z.shape[0] * z.shape[1])
    torch.testing.assert_close(task.model.attractor.weight_hh, expected)
    assert torch.isfinite(trainer.callback_metrics["val/half_mask/fraction_retrieved"])


def test_checkpoint_reload_gives_the_same_retrieval(tmp_path: Path, make_trainer) -> None:
    torch.manual_seed(0)
    datamodule = _data()
    task = LSHNTask(
        **data_sizes(datamodule), **FAST, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2)
    )
    trainer = make_trainer(limit_val_batches=0)
    trainer.fit(task, datamodule)
    path = tmp_path / "lshn.ckpt"
    trainer.save_checkpoint(path)

    loaded = LSHNTask.load_from_checkpoint(path)
    torch.testing.assert_close(loaded.memories, task.memories, rtol=0, atol=0)
    queries = datamodule.memories[:4] * 0.8
    torch.testing.assert_close(loaded(queries), task(queries), rtol=0, atol=0)
    # evaluating the reloaded task on the same data works; on other stored images it refuses
    metrics = make_trainer().validate(loaded, datamodule, verbose=False)[0]
    assert "val/half_mask/mse" in metrics
    other = RetrievalDataModule(
        dataset="digits", num_memories=12, memory_seed=1, variant="identity", batch_size=12
    )
    with pytest.raises(ValueError, match="differ from the datamodule"):
        make_trainer().validate(LSHNTask.load_from_checkpoint(path), other, verbose=False)


def test_energy_figure_has_one_line_per_cue() -> None:
    figure = energy_figure([0, 1, 10], torch.randn(3, 4))
    assert len(figure.axes[0].lines) == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"network": {"attractor": "dense"}}, "allowed values: hebbian, learned"),
        ({"eval_dt": 0.0}, "eval_dt"),
        ({"eval_max_steps": 0}, "eval_max_steps"),
        ({"eval_tol": -1.0}, "eval_tol"),
        ({"noise_sigmas": (0.1, -0.2)}, "noise_sigmas"),
        ({"noise_sigmas": (0.1, 0.1)}, "distinct"),
        ({"threshold": 0.0}, "threshold"),
        ({"num_trajectory_images": -1}, "num_trajectory_images"),
        ({"image_shape": (8, 8)}, r"\(C, H, W\)"),
        (
            {
                "network": {"schedule": "cosine"},
                "dim": 4,
                "num_memories": 2,
                "image_shape": (1, 2, 2),
            },
            "schedule",
        ),
        ({"dim": 5, "num_memories": 2, "image_shape": (1, 2, 2)}, "does not match dim"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LSHNTask(**kwargs)


def test_memories_must_fit(tmp_path: Path) -> None:
    task = LSHNTask(network={"latent_dim": 8}, dim=4, num_memories=2, image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="do not fit"):
        task.set_memories(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        task.set_memories(torch.full((2, 4), 2.0))


def test_flat_synthetic_patterns_train_without_ssim(tmp_path: Path, make_trainer) -> None:
    """1 x D vectors (dataset uniform) are no images: every metric but SSIM is logged."""
    torch.manual_seed(0)
    datamodule = RetrievalDataModule(
        dataset="uniform",
        synthetic_dim=48,
        num_memories=8,
        variant="identity",
        queries_per_memory=2,
        eval_queries_per_memory=1,
        batch_size=8,
    )
    task = LSHNTask(**data_sizes(datamodule), **FAST)
    trainer = make_trainer()
    trainer.fit(task, datamodule)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["val/query/mse"])
    assert "val/query/ssim" not in metrics


def test_network_options_reach_the_lshn_and_unknown_ones_are_refused() -> None:
    sizes = {"dim": 4, "num_memories": 2, "image_shape": (1, 2, 2)}
    task = LSHNTask(network={"latent_dim": 6, "hidden_dim": 5, "train_steps": 3}, **sizes)
    assert task.model.latent_dim == 6 and task.model.train_steps == 3
    with pytest.raises(
        ValueError, match=r"LSHN has no option\(s\) latent_size; allowed: latent_dim"
    ):
        LSHNTask(network={"latent_size": 6}, **sizes)
    with pytest.raises(ValueError, match="input_dim: set by the task from the data"):
        LSHNTask(network={"input_dim": 4}, **sizes)
