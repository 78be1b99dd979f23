"""benchmarks/mil.py: the pooled logistic-regression baselines use ``ahop cv``'s folds, and the
results table measures every model against mean-pool + logistic regression."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import benchmarks.mil as bench
from datamodules.mil import MILDataModule, make_synthetic_bags


def test_pooled_features_are_the_mean_and_max_of_each_bag() -> None:
    bags = make_synthetic_bags()
    mean, largest = bench.pooled_features(bags, "mean"), bench.pooled_features(bags, "max")
    assert mean.shape == largest.shape == (len(bags), bags.num_features)
    torch.testing.assert_close(torch.from_numpy(mean[3]), bags.bag(3).mean(dim=0))
    torch.testing.assert_close(torch.from_numpy(largest[3]), bags.bag(3).amax(dim=0))


def test_baseline_uses_the_folds_of_the_datamodule_and_learns(tmp_path: Path) -> None:
    results = bench.pooled_logistic_regression("synthetic", tmp_path, "mean", repeats=2, folds=3)
    assert [(r.repeat, r.fold) for r in results] == [(r, f) for r in range(2) for f in range(3)]
    for result in results:
        assert 0.0 <= result.metrics["test/acc"] <= 1.0
    mean_auroc = sum(r.metrics["test/auroc"] for r in results) / len(results)
    assert mean_auroc > 0.8  # the synthetic bags are separable by their mean instance
    # repeat r is the engine's fold seed base + r: its test bags are the datamodule's
    datamodule = MILDataModule("synthetic", str(tmp_path), num_folds=3, fold=1, seed=1)
    datamodule.setup("fit")
    assert results[4].test_ids == datamodule.split_ids("test")
    assert results[4].test_ids != results[1].test_ids  # a new seed draws new folds


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
