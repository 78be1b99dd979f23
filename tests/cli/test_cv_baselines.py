"""``ahop cv --baselines``: the non-neural baselines run on exactly each fold's training and test
samples, and land in the fold results, the table and ``results.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ahop_cli.cv import baselines
from ahop_cli.cv.command import parse_args, protocol_from_options
from ahop_cli.evaluate import Protocol, evaluate
from datamodules.mil import MILDataModule
from datamodules.tabular import TabularDataModule

ROOT = Path(__file__).resolve().parents[2]


def mil_args(data_dir: Path) -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "mil.yaml"), "--data.init_args.dataset", "synthetic",
        "--data.init_args.data_dir", str(data_dir), "--trainer.max_epochs", "1",
        "--trainer.logger", "false", "--model.init_args.network.embedding_dim", "8",
    ]  # fmt: skip


def test_pooled_baselines_use_the_engines_folds_and_learn(tmp_path: Path) -> None:
    protocol = Protocol(
        repeats=2, folds=3, selection="fixed", baselines=["mean-pool-logreg", "max-pool-logreg"]
    )
    evaluation = evaluate(
        mil_args(tmp_path), protocol, output_dir=tmp_path / "cv", max_folds=5, log=None
    )
    folds = evaluation.baselines["mean-pool-logreg"]
    assert [(f.repeat, f.fold) for f in folds] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert sum(f.metrics["test/auroc"] for f in folds) / len(folds) > 0.8  # separable by mean
    # repeat r is fold seed base + r: its test bags are the datamodule's, the model's
    datamodule = MILDataModule("synthetic", str(tmp_path), num_folds=3, fold=1, seed=1)
    datamodule.setup("fit")
    assert folds[4].test_ids == evaluation.folds[4].test_ids == datamodule.split_ids("test")
    assert folds[4].test_ids != folds[1].test_ids  # a new seed draws new folds
    assert all("val/acc" not in f.metrics for f in folds)  # all non-test bags train
    table = evaluation.table().splitlines()
    assert table[-2].startswith("| **mean-pool-logreg** (same folds) | 5 folds |")
    saved = json.loads((evaluation.run_dir / "results.json").read_text())
    assert set(saved["baselines"]) == {"mean-pool-logreg", "max-pool-logreg"}
    assert saved["folds"][0]["baselines"]["max-pool-logreg"]["test/acc"] > 0.5


def test_baselines_read_the_final_fits_data_not_a_second_copy(tmp_path: Path, monkeypatch) -> None:
    loads = []
    original = MILDataModule.load
    monkeypatch.setattr(MILDataModule, "load", lambda self: loads.append(1) or original(self))

    def count(names: list[str]) -> int:
        loads.clear()
        protocol = Protocol(folds=3, selection="fixed", baselines=names)
        evaluate(mil_args(tmp_path), protocol, output_dir=tmp_path / "cv", max_folds=1, log=None)
        return len(loads)

    assert count(["mean-pool-logreg", "max-pool-logreg"]) == count([]) > 0


def test_row_baselines_score_validation_and_test_rows() -> None:
    datamodule = TabularDataModule(source="sklearn", name="breast_cancer", seed=3)
    datamodule.setup("fit")
    test_ids = set(datamodule.split_ids("test"))
    results = baselines.fold_baselines(
        ["logreg", "hist-gb"], datamodule, 3, test_ids, lambda dm, s: dm.split_ids(s)
    )
    for metrics in results.values():
        assert {"val/acc", "test/acc", "test/auroc", "test/f1", "seconds"} <= set(metrics)
        assert 0.85 < metrics["test/acc"] <= 1.0
    with pytest.raises(RuntimeError, match="other test samples"):
        baselines.fold_baselines(["logreg"], datamodule, 3, {-1}, lambda dm, s: dm.split_ids(s))


def test_the_command_line_and_one_line_errors(monkeypatch) -> None:
    options, rest = parse_args(["--baselines", "logreg", "hist-gb", "--config", "x.yaml"])
    assert protocol_from_options(options).baselines == ["logreg", "hist-gb"]
    assert rest == ["--config", "x.yaml"]
    with pytest.raises(ValueError, match="unknown baselines \\['knn'\\]; allowed values: logreg"):
        Protocol(baselines=["knn"])
    assert Protocol(**{"repeats": 2}) == Protocol(repeats=2, baselines=[])  # older run.json
    assert Protocol.from_dict({"baselines": "logreg"}).baselines == ["logreg"]
    with pytest.raises(ValueError, match=r"reads rows .* MILDataModule has no 'tensors'"):
        baselines.check_baselines(["logreg"], MILDataModule("synthetic"))
    monkeypatch.setattr(baselines, "installed", lambda name: name != "catboost")
    with pytest.raises(
        ValueError, match="needs the catboost package: pip install 'ahop\\[bench\\]'"
    ):
        baselines.check_baselines(["hist-gb", "catboost"], TabularDataModule())


def test_curve_recorder_of_the_training_metrics() -> None:
    """``CurveRecorder("train")``: the epoch means of ``train/*`` (no per-step values), once per
    training epoch; validation metrics are the default recorder's."""
    import torch

    from ahop_cli.selection import CurveRecorder

    metrics = {"train/loss_step": 0.9, "train/loss_epoch": 0.5, "train/auroc": 0.8, "val/loss": 1}
    values = {k: torch.tensor(v) for k, v in metrics.items()}
    trainer = type("T", (), {"callback_metrics": values, "sanity_checking": False})
    recorder = CurveRecorder("train")
    recorder.on_train_epoch_end(trainer, None)
    recorder.on_validation_end(trainer, None)
    assert recorder.epochs == [{"train/loss": 0.5, "train/auroc": pytest.approx(0.8)}]
    with pytest.raises(ValueError, match="stage must be train or val"):
        CurveRecorder("test")
