"""The retrieval configs through train.py: fit ends with checkpoints, validate prints the
metrics, every config parses, MNIST configs run one batch, bad values are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ahop_cli import cli as ahop_cli
from datamodules.image_sources import available_splits

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SHARED = ROOT.parent / "shared" / "data"
HAS_MNIST = SHARED.is_dir() and bool(available_splits("mnist", SHARED))
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason="needs MNIST IDX files in ../shared/data")

RETRIEVAL_CONFIGS = sorted(p.name for p in CONFIGS.glob("retrieval*.yaml"))
#: configs of fixed similarities: nothing to fit, they are run with `validate`
VALIDATE_ONLY = {"retrieval_fixed.yaml", "retrieval_capacity.yaml", "retrieval_cifar10.yaml"}
#: a small, quick version of the offline data (the configs use 200 memories)
SMALL = ["--data.init_args.num_memories", "30", "--data.init_args.queries_per_memory", "2"]


def _args(command: str, config: str, tmp_path: Path, *extra: str) -> list[str]:
    return [
        command,
        "--config",
        str(CONFIGS / config),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]


def test_the_configs_are_all_here() -> None:
    assert {
        "retrieval.yaml",
        "retrieval_fixed.yaml",
        "retrieval_mnist.yaml",
        "retrieval_capacity.yaml",
        "retrieval_adaptive_mnist_hard.yaml",
        "retrieval_cifar10.yaml",
        "retrieval_uhop.yaml",
    } <= set(RETRIEVAL_CONFIGS)


def test_fit_default_config_ends_with_checkpoints(tmp_path: Path) -> None:
    cli = ahop_cli.main(
        _args("fit", "retrieval.yaml", tmp_path, "--trainer.max_epochs", "1", *SMALL)
    )
    names = {p.name for p in (tmp_path / "runs").rglob("*.ckpt")}
    assert "last.ckpt" in names and any(n.startswith("best-") for n in names)
    assert cli.trainer.checkpoint_callback.monitor == "val/acc"
    metrics = cli.trainer.callback_metrics
    assert {"val/acc", "val/fraction_retrieved", "val/mse", "train/loss_epoch"} <= set(metrics)
    # the checkpoint carries the memories, so `test` needs only its path
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    state = torch.load(last, weights_only=True)["state_dict"]
    torch.testing.assert_close(state["memories"], cli.datamodule.memories)
    tested = ahop_cli.main(
        _args("test", "retrieval.yaml", tmp_path, *SMALL, "--ckpt_path", str(last))
    ).trainer.callback_metrics
    assert 0.0 < float(tested["test/acc"]) <= 1.0


def test_validate_fixed_config_prints_the_metrics(tmp_path: Path, capsys) -> None:
    cli = ahop_cli.main(_args("validate", "retrieval_fixed.yaml", tmp_path, *SMALL))
    printed = capsys.readouterr().out
    for name in ("val/acc", "val/fraction_retrieved", "val/mse"):
        assert name in printed
    assert 0.5 < float(cli.trainer.callback_metrics["val/acc"]) <= 1.0


def test_uhop_config_validates_after_stage_one_and_fits(tmp_path: Path, capsys) -> None:
    small = [*SMALL, "--model.init_args.similarity_kwargs.separation_epochs", "10"]
    ahop_cli.main(_args("validate", "retrieval_uhop.yaml", tmp_path, *small))
    printed = capsys.readouterr().out
    assert "val/acc" in printed and "val/energy_step_1" in printed
    cli = ahop_cli.main(
        _args("fit", "retrieval_uhop.yaml", tmp_path, "--trainer.max_epochs", "1", *small)
    )
    assert cli.model.similarity.is_linear
    assert 0.0 < float(cli.trainer.callback_metrics["val/acc"]) <= 1.0
    assert any((tmp_path / "runs").rglob("last.ckpt"))


@pytest.mark.parametrize("config", RETRIEVAL_CONFIGS)
def test_every_config_parses(config: str, capsys) -> None:
    command = "validate" if config in VALIDATE_ONLY else "fit"
    with pytest.raises(SystemExit) as exit_info:
        ahop_cli.main([command, "--config", str(CONFIGS / config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "tasks.retrieval.RetrievalTask" in printed
    assert "datamodules.retrieval.RetrievalDataModule" in printed


@needs_mnist
@pytest.mark.parametrize(
    "config",
    ["retrieval_mnist.yaml", "retrieval_adaptive_mnist_hard.yaml", "retrieval_capacity.yaml"],
)
def test_mnist_configs_run_one_batch(config: str, tmp_path: Path) -> None:
    command = "validate" if config in VALIDATE_ONLY else "fit"
    extra = ["--trainer.fast_dev_run", "true", "--data.init_args.data_dir", str(SHARED)]
    extra += ["--data.init_args.num_memories", "40", "--data.init_args.batch_size", "32"]
    cli = ahop_cli.main(_args(command, config, tmp_path, *extra))
    assert cli.datamodule.image_shape == (1, 28, 28)
    assert torch.isfinite(cli.trainer.callback_metrics["val/acc"])
