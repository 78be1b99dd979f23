"""Smoke test of benchmarks/tabular.py on a small synthetic CSV (any-CSV path, Hopfield models
trained through the CLI, baselines, report merge) and of its model-selection study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import benchmarks.tabular as bench


def small_csv(path: Path, rows: int = 160) -> Path:
    generator = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": generator.normal(size=rows),
            "colour": generator.choice(["red", "blue"], rows),
        }
    )
    frame["label"] = np.where(frame["x"] + (frame["colour"] == "red") > 0.5, "a", "b")
    frame.to_csv(path, index=False)
    return path


def test_any_csv_runs_every_kind_of_model_and_merges(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(bench, "OUT_DIR", tmp_path / "out")
    data = small_csv(tmp_path / "toy.csv")
    save = tmp_path / "toy_results.csv"
    args = [
        "--csv-path",
        str(data),
        "--target",
        "label",
        "--drop-columns",
        "id",
        "--seed-ids",
        "0",
        "--models",
        "retrieval-dot",
        "lookup-dot",
        "logreg",
        "hist-gb",
        "--override",
        "trainer.max_epochs=2",
        "model.init_args.embedding_dim=8",
        "--save",
        str(save),
        "--out",
        str(tmp_path / "toy.png"),
    ]
    bench.main(args)
    frame = pd.read_csv(save)
    assert set(frame["model"]) == {"retrieval-dot", "lookup-dot", "logreg", "hist-gb"}
    assert frame["test_acc"].between(0, 1).all()
    hopfield = frame[frame["model"].str.contains("-dot")]
    assert (hopfield["best_epoch"].between(0, 1)).all()  # through ahop cv, 2 epochs
    assert hopfield["setting"].str.startswith(str(tmp_path / "out" / "cv")).all()
    assert (tmp_path / "toy.png").is_file()
    cost = tmp_path / "toy_cost.csv"
    bench.main([*args[:8], "--models", "retrieval-dot", "--cost", "--cost-epochs", "2",
                "--override", "model.init_args.embedding_dim=8", "--save", str(cost)])  # fmt: skip
    timed = pd.read_csv(cost)
    assert list(timed["epochs"]) == [2] and (timed["epoch_s"] > 0).all()
    bench.main(["--report", str(save), str(cost), "--out", str(tmp_path / "merged.png")])
    out = capsys.readouterr().out
    assert "| toy | 1 |" in out and "W / T / L" in out and "x dot" not in out
    assert "s / epoch" in out


def test_selection_study_scores_rules_on_the_other_half() -> None:
    labels = torch.tensor([0, 1] * 20)
    right = torch.nn.functional.one_hot(labels, 2).float() * 0.8 + 0.1
    wrong = 1 - right
    # epoch 0 is right on every row, epoch 1 wrong on every row: every rule but "last" picks 0
    study = bench.selection_study([right, wrong], labels, repeats=3)
    assert study["sel_min_loss"] == study["sel_max_acc"] == 1.0
    assert study["sel_last"] == 0.0


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--csv-path needs --target"):
        bench.main(["--csv-path", str(tmp_path / "x.csv")])
    with pytest.raises(ValueError, match="unknown model 'knn'"):
        bench.model_overrides("knn")
