"""``ahop cv`` / ``ahop search`` (ahop_cli.evaluate, ahop_cli.search, ahop_cli.selection) on tiny data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ahop_cli import cli as ahop_cli
from ahop_cli.evaluate import (
    FoldResult,
    Protocol,
    evaluate,
    format_table,
    new_run_dir,
    summarize,
)
from ahop_cli.search import SearchConfig
from ahop_cli.selection import InnerCurves, get_rule

ROOT = Path(__file__).resolve().parents[2]

TINY_MIL = {
    "seed_everything": 0,
    "trainer": {
        "max_epochs": 2,
        "callbacks": [
            {"class_path": "tests.cli.split_recorder.RecordSplits"},
            {
                "class_path": "lightning.pytorch.callbacks.EarlyStopping",
                "init_args": {"monitor": "val/loss", "patience": 5},
            },
        ],
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "runs", "name": "tiny", "default_hp_metric": False},
        },
    },
    "model": {
        "class_path": "tasks.mil.MILClassifier",
        "init_args": {
            "network": {
                "embedding_dim": 8,
                "num_heads": 2,
                "num_embedding_layers": 1,
                "similarity": "dot",
                "dropout": 0.0,
            },
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
        },
    },
    "data": {
        "class_path": "datamodules.mil.MILDataModule",
        "init_args": {"dataset": "synthetic", "num_folds": 3, "batch_size": 32},
    },
}
SPACE = {
    "trials": 2,
    "pruner": "none",
    "space": {
        "model.init_args.network.dropout": {"low": 0.0, "high": 0.5},
        "model.init_args.optimizer.init_args.lr": {"low": 1e-3, "high": 1e-2, "log": True},
    },
}


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch) -> tuple[list[str], Path]:
    """Args of the tiny MIL config, and the JSON-lines file that records every fit's ids."""
    config = tmp_path / "tiny_mil.yaml"
    config.write_text(yaml.safe_dump(TINY_MIL))
    log = tmp_path / "splits.jsonl"
    monkeypatch.setenv("AHOP_TEST_SPLIT_LOG", str(log))
    monkeypatch.delenv("AHOP_TEST_FAIL_FOLD", raising=False)
    return ["--config", str(config)], log


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_nested_search_never_sees_test_bags(tiny, tmp_path: Path) -> None:
    """2 trials x 2 inner folds in an outer fold; every fit (trials, selection, final) is checked
    by bag id against the fold's test bags, and the fold is tested exactly once."""
    args, log = tiny
    protocol = Protocol(inner_folds=2, search=SPACE)
    result = evaluate(args, protocol, output_dir=tmp_path / "cv", max_folds=1, log=None)
    assert [(r.repeat, r.fold) for r in result.folds] == [(0, 0)]
    records = _records(log)
    tests = [r for r in records if r["event"] == "test"]
    assert [(r["fold"], r["seed"]) for r in tests] == [(0, 0)]
    for fold in result.folds:
        test_ids = set(fold.test_ids)
        (tested,) = [r for r in tests if r["fold"] == fold.fold]
        assert set(tested["test"]) == test_ids and len(test_ids) in (33, 34)
        fits = [r for r in records if r["event"] == "fit" and r["fold"] == fold.fold]
        inner = [r for r in fits if r["inner_fold"] is not None]
        assert len(inner) == 2 * 2  # 2 trials x 2 inner folds; the selection reused the best
        for fit in fits:
            assert not test_ids & set(fit["train"]) and not test_ids & set(fit["val"])
        # the inner validation folds partition the outer training bags
        outer_train = set(inner[0]["train"]) | set(inner[0]["val"])
        assert set(inner[0]["val"]) | set(inner[1]["val"]) == outer_train
        assert len(outer_train | test_ids) == 100
        final = [r for r in fits if r["inner_fold"] is None]
        assert len(final) == 1 and set(final[0]["train"]) == outer_train and not final[0]["val"]
        assert fold.search["trials"] == {"complete": 2}
        assert set(fold.params) == set(SPACE["space"]) and fold.epochs in (1, 2)
    run_dir = result.run_dir
    for name in ("run.json", "results.md", "results.json", "folds.png", "search.db"):
        assert (run_dir / name).is_file(), name
    assert len(list((run_dir / "logs" / "search" / "r0_f00").iterdir())) == 2  # one per trial
    assert (run_dir / "logs" / "folds" / "r0_f00").is_dir()  # the final fit's TensorBoard
    summary = json.loads((run_dir / "results.json").read_text())["summary"]
    assert summary["test/auroc"]["n"] == 1
    assert "mean ± std (folds)" in (run_dir / "results.md").read_text()
    # the fold's final config runs with `ahop fit` as it is
    fit_config = run_dir / "folds" / "r0_f00" / "fit_config.yaml"
    saved = yaml.safe_load(fit_config.read_text())
    assert saved["trainer"]["max_epochs"] == result.folds[0].epochs
    assert saved["data"]["init_args"]["val_fraction"] == 0.0
    assert not any("EarlyStopping" in c["class_path"] for c in saved["trainer"]["callbacks"])
    cli = ahop_cli.main(
        [
            "fit",
            "--config",
            str(fit_config),
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path / "fit"),
        ],
        exit_on_error=False,
    )
    assert cli.trainer.current_epoch == result.folds[0].epochs


def test_resume_skips_finished_folds(tiny, tmp_path: Path, monkeypatch) -> None:
    args, log = tiny
    protocol = Protocol(selection="fixed")
    monkeypatch.setenv("AHOP_TEST_FAIL_FOLD", "1")  # dies in the middle of the run
    with pytest.raises(RuntimeError, match="interrupted in fold 1"):
        evaluate(args, protocol, output_dir=tmp_path / "cv", log=None)
    (run_dir,) = (tmp_path / "cv").iterdir()
    first = (run_dir / "folds" / "r0_f00" / "result.json").read_text()
    assert not (run_dir / "folds" / "r0_f01" / "result.json").exists()
    assert not (run_dir / "folds" / "r0_f01" / "claim").exists()  # released on the error
    monkeypatch.delenv("AHOP_TEST_FAIL_FOLD")
    log.unlink()
    lines: list[str] = []
    result = evaluate([], None, resume=run_dir, log=lines.append)
    assert [r.fold for r in result.folds] == [0, 1, 2]
    assert "skipped" in lines[0]
    assert {r["fold"] for r in _records(log)} == {1, 2}  # fold 0 was not trained again
    assert (run_dir / "folds" / "r0_f00" / "result.json").read_text() == first
    with pytest.raises(ValueError, match="other arguments"):
        evaluate([*args, "--trainer.max_epochs", "3"], None, resume=run_dir, log=None)


def test_protocol_without_a_rule_takes_the_tasks_default(tiny, tmp_path: Path) -> None:
    """MIL defaults to ``fixed`` (max_epochs on all training bags, no inner folds), recorded in
    run.json; a resume that leaves the rule unset keeps the run's; tabular defaults to its own
    validation rule, the other tasks to inner_cv."""
    args, log = tiny
    result = evaluate(args, Protocol(), output_dir=tmp_path / "cv", log=None, max_folds=1)
    assert result.protocol.selection == "fixed"
    (fold,) = result.folds
    assert fold.selection["rule"] == "fixed" and fold.epochs == TINY_MIL["trainer"]["max_epochs"]
    fits = [r for r in _records(log) if r["event"] == "fit"]
    assert [r["inner_fold"] for r in fits] == [None]  # one fit: no inner folds were trained
    saved = json.loads((result.run_dir / "run.json").read_text())
    assert saved["protocol"]["selection"] == "fixed"
    resumed = evaluate([], Protocol(), resume=result.run_dir, log=None)
    assert [r.fold for r in resumed.folds] == [0, 1, 2]
    with pytest.raises(ValueError, match="another protocol"):
        evaluate([], Protocol(selection="inner_cv"), resume=result.run_dir, log=None)
    from tasks.base import BaseTask
    from tasks.tabular import TabularClassifier

    assert BaseTask.cv_selection == "inner_cv" and TabularClassifier.cv_selection == "validation"


def test_invocations_never_share_a_folder(tmp_path: Path) -> None:
    folders = {new_run_dir(tmp_path, "same") for _ in range(20)}
    assert len(folders) == 20 and all(f.is_dir() for f in folders)


def test_cv_command_on_tabular_with_validation_rule(tmp_path: Path, capsys) -> None:
    """The same command evaluates a tabular config (the datamodule's folds, its validation split;
    inner_cv and searches on tabular data: tests/cli/test_tabular_configs.py)."""
    base = ["--config", str(ROOT / "configs" / "tabular.yaml"), "--trainer.max_epochs", "1"]
    base += ["--data.init_args.num_folds", "2", "--trainer.logger", "false"]
    argv = [
        "cv",
        *base,
        "--selection",
        "validation",
        "--output_dir",
        str(tmp_path),
        "--max_folds",
        "1",
    ]
    ahop_cli.run_cli(argv)
    out = capsys.readouterr().out
    assert "[1/2] repeat 0 fold 0: test/auroc" in out and "selection `validation`" in out


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (
            {"model.init_args.network.dropot": {"low": 0.0, "high": 0.5}},
            "did you mean model.init_args.network.dropout",
        ),
        ({"model.init_args.network.dropout": {"low": 0.5, "high": 0.5}}, "empty range"),
        ({"model.init_args.network.similarity": {"choices": []}}, "non-empty list"),
        ({"model.init_args.network.dropout": {"low": 0.0, "hi": 0.5}}, "unknown keys ['hi']"),
        (
            {"model.init_args.optimizer.init_args.lr": {"low": 0.0, "high": 0.1, "log": True}},
            "low > 0",
        ),
        ({"model.init_args": {"low": 0, "high": 1}}, "unknown option 'model.init_args'"),
    ],
)
def test_bad_search_spaces_get_one_line_errors(
    space: dict, expected: str, tiny, tmp_path: Path, monkeypatch
) -> None:
    args, _ = tiny
    search = tmp_path / "space.yaml"
    search.write_text(yaml.safe_dump({"trials": 1, "space": space}))
    argv = ["ahop", "cv", *args, "--search", str(search), "--output_dir", str(tmp_path / "cv")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        ahop_cli.run_cli()
    message = str(exit_info.value)
    assert message.startswith("error: ") and expected in message and "\n" not in message
    assert not (tmp_path / "cv").exists()  # rejected before any run folder or fit


def test_search_config_errors_and_types() -> None:
    config = SearchConfig.from_dict(
        {"space": {"a.b": {"low": 1, "high": 3}, "a.c": {"low": 1, "high": 3.0}, "a.d": ["x"]}}
    )
    assert [config.space[k].kind for k in ("a.b", "a.c", "a.d")] == ["int", "float", "categorical"]
    with pytest.raises(ValueError, match="unknown sampler"):
        SearchConfig.from_dict({"space": {"a": [1]}, "sampler": "grid"})
    with pytest.raises(ValueError, match="at least one"):
        SearchConfig.from_dict({"space": {}})


def test_inner_curves_choose_the_best_mean_epoch() -> None:
    curves = InnerCurves(
        folds=[
            [
                {"val/loss": 0.9, "val/auroc": 0.5},
                {"val/loss": 0.4, "val/auroc": 0.8},
                {"val/loss": 0.5, "val/auroc": 0.9},
            ],
            [
                {"val/loss": 0.7, "val/auroc": 0.6},
                {"val/loss": 0.6, "val/auroc": 0.7},
                {"val/loss": 0.3, "val/auroc": 0.9},
            ],
        ]
    )
    epochs, evidence = curves.choose("val/loss", "min")  # means 0.8, 0.5, 0.4
    assert epochs == 3 and evidence["val/loss"] == pytest.approx(0.4)
    assert curves.choose("val/auroc", "max")[0] == 3
    curves.folds[1] = curves.folds[1][:2]  # a shorter (pruned) curve truncates the mean
    assert curves.choose("val/loss", "min") == (
        2,
        pytest.approx({"val/loss": 0.5, "val/auroc": 0.75}),
    )
    with pytest.raises(ValueError, match="no validation values of 'val/acc'"):
        curves.choose("val/acc", "max")


def test_a_search_scores_trials_where_the_rule_deploys_them() -> None:
    """inner_cv deploys the best inner epoch, fixed the whole schedule: a trial whose loss is
    best early and worse at its end scores its best epoch for one, its last for the other."""
    curves = InnerCurves(folds=[[{"val/loss": 0.6}, {"val/loss": 0.2}, {"val/loss": 0.5}]] * 2)
    assert get_rule("inner_cv").trial_score(curves, "val/loss", "min") == (
        2,
        pytest.approx({"val/loss": 0.2}),
    )
    assert get_rule("fixed").trial_score(curves, "val/loss", "min") == (
        3,
        pytest.approx({"val/loss": 0.5}),
    )
    with pytest.raises(ValueError, match="no validation values"):
        get_rule("fixed").trial_score(InnerCurves(), "val/loss", "min")
    with pytest.raises(ValueError, match=r"'val/lss' were recorded \(metrics logged: val/loss\)"):
        get_rule("fixed").trial_score(curves, "val/lss", "min")  # a typo: no NaN score


def test_summary_over_folds_and_repeats() -> None:
    def result(repeat: int, fold: int, auroc: float) -> FoldResult:
        return FoldResult(repeat, fold, repeat, {"test/auroc": auroc}, 1, {}, 0.0)

    results = [result(0, 0, 0.8), result(0, 1, 1.0), result(1, 0, 0.6), result(1, 1, 0.6)]
    summary = summarize(results)["test/auroc"]
    assert summary["mean"] == pytest.approx(0.75) and summary["n"] == 4
    assert summary["std"] == pytest.approx(0.19148542155)  # sample std of the 4 folds
    assert summary["repeat_mean"] == pytest.approx(0.75)
    assert summary["repeat_std"] == pytest.approx(0.21213203435)  # of the means 0.9 and 0.6
    assert "mean ± std (repeats)" in format_table(results)


@pytest.mark.slow
def test_two_search_workers_share_one_journal_study(tiny, tmp_path: Path) -> None:
    """The documented two-worker example: two local processes, one journal file, one study."""
    import subprocess

    import optuna

    from ahop_cli.search import make_storage

    args, _ = tiny
    search = tmp_path / "space.yaml"
    search.write_text(yaml.safe_dump({**SPACE, "trials": 4}))
    journal = tmp_path / "study.journal"
    command = [sys.executable, "-m", "ahop_cli.cli", "search", *args, "--search", str(search)]
    command += ["--storage", f"journal:{journal}", "--study_name", "shared", "--inner_folds", "2"]
    command += ["--output_dir", str(tmp_path / "search"), "--threads", "1"]
    workers = [subprocess.Popen(command, cwd=ROOT) for _ in range(2)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0]
    study = optuna.load_study(study_name="shared", storage=make_storage(f"journal:{journal}"))
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 4 and len(list((tmp_path / "search").iterdir())) == 2
    for best in (tmp_path / "search").glob("*/best_config.yaml"):
        assert yaml.safe_load(best.read_text())["trainer"]["max_epochs"] in (1, 2)


def test_search_with_ensemble_rule_reuses_the_best_trials_models(tiny, tmp_path: Path) -> None:
    """``inner_cv_ensemble`` after a search: the fold's model is the mean of the best trial's
    inner models (kept from the search: no refit, no final fit), tested once on the test bags."""
    args, log = tiny
    protocol = Protocol(selection="inner_cv_ensemble", inner_folds=2, search=SPACE)
    result = evaluate(args, protocol, output_dir=tmp_path / "cv", max_folds=1, log=None)
    (fold,) = result.folds
    records = _records(log)
    fits = [r for r in records if r["event"] == "fit"]
    assert len(fits) == 2 * 2 and all(r["inner_fold"] is not None for r in fits)
    (tested,) = [r for r in records if r["event"] == "test"]
    assert set(tested["test"]) == set(fold.test_ids)
    assert all(not set(fold.test_ids) & set(r["train"] + r["val"]) for r in fits)
    members = torch.load(result.run_dir / "folds" / "r0_f00" / "ensemble.pt", weights_only=True)
    assert len(members) == 2 and fold.selection["rule"] == "inner_cv_ensemble"
    assert fold.search["best_epochs"] == fold.epochs and 0.0 <= fold.metrics["test/auroc"] <= 1.0


def test_cv_on_an_image_config_with_inner_cv(tmp_path: Path) -> None:
    """Image configs go through the same engine: k-fold over the digits pool, the epoch count by
    inner CV, a retrain on the whole training fold; test images never in a fit (id guard)."""
    args = ["--config", str(ROOT / "configs" / "image.yaml"), "--trainer.max_epochs", "1"]
    args += ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    args += ["--trainer.limit_test_batches", "1", "--data.init_args.num_folds", "3"]
    args += [
        "--model.init_args.network.embedding_dim",
        "16",
        "--model.init_args.network.num_layers",
        "1",
    ]
    args += ["--model.init_args.num_sample_images", "0", "--trainer.logger", "false"]
    result = evaluate(args, Protocol(inner_folds=2), output_dir=tmp_path, max_folds=1, log=None)
    (fold,) = result.folds
    assert fold.selection["rule"] == "inner_cv" and fold.epochs == 1
    assert fold.sizes["test"] == len(fold.test_ids) in (599, 600) and fold.sizes["val"] == 0
    assert fold.sizes["train"] + fold.sizes["test"] == 1797
    assert len(fold.selection["inner_curves"]) == 2 and "test/acc" in fold.metrics


def test_search_command_writes_a_config_that_fit_runs(tiny, tmp_path: Path) -> None:
    """`ahop search`: 2 trials x 2 inner folds; each trial's hparams in TensorBoard; the best
    trial's config runs with `ahop fit` as it is (all training bags, the chosen epochs)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args, log = tiny
    search = tmp_path / "space.yaml"
    search.write_text(yaml.safe_dump(SPACE))
    best = ahop_cli.EXTRA_COMMANDS["search"](
        [*args, "--search", str(search), "--inner_folds", "2", "--output_dir", str(tmp_path)]
    )
    fits = [r for r in _records(log) if r["event"] == "fit"]
    assert len(fits) == 4 and not [r for r in _records(log) if r["event"] == "test"]
    test_ids = set(fits[0]["train"]) | set(fits[0]["val"])
    trials = sorted((best.parent / "logs" / "search").iterdir())
    assert [t.name for t in trials] == ["trial_000", "trial_001"]
    for trial in trials:
        events = EventAccumulator(str(trial))
        events.Reload()
        assert "_hparams_/session_start_info" in events.summary_metadata
        assert "inner_mean/val/loss" in events.Tags()["scalars"]
    saved = yaml.safe_load(best.read_text())
    assert saved["data"]["init_args"]["val_fraction"] == 0.0
    # no --selection: the MIL task's own rule, fixed (max_epochs on all training bags)
    assert saved["trainer"]["max_epochs"] == TINY_MIL["trainer"]["max_epochs"]
    # ... and its trials were scored at that last epoch, the one the final model deploys
    assert f"{TINY_MIL['trainer']['max_epochs']} epochs" in best.read_text().splitlines()[0]
    with pytest.raises(SystemExit):  # a rule that cannot follow a search: argparse's error
        ahop_cli.EXTRA_COMMANDS["search"](
            [*args, "--search", str(search), "--selection", "inner_cv_ensemble"]
        )
    log.unlink()
    cli = ahop_cli.main(
        [
            "fit",
            "--config",
            str(best),
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path / "fit"),
        ],
        exit_on_error=False,
    )
    (final,) = _records(log)
    assert cli.trainer.current_epoch == saved["trainer"]["max_epochs"]
    assert set(final["train"]) == test_ids and not final["val"]  # every bag of the fold's training
    assert saved["best_k"] == 0 and (tmp_path / "fit" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_two_cv_workers_split_the_folds_of_one_run(tiny, tmp_path: Path) -> None:
    """`ahop cv --workers 2`: two local processes claim the folds of one run folder; every fold
    is trained and tested by exactly one of them (which one depends on their start-up times)."""
    import subprocess

    args, log = tiny
    command = [sys.executable, "-m", "ahop_cli.cli", "cv", *args, "--selection", "fixed"]
    command += ["--workers", "2", "--threads", "1", "--output_dir", str(tmp_path / "cv")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "cv").iterdir()
    summary = json.loads((run_dir / "results.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2]
    tests = [r for r in _records(log) if r["event"] == "test"]
    assert sorted(r["fold"] for r in tests) == [0, 1, 2]  # every fold tested exactly once
    fits = [r for r in _records(log) if r["event"] == "fit"]
    assert sorted(r["fold"] for r in fits) == [0, 1, 2]
