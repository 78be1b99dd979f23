"""The LSHN configs run through train.py (fast_dev_run), and bad options end in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ahop_cli import cli as ahop_cli
from datamodules.image_sources import available_splits

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SHARED = ROOT.parent / "shared" / "data"
HAS_MNIST = SHARED.is_dir() and bool(available_splits("mnist", SHARED))
# fast_dev_run with short retrieval (the configs use up to 1000 attractor steps)
QUICK = ["--model.init_args.eval_max_steps", "20", "--model.init_args.network.latent_dim", "16"]


def fast_args(config: str, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(CONFIGS / config),
        "--trainer.fast_dev_run",
        "true",
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
        *QUICK,
        *extra,
    ]


def test_offline_config_fast_dev_run(tmp_path: Path) -> None:
    cli = ahop_cli.main(fast_args("lshn.yaml", tmp_path))
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss_epoch"])
    assert torch.isfinite(metrics["val/half_mask/fraction_retrieved"])
    assert torch.isfinite(metrics["val/noise_0.05/ssim"])
    assert cli.trainer.checkpoint_callback.monitor == "val/fraction_retrieved"
    assert cli.model.hparams.image_shape == (1, 8, 8) and cli.model.hparams.num_memories == 100
    w = cli.model.model.attractor.weight_hh
    torch.testing.assert_close(w, w.t(), rtol=0, atol=0)


@pytest.mark.skipif(not HAS_MNIST, reason="needs MNIST IDX files in ../shared/data")
def test_mnist_config_fast_dev_run(tmp_path: Path) -> None:
    cli = ahop_cli.main(
        fast_args("lshn_mnist.yaml", tmp_path, "--data.init_args.data_dir", str(SHARED))
    )
    assert cli.model.hparams.dim == 784 and cli.model.criterion_threshold == 50.0
    assert torch.isfinite(cli.trainer.callback_metrics["val/half_mask/mse"])


def test_official_recipe_in_mnist_and_cifar10_configs(tmp_path: Path, capsys) -> None:
    """Both configs parse (no data needed: --print_config stops before the datamodule, whose
    sizes the task is built with) and carry the official hyperparameters."""
    for config, dataset in (("lshn_mnist.yaml", "mnist"), ("lshn_cifar10.yaml", "cifar10")):
        with pytest.raises(SystemExit) as done:
            ahop_cli.main([*fast_args(config, tmp_path), "--print_config"])
        assert not done.value.code
        printed = yaml.safe_load(capsys.readouterr().out)
        hp = printed["model"]["init_args"]
        assert printed["data"]["init_args"]["dataset"] == dataset
        network = hp["network"]
        assert (network["latent_dim"], network["schedule_period"], hp["threshold"]) == (
            16,
            500,
            50.0,
        )
        optimizer = hp["optimizer"]
        group = optimizer["init_args"]
        assert optimizer["class_path"] == "torch.optim.AdamW"
        assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, [0.9, 0.95], 1e-2)
