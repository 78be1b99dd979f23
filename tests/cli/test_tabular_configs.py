"""The tabular configs: OpenML (parses; offline it stops at once with a one-line error), the
offline shrutime / blastchar / UCI configs (one fast_dev_run each on ../shared/data), and the
retrieval task they share (memory from the training rows, lookup by name, export
parity with the baked memory; its bad options: tests/cli/test_bad_inputs.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import export
from ahop_cli import cli as ahop_cli
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


def test_openml_config_parses_without_touching_the_data(tmp_path: Path, capsys) -> None:
    """Every option of the config is valid, checked without the data (offline here: loading it
    would fail). Building the task does load the data: its sizes are the datamodule's, linked at
    instantiation."""
    config = yaml.safe_load((CONFIGS / "tabular_openml.yaml").read_text())
    assert config["data"]["init_args"]["source"] == "openml"
    args = ["fit", "--config", str(CONFIGS / "tabular_openml.yaml"), *quiet_args(tmp_path)]
    with pytest.raises(SystemExit) as done:
        ahop_cli.main([*args, "--print_config"])
    assert not done.value.code
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"] == "datamodules.tabular.TabularDataModule"
    assert printed["data"]["init_args"]["name"] == 1590
    assert printed["data"]["init_args"]["data_dir"] == "data"
    assert printed["model"]["class_path"] == "tasks.tabular.TabularClassifier"
    assert printed["model"]["init_args"]["network"] == "retrieval"


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
        ahop_cli.run_cli()
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
    cli = ahop_cli.main(args)
    assert cli.trainer.state.finished
    num_features, num_classes = OFFLINE_CONFIGS[stem]
    assert cli.model.hparams.num_features == num_features
    assert cli.model.hparams.num_classes == num_classes
    assert set(cli.trainer.callback_metrics) >= {"train/loss_step", "val/loss", "val/acc"}


TABULAR_CONFIGS = sorted(CONFIGS.glob("tabular*.yaml"))


def test_tabular_configs_share_one_model_section() -> None:
    # one model and one selection rule for every tabular config (the benchmark trains them all)
    sections = {p.name: yaml.safe_load(p.read_text())["model"] for p in TABULAR_CONFIGS}
    reference = sections["tabular.yaml"]
    assert reference["init_args"]["network"] == "retrieval"
    for name, section in sections.items():
        assert section == reference, name
        trainer = yaml.safe_load((CONFIGS / name).read_text())["trainer"]
        assert "callbacks" not in trainer, f"{name}: the task brings its early stopping"


def fast_dev_run(tmp_path: Path, *extra: str):
    args = [
        "fit",
        "--config",
        str(CONFIGS / "tabular.yaml"),
        "--trainer.fast_dev_run",
        "true",
        "--model.init_args.embedding_dim",
        "16",
        *quiet_args(tmp_path),
        *extra,
    ]
    return ahop_cli.main(args)


def test_retrieval_task_fast_dev_run_fills_the_memory(tmp_path: Path) -> None:
    cli = fast_dev_run(tmp_path)
    task = cli.model
    assert cli.trainer.state.finished
    assert task.hparams.network == "retrieval"
    assert task.network.memory_rows == cli.datamodule.split_sizes["train"]
    features, labels = cli.datamodule.tensors("train")
    assert torch.equal(task.network.memory_features, features)
    assert torch.equal(task.network.memory_labels, labels)
    assert task.monitor == "val/selection" and task.monitor_mode == "max"
    metrics = cli.trainer.callback_metrics  # accuracy first, the loss only breaks ties
    want = metrics["val/acc"] - 1e-4 * metrics["val/loss"]
    torch.testing.assert_close(metrics["val/selection"], want)
    stopping = [c for c in cli.trainer.callbacks if type(c).__name__ == "EarlyStopping"]
    assert len(stopping) == 1 and stopping[0].patience == 16
    assert stopping[0].monitor == cli.trainer.checkpoint_callback.monitor == "val/selection"


def test_lookup_network_by_name(tmp_path: Path) -> None:
    cli = fast_dev_run(
        tmp_path, "--model.init_args.network", "lookup", "--model.init_args.quantity", "8"
    )
    assert type(cli.model.network).__name__ == "TabularHopfieldClassifier"
    assert cli.model.network.blocks[0].quantity == 8


def categorical_csv(path: Path, rows: int = 240) -> Path:
    generator = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": generator.normal(40, 10, rows).round(1),
            "plan": generator.choice(["basic", "plus", "pro"], rows),
            "region": generator.choice(["north", "south", "east", "west"], rows),
            "spend": generator.gamma(2.0, 30.0, rows).round(2),
        }
    )
    score = (frame["plan"] == "pro") * 1.5 + (frame["age"] > 45) - (frame["region"] == "east")
    frame["churn"] = np.where(score + generator.normal(0, 0.5, rows) > 0.7, "yes", "no")
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("similarity", "embedding", "encoding", "ensemble", "deep"),
    [
        ("euclidean", "piecewise_linear", "embedding", 1, 1),
        ("adaptive", "periodic", "onehot", 1, 1),
        ("euclidean", "piecewise_linear", "onehot", 4, 1),  # TabM-mini members in the graph
        ("euclidean", "piecewise_linear", "onehot", 1, 2),  # a deep ensemble of two networks
    ],
)
def test_retrieval_export_matches_module_on_raw_rows(
    tmp_path: Path, similarity: str, embedding: str, encoding: str, ensemble: int, deep: int
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    from datamodules.tabular_preprocessing import TabularPreprocessor

    data = categorical_csv(tmp_path / "churn.csv")
    fit = [
        "fit",
        "--config",
        str(CONFIGS / "tabular.yaml"),
        "--trainer.max_epochs",
        "1",
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        "--data.init_args.source",
        "csv",
        "--data.init_args.csv_path",
        str(data),
        "--data.init_args.target",
        "churn",
        "--data.init_args.categorical_encoding",
        encoding,
        "--model.init_args.embedding_dim",
        "16",
        "--model.init_args.context_size",
        "12",
        "--model.init_args.similarity",
        similarity,
        "--model.init_args.feature_embedding",
        embedding,
        "--model.init_args.ensemble_size",
        str(ensemble),
        "--model.init_args.deep_ensemble_size",
        str(deep),
    ]
    cli = ahop_cli.main(fit)
    networks = cli.model.member_networks
    assert len(networks) == deep and all(net.members.k == ensemble for net in networks)
    if encoding == "embedding":
        assert cli.model.hparams.categorical_cardinalities == [4, 5]  # + the unknown code
    last = next((tmp_path / "run").rglob("last.ckpt"))
    out = tmp_path / "export"
    metadata = export.export(last, out)
    train_rows = cli.datamodule.split_sizes["train"]
    memory = json.loads((out / "metadata.json").read_text())["memory"]
    assert memory["rows"] == train_rows and memory["key_dim"] == 16
    assert memory["members"] == deep
    assert memory["bytes"]["baked_encodings"] == deep * train_rows * (16 + 32) * 4
    assert set(metadata["files"]) >= {"pt2", "onnx", "preprocessor"}

    task = TabularClassifier.load_from_checkpoint(last, map_location="cpu", weights_only=True)
    task.eval()
    rows = cli.datamodule.raw_features.iloc[cli.datamodule.split_indices["test"]]
    preprocessor = TabularPreprocessor.load(out / metadata["files"]["preprocessor"])
    program = torch.export.load(out / "model.pt2").module()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    for size in (1, 7, len(rows)):
        features = preprocessor(rows.iloc[:size])
        with torch.no_grad():
            want = task(features).softmax(-1)
        torch.testing.assert_close(program(features), want, rtol=0, atol=1e-5)
        (got,) = session.run(None, {"inputs": features.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=1e-5)


def test_retrieval_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    def fit(root: Path, epochs: int, *extra: str) -> Path:
        ahop_cli.main(
            [
                "fit",
                "--config",
                str(CONFIGS / "tabular.yaml"),
                "--trainer.max_epochs",
                str(epochs),
                "--model.init_args.embedding_dim",
                "16",
                "--model.init_args.early_stopping_patience",
                "null",
                *quiet_args(root),
                *extra,
            ]
        )
        return next(root.rglob("last.ckpt"))

    straight = fit(tmp_path / "straight", 3)
    first = fit(tmp_path / "first", 1)
    resumed = fit(tmp_path / "resumed", 3, "--ckpt_path", str(first))
    want = torch.load(straight, weights_only=True)["state_dict"]
    got = torch.load(resumed, weights_only=True)["state_dict"]
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)


def test_search_with_inner_folds_on_a_tabular_config(tmp_path: Path, monkeypatch) -> None:
    """``ahop cv`` with a search (inner_cv over inner_folds) runs on a tabular config: every fit
    (2 trials x 2 inner folds, the final one) is checked by row id against the fold's test rows."""
    from ahop_cli.evaluate import Protocol, evaluate

    log = tmp_path / "splits.jsonl"
    monkeypatch.setenv("AHOP_TEST_SPLIT_LOG", str(log))
    monkeypatch.delenv("AHOP_TEST_FAIL_FOLD", raising=False)
    args = ["--config", str(CONFIGS / "tabular.yaml"), "--data.init_args.name", "iris"]
    args += ["--data.init_args.num_folds", "3", "--trainer.max_epochs", "2"]
    args += ["--model.init_args.embedding_dim", "8", "--trainer.logger", "false"]
    args += ["--trainer.enable_progress_bar", "false"]
    args += ["--trainer.callbacks+=tests.cli.split_recorder.RecordSplits"]
    space = {"trials": 2, "pruner": "none", "space": {"model.init_args.dropout": {"low": 0.0, "high": 0.5}}}  # fmt: skip
    result = evaluate(
        args,
        Protocol(selection="inner_cv", inner_folds=2, search=space),
        output_dir=tmp_path / "cv",
        max_folds=1,
        log=None,
    )
    (fold,) = result.folds
    test_ids = set(fold.test_ids)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    fits = [r for r in records if r["event"] == "fit"]
    inner = [r for r in fits if r["inner_fold"] is not None]
    assert len(test_ids) == 50 and len(inner) == 2 * 2
    for fit in fits:
        assert not test_ids & set(fit["train"]) and not test_ids & set(fit["val"])
    outer_train = set(inner[0]["train"]) | set(inner[0]["val"])
    assert set(inner[0]["val"]) | set(inner[1]["val"]) == outer_train == set(range(150)) - test_ids
    (final,) = [r for r in fits if r["inner_fold"] is None]
    assert set(final["train"]) == outer_train and not final["val"]
    assert fold.search["trials"] == {"complete": 2} and 0 <= fold.metrics["test/acc"] <= 1


def test_label_smoothing_applies_to_the_training_loss_only() -> None:
    torch.manual_seed(0)
    features, labels = torch.randn(40, 5), torch.randint(0, 3, (40,))
    task = TabularClassifier(
        num_features=5,
        num_classes=3,
        num_numeric=5,
        categorical_cardinalities=[],
        embedding_dim=8,
        label_smoothing=0.3,
    )
    task.network.prepare(features, labels)
    task.eval()  # the same logits in both stages: no dropout, no own-row exclusion
    with torch.no_grad():
        logits = task.network(features, None)
        train_loss, _ = task.shared_step((features, labels), "train")
        val_loss, _ = task.shared_step((features, labels), "val")
    smoothed = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.3)
    torch.testing.assert_close(train_loss, smoothed)
    torch.testing.assert_close(val_loss, torch.nn.functional.cross_entropy(logits, labels))
    assert not torch.isclose(train_loss, val_loss)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        TabularClassifier(
            num_features=5,
            num_classes=3,
            num_numeric=5,
            categorical_cardinalities=[],
            label_smoothing=1.5,
        )


def test_search_command_on_a_tabular_config_keeps_its_validation_rule(tmp_path: Path) -> None:
    """``ahop search`` without --selection on a tabular config: the task's own rule
    (``validation``), so the best config trains on the training split with early stopping."""
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "trials": 2,
                "pruner": "none",
                "space": {"model.init_args.dropout": {"low": 0.0, "high": 0.5}},
            }
        )
    )
    args = ["--config", str(CONFIGS / "tabular.yaml"), "--data.init_args.name", "iris"]
    args += ["--trainer.max_epochs", "2", "--model.init_args.embedding_dim", "8"]
    args += ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    best = ahop_cli.EXTRA_COMMANDS["search"](
        [*args, "--search", str(space), "--inner_folds", "2", "--output_dir", str(tmp_path)]
    )
    header = best.read_text().splitlines()[:3]
    assert "early-stopped on its validation split" in header[2]
    saved = yaml.safe_load(best.read_text())
    assert saved["data"]["init_args"].get("val_size", 0.15) > 0  # the split is kept
    assert 0.0 <= saved["model"]["init_args"]["dropout"] <= 0.5


def test_auto_feature_embedding_follows_the_training_rows_and_survives_the_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    """``feature_embedding: auto``: piecewise-linear for a small training split, periodic
    (sigma 3) from AUTO_PERIODIC_MIN_ROWS training rows on; the training-row count is linked from
    the datamodule, so ``ahop test`` and ``ahop predict`` on new rows rebuild the same network
    from the checkpoint."""
    import ahop.feature_embeddings as embeddings

    cli = fast_dev_run(tmp_path / "small", "--model.init_args.feature_embedding", "auto")
    rows = cli.datamodule.split_sizes["train"]
    assert cli.model.hparams.num_training_rows == rows
    assert type(cli.model.network.embed).__name__ == "PiecewiseLinearFeatureEmbedding"
    monkeypatch.setattr(embeddings, "AUTO_PERIODIC_MIN_ROWS", rows)  # this split is "large"
    args = ["--model.init_args.feature_embedding", "auto", "--trainer.max_epochs", "1"]
    args += ["--model.init_args.embedding_dim", "16", *quiet_args(tmp_path / "large")]
    cli = ahop_cli.main(["fit", "--config", str(CONFIGS / "tabular.yaml"), *args])
    embed = cli.model.network.embed
    assert type(embed).__name__ == "PeriodicFeatureEmbedding"
    # frequencies drawn at sigma 3, not at the embedding's own 0.01
    assert 1.0 < float(embed.coefficients.detach().std()) < 5.0
    ckpt = next((tmp_path / "large").rglob("last.ckpt"))
    monkeypatch.setattr(embeddings, "AUTO_PERIODIC_MIN_ROWS", 10_000)  # the checkpoint decides
    tested = ahop_cli.main(
        ["test", "--config", str(CONFIGS / "tabular.yaml"), *args, "--ckpt_path", str(ckpt)]
    )
    assert type(tested.model.network.embed).__name__ == "PeriodicFeatureEmbedding"
    from sklearn.datasets import load_breast_cancer

    rows_csv = tmp_path / "new_rows.csv"
    load_breast_cancer(as_frame=True).data.head(5).to_csv(rows_csv, index=False)
    predict = ["predict", "--config", str(CONFIGS / "tabular.yaml"), *args]
    predict += ["--ckpt_path", str(ckpt), "--data.init_args.predict_path", str(rows_csv)]
    predicted = ahop_cli.main([*predict, "--predictions", str(tmp_path / "predictions.csv")])
    assert type(predicted.model.network.embed).__name__ == "PeriodicFeatureEmbedding"
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 5
    with pytest.raises(ValueError, match="'autoo'; allowed values: auto, linear, periodic"):
        TabularClassifier(
            num_features=5,
            num_classes=2,
            num_numeric=5,
            categorical_cardinalities=[],
            feature_embedding="autoo",
        )
    with pytest.raises(ValueError, match="feature_embedding 'auto' picks"):
        TabularClassifier(
            num_features=5,
            num_classes=2,
            num_numeric=5,
            categorical_cardinalities=[],
            feature_embedding="auto",
            feature_embedding_kwargs={"bins": 8},
        )


def test_auto_encoder_blocks_by_training_rows() -> None:
    """One residual block from AUTO_ENCODER_MIN_ROWS up to AUTO_PERIODIC_MIN_ROWS, else none."""
    from ahop.feature_embeddings import AUTO_PERIODIC_MIN_ROWS
    from ahop.tabular_retrieval import AUTO_ENCODER_MIN_ROWS, auto_encoder_blocks

    assert [auto_encoder_blocks(n) for n in (None, 0, AUTO_ENCODER_MIN_ROWS - 1)] == [0, 0, 0]
    assert auto_encoder_blocks(AUTO_ENCODER_MIN_ROWS) == 1
    assert auto_encoder_blocks(AUTO_PERIODIC_MIN_ROWS - 1) == 1
    assert auto_encoder_blocks(AUTO_PERIODIC_MIN_ROWS) == 0


def test_auto_encoder_blocks_from_the_config_and_the_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    """The configs' ``encoder_blocks: auto`` builds the block count of the training split's size,
    records it in the checkpoint (a reload does not re-decide), and the lookup network, which has
    no encoder blocks, ignores it."""
    import ahop.tabular_retrieval as retrieval

    cli = fast_dev_run(tmp_path / "small")  # breast cancer: a few hundred training rows
    assert cli.model.hparams.encoder_blocks == 0 and len(cli.model.network.encoder) == 0
    rows = cli.datamodule.split_sizes["train"]
    monkeypatch.setattr(retrieval, "AUTO_ENCODER_MIN_ROWS", rows)  # this split is "mid-size"
    args = ["--trainer.max_epochs", "1", "--model.init_args.embedding_dim", "16"]
    cli = ahop_cli.main(
        ["fit", "--config", str(CONFIGS / "tabular.yaml"), *args, *quiet_args(tmp_path / "mid")]
    )
    assert cli.model.hparams.encoder_blocks == 1 and len(cli.model.network.encoder) == 1
    ckpt = next((tmp_path / "mid").rglob("last.ckpt"))
    monkeypatch.setattr(retrieval, "AUTO_ENCODER_MIN_ROWS", 1_000)  # the checkpoint decides
    tested = ahop_cli.main(
        ["test", "--config", str(CONFIGS / "tabular.yaml"), *args, "--ckpt_path", str(ckpt)]
    )
    assert len(tested.model.network.encoder) == 1
    lookup = fast_dev_run(tmp_path / "lookup", "--model.init_args.network", "lookup")
    assert lookup.model.hparams.encoder_blocks is None
    with pytest.raises(
        ValueError, match="context_size"
    ):  # only encoder_blocks' auto is let through
        TabularClassifier(num_features=5, num_classes=2, network="lookup", context_size="auto")
    with pytest.raises(ValueError, match="encoder_blocks must be an integer >= 0 or 'auto'"):
        TabularClassifier(num_features=5, num_classes=2, encoder_blocks="many")
    with pytest.raises(ValueError, match="deep_ensemble_size must be an integer >= 1, got 0"):
        TabularClassifier(num_features=5, num_classes=2, deep_ensemble_size=0)


def test_deep_ensemble_of_lookup_networks_trains(tmp_path: Path) -> None:
    """``deep_ensemble_size`` also wraps the lookup network, which holds no training rows."""
    cli = fast_dev_run(
        tmp_path,
        "--model.init_args.network",
        "lookup",
        "--model.init_args.deep_ensemble_size",
        "2",
    )
    networks = cli.model.member_networks
    assert len(networks) == 2 and not cli.model.holds_memory
    assert not torch.equal(
        next(networks[0].parameters()), next(networks[1].parameters())
    )  # independently initialised
