"""Smoke tests of benchmarks/tabular.py on a small synthetic CSV (any-CSV path, Hopfield models
trained through the CV engine, baselines, report merge, validation-only tuning) and of
benchmarks/tabular_speed.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
    assert frame.loc[frame["model"] == "retrieval-dot", "val_acc"].between(0, 1).all()
    bench.main(["--report", str(save), "--out", str(tmp_path / "merged.png")])
    out = capsys.readouterr().out
    assert "| toy | 1 |" in out and "W / T / L" in out and "median fit seconds" in out


def test_tune_scores_validation_rows_only(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(bench, "OUT_DIR", tmp_path / "out")
    data = small_csv(tmp_path / "toy.csv")
    save = tmp_path / "tune.csv"
    bench.main(
        ["--csv-path", str(data), "--target", "label", "--drop-columns", "id", "--seed-ids", "0",
         "--tune", "--models", "retrieval-euclidean", "hist-gb",
         "--override", "trainer.max_epochs=1", "model.init_args.embedding_dim=8",
         "--grid", "model.init_args.context_size=4,8", "--save", str(save)]
    )  # fmt: skip
    frame = pd.read_csv(save)
    assert frame["test_acc"].isna().all()  # no test number is kept
    assert frame["val_acc"].between(0, 1).all()
    assert set(frame["setting"]) == {"context_size=4", "context_size=8", "(baseline)"}
    out = capsys.readouterr().out
    assert "Validation score" in out and "| context_size=4 | retrieval-euclidean |" in out
    assert ": val " in out and not re.search(r"test +[0-9]", out)  # no test number printed


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--csv-path needs --target"):
        bench.main(["--csv-path", str(tmp_path / "x.csv")])
    with pytest.raises(ValueError, match="unknown model 'knn'"):
        bench.model_overrides("knn")


def test_speed_benchmark_prints_the_table_and_saves_the_plot(tmp_path: Path, capsys) -> None:
    import benchmarks.tabular_speed as speed

    out = tmp_path / "speed.png"
    frame = speed.main(
        ["--rows", "300", "600", "--epochs", "2", "--columns", "4", "1", "--out", str(out),
         "--override", "model.init_args.embedding_dim=8"]
    )  # fmt: skip
    assert list(frame["rows"]) == [300, 600]
    assert (frame["epochs"] == 2).all() and (frame["epoch_s"] > 0).all()
    assert frame["train_rows"].tolist() == [195, 390]  # 65 % of the rows train
    assert {"hist-gb_fit_s", "us_per_row", "peak_mib"} <= set(frame.columns)
    assert out.is_file() and out.with_suffix(".csv").is_file()
    assert "| rows (train) |" in capsys.readouterr().out


def test_grid_values_split_outside_brackets() -> None:
    """A mapping value with commas (a scheduler's class_path + init_args) is one grid value."""
    plateau = "{class_path: torch.optim.lr_scheduler.ReduceLROnPlateau, init_args: {mode: max}}"
    points = bench.parse_grid([f"model.init_args.lr_scheduler={plateau},null", "a=1,2"])
    assert points == [
        (f"--model.init_args.lr_scheduler={plateau}", "--a=1"),
        (f"--model.init_args.lr_scheduler={plateau}", "--a=2"),
        ("--model.init_args.lr_scheduler=null", "--a=1"),
        ("--model.init_args.lr_scheduler=null", "--a=2"),
    ]
