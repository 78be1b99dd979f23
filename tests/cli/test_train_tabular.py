"""End-to-end checks of train.py / export.py on the offline tabular config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import export
from ahop_cli import cli as ahop_cli
from datamodules.tabular import TabularDataModule
from tasks.tabular import TabularClassifier

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "tabular.yaml")


def fit_args(tmp_path: Path, *extra: str, epochs: int = 2) -> list[str]:
    return [
        "fit",
        "--config",
        CONFIG,
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--model.init_args.network",  # the lookup model (tests/cli/test_tabular_configs.py: retrieval)
        "lookup",
        "--model.init_args.embedding_dim",
        "16",
        "--model.init_args.quantity",
        "8",
        "--model.init_args.lr_scheduler",
        "null",
        *extra,
    ]


def checkpoints(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "runs").rglob("*.ckpt"))


def test_fit_writes_checkpoints_and_tensorboard(tmp_path: Path) -> None:
    cli = ahop_cli.main(fit_args(tmp_path))
    names = {p.name for p in checkpoints(tmp_path)}
    assert "last.ckpt" in names
    assert any(name.startswith("best-") for name in names)
    events = list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for event in events:
        accumulator = EventAccumulator(str(event))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {
        "train/loss_epoch",
        "val/loss",
        "val/acc",
        "val/auroc",
        "val/f1",
        "val/selection_best",
    } <= tags
    assert any(tag.startswith("lr-") for tag in tags)
    assert cli.trainer.checkpoint_callback.monitor == "val/selection"  # the tabular rule
    assert 0.8 < float(cli.trainer.callback_metrics["val/acc"]) <= 1.0


def test_plateau_scheduler_watches_the_maximised_selection(tmp_path: Path) -> None:
    """ReduceLROnPlateau with mode max steps on val/selection (mode min: a one-line error,
    tests/cli/test_bad_inputs.py)."""
    args = fit_args(tmp_path, epochs=3)
    at = args.index("--model.init_args.lr_scheduler")
    args[at + 1 : at + 2] = [
        '{"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau",'
        ' "init_args": {"mode": "max", "patience": 0, "factor": 0.5}}'
    ]
    cli = ahop_cli.main(args)
    (config,) = cli.trainer.lr_scheduler_configs
    assert config.monitor == "val/selection" and config.scheduler.mode == "max"
    assert config.scheduler.last_epoch == 3  # stepped once per epoch on the logged metric


@pytest.mark.parametrize(
    ("similarity", "embedding"),
    [("dot", "linear"), ("manhattan", "linear"), ("adaptive", "linear"), ("dot", "periodic")],
)
def test_export_matches_module_on_raw_rows(tmp_path: Path, similarity: str, embedding: str) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from datamodules.tabular_preprocessing import TabularPreprocessor

    options = ("--model.init_args.similarity", similarity)
    options += ("--model.init_args.feature_embedding", embedding)
    ahop_cli.main(fit_args(tmp_path, *options, epochs=1))
    last = next(p for p in checkpoints(tmp_path) if p.name == "last.ckpt")
    out = tmp_path / "export"
    metadata = export.export(last, out)
    assert set(metadata["files"]) == {"pt2", "onnx", "preprocessor"}
    assert json.loads((out / "metadata.json").read_text())["class_names"]

    task = TabularClassifier.load_from_checkpoint(last, map_location="cpu").eval()
    datamodule = TabularDataModule(source="sklearn", name="breast_cancer", batch_size=64, seed=0)
    datamodule.setup("test")
    rows = datamodule.raw_features.iloc[datamodule.split_indices["test"]]
    preprocessor = TabularPreprocessor.load(out / "preprocessor.json")
    program = torch.export.load(out / "model.pt2").module()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    for size in (1, 7, len(rows)):
        raw = rows.iloc[:size]
        features = preprocessor(raw)
        with torch.no_grad():
            want = task(features).softmax(-1)
        torch.testing.assert_close(program(features), want, rtol=0, atol=1e-5)
        (onnx_probs,) = session.run(None, {"inputs": features.numpy()})
        torch.testing.assert_close(torch.from_numpy(onnx_probs), want, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_ddp_two_processes_matches_single_process(tmp_path: Path) -> None:
    """2-process CPU DDP validates the same rows as 1 process: identical synced metrics."""
    script = tmp_path / "run.py"
    script.write_text(
        f"import json, os, sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom ahop_cli.cli import main\n"
        "cli = main(sys.argv[1:])\n"
        "if cli.trainer.is_global_zero:\n"
        "    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}\n"
        "    open(os.environ['METRICS_OUT'], 'w').write(json.dumps(metrics))\n"
    )
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        args = fit_args(
            out,
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            str(devices),
            "--trainer.strategy",
            "ddp" if devices > 1 else "auto",
            "--data.init_args.batch_size",
            str(64 // devices),
            epochs=1,
        )
        env = {**os.environ, "METRICS_OUT": str(tmp_path / f"fit{devices}.json")}
        subprocess.run(
            [sys.executable, str(script), *args], cwd=ROOT, check=True, timeout=300, env=env
        )
        results[devices] = json.loads((tmp_path / f"fit{devices}.json").read_text())
    # validate the 2-process model with 1 and 2 processes: same rows, same synced metrics
    ckpt = next(p for p in (tmp_path / "devices2" / "runs").rglob("last.ckpt"))
    validated = {}
    for devices in (1, 2):
        args = [
            "validate",
            "--config",
            CONFIG,
            "--ckpt_path",
            str(ckpt),
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            str(devices),
            "--trainer.strategy",
            "ddp" if devices > 1 else "auto",
            "--trainer.logger",
            "false",
            "--model.init_args.network",
            "lookup",
            "--model.init_args.embedding_dim",
            "16",
            "--model.init_args.quantity",
            "8",
        ]
        env = {**os.environ, "METRICS_OUT": str(tmp_path / f"validate{devices}.json")}
        subprocess.run(
            [sys.executable, str(script), *args], cwd=ROOT, check=True, timeout=300, env=env
        )
        validated[devices] = json.loads((tmp_path / f"validate{devices}.json").read_text())
    for name in ("val/acc", "val/auroc", "val/f1"):
        assert validated[2][name] == pytest.approx(validated[1][name], abs=1e-6), name
    # training with 2 processes (same global batch) reaches the single-process quality
    assert results[2]["val/acc"] == pytest.approx(results[1]["val/acc"], abs=0.05)
