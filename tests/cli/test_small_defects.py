"""Small command-line promises: ``ahop cv --help`` names every selection rule, and a run without
a logger writes no ``config.yaml`` into the working folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ahop_cli.cli import main, run_cli
from ahop_cli.selection import SELECTION_RULES

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "tabular.yaml")
QUICK = ["--trainer.max_epochs", "1", "--trainer.enable_checkpointing", "false"]
QUICK += ["--trainer.enable_progress_bar", "false", "--trainer.limit_train_batches", "1"]
QUICK += ["--trainer.limit_val_batches", "1"]


def test_cv_help_lists_every_selection_rule(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli(["cv", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    assert "inner_cv_ensemble" in SELECTION_RULES
    for rule in SELECTION_RULES:
        assert rule in text


def test_no_logger_writes_no_config_into_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    main(["fit", "--config", CONFIG, "--trainer.logger", "false", *QUICK])
    assert sorted(p.name for p in work.iterdir()) == []


def test_no_logger_with_a_root_folder_writes_the_config_there(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "root"
    args = ["fit", "--config", CONFIG, "--trainer.logger", "false", *QUICK]
    main([*args, "--trainer.default_root_dir", str(root)])
    assert (root / "config.yaml").is_file()
    assert not (tmp_path / "config.yaml").exists()


def test_a_logger_still_gets_the_config_beside_its_logs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", CONFIG, *QUICK])
    assert len(list((tmp_path / "runs" / "tabular").glob("version_*/config.yaml"))) == 1
    assert not (tmp_path / "config.yaml").exists()
