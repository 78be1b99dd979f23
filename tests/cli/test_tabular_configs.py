"""The tabular data-set configs: OpenML (parses; offline it stops at once with a one-line error)
and the offline shrutime / blastchar / UCI configs (one fast_dev_run each on ../shared/data)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

import train
from datamodules.tabular import TabularDataModule
from datamodules.tabular_sources import DataUnavailableError, SourceSpec, load_table
from tasks.tabular import TabularClassifier

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SHARED_TABULAR = ROOT.parent / "shared" / "data" / "tabular"
needs_shared_data = pytest.mark.skipif(
    not SHARED_TABULAR.is_dir(), reason=f"offline data folder {SHARED_TABULAR} absent"
)


def quiet_args(tmp_path: Path) -> list[str]:
    return [
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]


def test_openml_config_builds_without_touching_the_data(tmp_path: Path) -> None:
    config = yaml.safe_load((CONFIGS / "tabular_openml.yaml").read_text())
    assert config["data"]["init_args"]["source"] == "openml"
    cli = train.main(
        ["--config", str(CONFIGS / "tabular_openml.yaml"), *quiet_args(tmp_path)], run=False
    )
    assert isinstance(cli.datamodule, TabularDataModule)
    assert cli.datamodule.hparams.name == 1590
    assert cli.datamodule.hparams.data_dir == "data"
    assert isinstance(cli.model, TabularClassifier)
    assert cli.model.hparams.similarity == "adaptive"
    assert not cli.datamodule.datasets  # nothing loaded yet


def test_openml_config_offline_stops_with_one_line_error(tmp_path: Path, monkeypatch) -> None:
    # an empty data_dir: no OpenML cache, so the loader must ask the server
    spec = SourceSpec(name=1590, data_dir=str(tmp_path / "probe"))
    start = time.perf_counter()
    try:
        load_table("openml", spec)
    except DataUnavailableError:
        pass
    else:
        pytest.skip("the OpenML server is reachable here: this test covers the offline case")
    assert time.perf_counter() - start < 15
    args = [
        "train.py",
        "fit",
        "--config",
        str(CONFIGS / "tabular_openml.yaml"),
        "--data.init_args.data_dir",
        str(tmp_path / "data"),
        *quiet_args(tmp_path),
    ]
    monkeypatch.setattr(sys, "argv", args)
    monkeypatch.delenv("AHOP_DEBUG", raising=False)
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        train.run_cli()
    assert time.perf_counter() - start < 30
    message = str(exit_info.value)
    assert message.startswith("error: OpenML data set 1590 is not in the local cache")
    assert "source: csv" in message and "\n" not in message


OFFLINE_CONFIGS = {
    # config stem: encoded feature count, classes
    "tabular_shrutime": (13, 2),  # 8 numeric + Geography (3) + Gender (2)
    "tabular_blastchar": (45, 2),  # 4 numeric + 15 one-hot categorical columns
    "tabular_uci": (9, 2),  # UCI breast_cancer, fold 0
}


@needs_shared_data
@pytest.mark.parametrize("stem", sorted(OFFLINE_CONFIGS))
def test_offline_config_fast_dev_run(tmp_path: Path, stem: str) -> None:
    args = [
        "fit",
        "--config",
        str(CONFIGS / f"{stem}.yaml"),
        "--trainer.fast_dev_run",
        "true",
        "--data.init_args.data_dir",
        str(SHARED_TABULAR),
        *quiet_args(tmp_path),
    ]
    cli = train.main(args)
    assert cli.trainer.state.finished
    num_features, num_classes = OFFLINE_CONFIGS[stem]
    assert cli.model.hparams.num_features == num_features
    assert cli.model.hparams.num_classes == num_classes
    assert set(cli.trainer.callback_metrics) >= {"train/loss_step", "val/loss", "val/acc"}
