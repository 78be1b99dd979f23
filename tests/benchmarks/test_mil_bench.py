"""benchmarks/mil.py: the pooled logistic-regression baselines use ``ahop cv``'s folds
(``--baselines``, tests/cli/test_cv_baselines.py checks them by bag id), and the results table
measures every model against mean-pool + logistic regression."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import benchmarks.common as common
import benchmarks.mil as bench
from ahop_cli.cv.baselines import features
from datamodules.mil import MILDataModule


def test_pooled_features_are_the_mean_and_max_of_each_bag(tmp_path: Path) -> None:
    datamodule = MILDataModule("synthetic", str(tmp_path))
    datamodule.setup("fit")
    bags = datamodule.train_set
    (mean, _), (largest, _) = (
        features(datamodule, "train", "mean"),
        features(datamodule, "train", "max"),
    )
    assert mean.shape == largest.shape == (len(bags), bags.num_features)
    torch.testing.assert_close(torch.from_numpy(mean[3]), bags.bag(3).mean(dim=0))
    torch.testing.assert_close(torch.from_numpy(largest[3]), bags.bag(3).amax(dim=0))


def test_baselines_run_on_the_folds_of_the_first_model_and_learn(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    report = bench.main(
        ["--datasets", "synthetic", "--networks", "mean", "--skip-mnist-bags", "--data-dir",
         str(tmp_path), "--output-dir", str(tmp_path / "runs"), "--folds", "3", "--repeats", "2",
         "--selection", "fixed", "--trainer.max_epochs", "1"]
    )  # fmt: skip
    rows = report["datasets"]
    assert [r["model"] for r in rows] == [*bench.BASELINES.values(), "mean (baseline)"]
    assert [r["runs"] for r in rows] == [6, 6, 6]
    for row in rows:
        assert 0.0 <= row["summary"]["test/acc"]["mean"] <= 1.0
    assert rows[0]["summary"]["test/auroc"]["mean"] > 0.8  # separable by their mean instance
    assert (tmp_path / "out" / "mil.json").is_file()
    assert (tmp_path / "out" / "mil_datasets.png").is_file()


def test_table_reports_the_margin_over_mean_pool_regression() -> None:
    def row(model: str, auroc: float) -> dict:
        summary = {"test/auroc": {"mean": auroc, "std": 0.0, "n": 10, "repeats": 1}}
        summary["test/auroc"] |= {"repeat_mean": auroc, "repeat_std": 0.0}
        return {
            "dataset": "elephant",
            "model": model,
            "runs": 10,
            "summary": summary,
            "epochs": 0,
            "seconds_per_fold": 1.0,
        }

    table = bench.dataset_table(
        [row("mean-pool + logistic regression", 0.90), row("hopfield (adaptive)", 0.925)]
    )
    lines = table.splitlines()
    assert "Δ AUROC vs mean-pool LR" in lines[0]
    assert "| +2.5 |" in lines[-1] and "| +0.0 |" in lines[-2]


@pytest.mark.parametrize("networks", [["hopfield", "attention"], ["mean"]])
def test_model_runs_name_every_network(networks: list[str]) -> None:
    options = bench.parse_args(["--networks", *networks, "--similarities", "dot", "adaptive"])
    runs = bench._model_runs(options)
    labels = [label for label, _ in runs]
    if "hopfield" in networks:
        assert labels[:2] == ["hopfield (dot)", "hopfield (adaptive)"]
    assert all(any(n in label for label in labels) for n in networks)


def test_ahop_cv_options_and_fit_arguments_reach_every_run() -> None:
    options = bench.parse_args(
        ["--repeats", "5", "--selection", "fixed", "--trainer.max_epochs", "3"]
    )
    assert (options.protocol.repeats, options.protocol.selection) == (5, "fixed")
    assert options.fit_args == ["--trainer.max_epochs", "3"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--resume", "runs/x"])


def test_inner_variants_record_training_and_validation_curves(tmp_path: Path, monkeypatch) -> None:
    """benchmarks/mil_inner.py: inner folds only; the training curves come from
    ``CurveRecorder("train")``, one value per epoch like the validation curves."""
    import benchmarks.mil_inner as inner

    monkeypatch.setattr(common, "OUT", tmp_path)
    monkeypatch.setattr(inner, "RESULTS", tmp_path / "mil_inner.json")
    args = ["--datasets", "synthetic", "--variants", "default", "--outer-folds", "1"]
    rows = inner.main(
        [*args, "--inner-folds", "2", "--max-epochs", "2", "--data-dir", str(tmp_path)]
    )
    curves = rows[0]["curves"]
    assert len(curves["mean_train_loss_curve"]) == len(curves["mean_val_loss_curve"]) == 2
    assert 0.0 <= rows[0]["auroc_at_loss_epoch"] <= 1.0 and rows[0]["epochs"] in (1, 2)
    assert (tmp_path / "mil_curves.png").is_file()
    assert inner.main([*args, "--inner-folds", "2", "--max-epochs", "2"]) == rows  # measured: kept
