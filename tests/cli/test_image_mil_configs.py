"""Every image / MIL config runs through train.py (fast_dev_run); data errors are one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ahop_cli import cli as ahop_cli
from datamodules.image_sources import available_splits

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SHARED = ROOT.parent / "shared" / "data"
HAS_MNIST = SHARED.is_dir() and bool(available_splits("mnist", SHARED))
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason="needs MNIST IDX files in ../shared/data")


def needs_mil_file(name: str):
    present = any((SHARED / "mil" / f"{name}{s}").is_file() for s in (".mat", ".csv", ".csv.gz"))
    return pytest.mark.skipif(not present, reason=f"needs {name} in ../shared/data/mil")


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
        *extra,
    ]


# (config, data_dir override or None, marks)
CASES = [
    pytest.param("image.yaml", None, id="image"),
    pytest.param("image_mnist.yaml", SHARED, id="image_mnist", marks=needs_mnist),
    pytest.param("mil.yaml", SHARED / "mil", id="mil-musk1", marks=needs_mil_file("musk1")),
    pytest.param("mil_mnist_bags.yaml", SHARED, id="mil_mnist_bags", marks=needs_mnist),
]
#: every bag set of ../shared/data/mil through the one MIL config (`--data.init_args.dataset X`)
CASES += [
    pytest.param("mil.yaml", SHARED / "mil", id=f"mil-{name}", marks=needs_mil_file(name))
    for name in ("elephant", "musk2", "ucsb_breast_cancer")
]


@pytest.mark.parametrize(("config", "data_dir"), CASES)
def test_config_runs_fast_dev_run(
    config: str, data_dir: Path | None, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    extra = [] if data_dir is None else ["--data.init_args.data_dir", str(data_dir)]
    dataset = request.node.callspec.id.removeprefix("mil-")
    if config == "mil.yaml" and dataset != "musk1":
        extra += ["--data.init_args.dataset", dataset]
    cli = ahop_cli.main(fast_args(config, tmp_path, *extra))
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss_epoch"]) and torch.isfinite(metrics["val/loss"])
    if config.startswith("mil"):
        # MIL checkpoints and early stopping watch the validation loss
        assert cli.trainer.checkpoint_callback.monitor == "val/loss"
        assert cli.trainer.early_stopping_callback.monitor == "val/loss"
        assert "val/auroc" in metrics


def test_mil_config_reads_a_users_own_bag_file(tmp_path: Path) -> None:
    """The header's recipe: `dataset: csv` + `path` (musk layout), no other setting."""
    from datamodules.mil import make_synthetic_bags

    bags = make_synthetic_bags()
    rows = [
        ",".join([str(int(bags.labels[i])), f"bag{i}", *(f"{v:.5f}" for v in instance)])
        for i in range(len(bags))
        for instance in bags.bag(i).tolist()
    ]
    path = tmp_path / "my_bags.csv"
    path.write_text("\n".join(rows) + "\n")
    extra = ["--data.init_args.dataset", "csv", "--data.init_args.path", str(path)]
    cli = ahop_cli.main(fast_args("mil.yaml", tmp_path, *extra))
    assert cli.datamodule.num_features == bags.num_features
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])


def test_mil_default_falls_back_to_synthetic_bags(tmp_path: Path) -> None:
    empty = tmp_path / "no_files"
    empty.mkdir()
    cli = ahop_cli.main(fast_args("mil.yaml", tmp_path, "--data.init_args.data_dir", str(empty)))
    assert cli.datamodule.num_features == 16  # the synthetic set


def test_mil_default_finds_musk1_in_shared_data(tmp_path: Path) -> None:
    if not (SHARED / "mil" / "musk1.csv").is_file():
        pytest.skip("needs ../shared/data/mil/musk1.csv")
    cli = ahop_cli.main(
        fast_args("mil.yaml", tmp_path, "--data.init_args.data_dir", str(SHARED / "mil"))
    )
    assert cli.datamodule.num_features == 166


def test_cifar10_config_builds_its_model(tmp_path: Path) -> None:
    """No CIFAR-10 here: parse the config and run its network on a random batch instead."""
    args = fast_args("image_cifar10.yaml", tmp_path, "--data.init_args.download", "false")[1:]
    cli = ahop_cli.main(args, run=False)
    assert cli.datamodule.augment and cli.datamodule.image_shape == (3, 32, 32)
    hparams = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    task = type(cli.model)(
        **{
            **hparams,
            "image_shape": cli.datamodule.image_shape,
            "num_classes": cli.datamodule.num_classes,
            # the config's width, scaled down for a quick forward pass
            "network": {**hparams["network"], "embedding_dim": 24, "num_heads": 6},
        }
    )
    assert task(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.skipif(
    not (ROOT / "data" / "cifar-10-batches-py").is_dir(), reason="needs CIFAR-10 in data/"
)
def test_cifar10_config_fast_dev_run(tmp_path: Path) -> None:
    cli = ahop_cli.main(
        fast_args("image_cifar10.yaml", tmp_path, "--data.init_args.download", "false")
    )
    metrics = cli.trainer.callback_metrics
    assert cli.model.hparams.image_shape == (3, 32, 32) and cli.model.hparams.num_classes == 10
    assert torch.isfinite(metrics["train/loss_epoch"]) and torch.isfinite(metrics["val/loss"])


def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def _one_line_error(monkeypatch, runner, argv: list[str]) -> str:
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runner()
    message = str(exit_info.value)
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_cv_reports_bad_data_in_one_line(tmp_path: Path, monkeypatch) -> None:
    """The evaluation command reports like the CLI (the CLI's cases: tests/cli/test_bad_inputs.py)."""
    _write_csv(tmp_path / "musk1.csv", ["1,a,1.0,2.0", "1,a,nan,2.0", "0,b,0.5,0.1"])
    argv = ["ahop", "cv", "--config", str(CONFIGS / "mil.yaml"), "--trainer.logger", "false"]
    argv += ["--data.init_args.data_dir", str(tmp_path), "--data.init_args.dataset", "musk1"]
    argv += ["--output_dir", str(tmp_path / "cv")]
    assert "NaN" in _one_line_error(monkeypatch, ahop_cli.run_cli, argv)


def test_cli_built_mil_datamodule_gives_other_folds(tmp_path: Path) -> None:
    """LightningCLI stores private `_class_path` entries in hparams; with_fold must skip them."""
    empty = tmp_path / "no_files"
    empty.mkdir()
    args = fast_args("mil.yaml", tmp_path, "--data.init_args.data_dir", str(empty))[1:]
    cli = ahop_cli.main(args, run=False)
    other = cli.datamodule.with_fold(3)
    assert other.hparams.fold == 3 and other.hparams.dataset == cli.datamodule.hparams.dataset
    cli.datamodule.setup("fit")
    other.setup("fit")
    assert not set(other.split_indices()[1].tolist()) & set(
        cli.datamodule.split_indices()[1].tolist()
    )


def test_fit_with_csv_logger(tmp_path: Path) -> None:
    """Loggers other than TensorBoard take hparams without metrics."""
    args = fast_args("image.yaml", tmp_path)
    args[args.index("--trainer.logger") + 1] = "lightning.pytorch.loggers.CSVLogger"
    args[args.index("--trainer.fast_dev_run") + 1] = "false"  # fast_dev_run drops loggers
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    limits += ["--trainer.limit_val_batches", "1"]
    cli = ahop_cli.main([*args, *limits, "--trainer.logger.save_dir", str(tmp_path / "csv")])
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])
    assert list((tmp_path / "csv").rglob("hparams.yaml"))
