"""The whole battery of bad inputs a new user may give the command line (issue 12).

Every case must end in ONE line ``error: ...`` that names what to fix (a file, column, line,
option), with a non-zero exit status and no traceback, before any silent change of the data.
Cases run in-process through :func:`ahop_cli.cli.run_cli` (tiny data, no or one short epoch);
:func:`test_exit_status_and_debug_traceback` checks the real process exit for a few of them.
Inputs that are accepted but change or skip something say so on the log
(:func:`test_accepted_inputs_are_reported`).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ahop_cli.cli import main, run_cli

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
MARKER = "ahop-payload-ran"  # a crafted pickle would create this file if it were unpickled


# ----------------------------------------------------------------------------- shared files
class Payload:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@dataclass
class Files:
    """Files several cases share (made once per module)."""

    root: Path
    ckpt: Path  # a real tabular checkpoint (one tiny epoch)

    def path(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    root = tmp_path_factory.mktemp("bad_inputs")
    main(
        [
            "fit",
            "--config",
            "tabular.yaml",
            "--trainer.max_epochs",
            "1",
            "--trainer.logger.init_args.save_dir",
            str(root / "runs"),
            "--model.init_args.embedding_dim",
            "8",
            "--model.init_args.context_size",
            "4",
            "--model.init_args.similarity",
            "dot",
            *QUIET,
        ]
    )
    return Files(root=root, ckpt=next((root / "runs").rglob("last.ckpt")))


def churn_frame(rows: int = 40) -> pd.DataFrame:
    """A small clean table: an id, a float, an integer and a text column, a two-class target."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(rows)],
            "charges": np.round(rng.normal(50, 10, rows), 2),
            "tenure": rng.integers(1, 60, rows),
            "plan": [["basic", "premium"][i % 2] for i in range(rows)],
            "churn": [["No", "Yes"][i % 3 == 0] for i in range(rows)],
        }
    )


def write_csv(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def set_cell(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[row, column] = value
    return frame


# ----------------------------------------------------------------------------- argv builders
def fit(tmp_path: Path, *extra: str, config: str = "tabular.yaml") -> list[str]:
    return [
        "fit",
        "--config",
        config,
        "--trainer.max_epochs",
        "1",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "runs"),
        *QUIET,
        *extra,
    ]


def fit_csv(tmp_path: Path, frame: pd.DataFrame | Path, *extra: str) -> list[str]:
    path = frame if isinstance(frame, Path) else write_csv(tmp_path, frame)
    options = ["--data.init_args.source", "csv", "--data.init_args.csv_path", str(path)]
    options += ["--data.init_args.target", "churn", "--data.init_args.drop_columns", "[id]"]
    return fit(tmp_path, *options, *extra)


def evaluate(ckpt: Path | str, command: str = "test", *extra: str) -> list[str]:
    args = [command, "--config", "tabular.yaml", "--ckpt_path", str(ckpt)]
    return [*args, "--trainer.logger", "false", *QUIET, *extra]


def predict(tmp_path: Path, ckpt: Path | None, *extra: str, config: str = "tabular.yaml"):
    args = ["predict", "--config", config, "--trainer.logger", "false", *QUIET]
    args += ["--predictions", str(tmp_path / "out.csv")] if "--predictions" not in extra else []
    return [*args, *(["--ckpt_path", str(ckpt)] if ckpt else []), *extra]


def run(command: str, config: str, tmp_path: Path, *extra: str) -> list[str]:
    """``command`` on ``config`` without a logger (validate / test / fit)."""
    args = [command, "--config", config, "--trainer.logger", "false", *QUIET]
    return [*args, "--trainer.default_root_dir", str(tmp_path), *extra]


def mil_files(tmp_path: Path, name: str, rows: list[str]) -> Path:
    (tmp_path / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def export(*extra: str) -> list[str]:
    return ["export", *extra]


def truncated(files: Files, tmp_path: Path) -> Path:
    data = files.ckpt.read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage(tmp_path: Path, name: str = "garbage.ckpt") -> Path:
    path = tmp_path / name
    path.write_bytes(b"not a checkpoint at all\n" * 20)
    return path


def crafted(tmp_path: Path) -> Path:
    """A checkpoint that would run a command if it were unpickled."""
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "payload": Payload(tmp_path / MARKER)}, path)
    return path


def old_format(files: Files, tmp_path: Path) -> Path:
    """A real checkpoint whose datamodule state is a pickle blob (as ahop once wrote it)."""
    checkpoint = torch.load(files.ckpt, weights_only=True)
    blob = pickle.dumps(Payload(tmp_path / MARKER))
    checkpoint["TabularDataModule"] = {
        "featurizer": torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    }
    path = tmp_path / "old_format.ckpt"
    torch.save(checkpoint, path)
    return path


def lshn_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "lshn.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "tasks.lshn.LSHNTask"}}, path)
    return path


def idx_garbage(tmp_path: Path) -> Path:
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x01" * 30)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x01" * 10)
    return tmp_path


def mat_file(tmp_path: Path, how: str) -> Path:
    import scipy.io

    path = tmp_path / "elephant.mat"
    scipy.io.savemat(path, {"bag_ids": np.arange(10), "features": np.ones((10, 3)),
                            "labels": np.ones(10)})  # fmt: skip
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"MATLAB 5.0" + bytes(200))
    return tmp_path


def image_folder(tmp_path: Path, size: int | None) -> Path:
    from torchvision.io import write_png

    folder = tmp_path / "images"
    folder.mkdir()
    if size is not None:
        write_png(torch.zeros(1, size, size, dtype=torch.uint8), str(folder / "a.png"))
    return folder


def mil_bags(tmp_path: Path) -> Path:
    path = tmp_path / "bags.csv"
    path.write_text("0,b1,1.0,2.0\n1,b2,0.5,0.1\n")  # 2 features; the synthetic bags have more
    return path


# ----------------------------------------------------------------------------- the battery
@dataclass(frozen=True)
class Bad:
    """A bad input: the argv it runs and text the one-line error must contain."""

    argv: Callable[[Path, Files], list[str]]
    expect: str


def _p(name: str, argv: Callable[[Path, Files], list[str]], expect: str, *marks):
    return pytest.param(Bad(argv, expect), id=name, marks=marks)


no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
df = churn_frame

CASES = [
    # --- checkpoints given to test / validate / predict / fit / export
    _p("ckpt-missing", lambda t, f: evaluate(t / "nope.ckpt"), "no such checkpoint file"),
    _p("ckpt-folder", lambda t, f: evaluate(t), "is a folder; give a .ckpt file"),
    _p("ckpt-truncated", lambda t, f: evaluate(truncated(f, t)), "not a readable checkpoint (truncated or corrupt?"),
    _p("ckpt-garbage", lambda t, f: evaluate(garbage(t)), "not a readable checkpoint"),
    _p("ckpt-crafted-pickle", lambda t, f: evaluate(crafted(t)), "holds objects other than tensors and plain data (it references posix.system)"),
    _p("ckpt-not-lightning", lambda t, f: (torch.save({"a": 1}, t / "x.ckpt"), evaluate(t / "x.ckpt"))[1], "is not a Lightning checkpoint (no state_dict)"),
    _p("ckpt-old-pickled-datamodule-state", lambda t, f: evaluate(old_format(f, t)), "holds a pickled preprocessor"),
    _p("ckpt-truncated-validate", lambda t, f: evaluate(truncated(f, t), "validate"), "truncated or corrupt"),
    _p("ckpt-truncated-predict", lambda t, f: predict(t, truncated(f, t)), "truncated or corrupt"),
    _p("ckpt-truncated-resume", lambda t, f: fit(t, "--ckpt_path", str(truncated(f, t))), "truncated or corrupt"),
    _p("export-ckpt-missing", lambda t, f: export("--ckpt_path", str(t / "nope.ckpt")), "no such checkpoint file"),
    _p("export-ckpt-truncated", lambda t, f: export("--ckpt_path", str(truncated(f, t)), "--out", str(t / "e")), "truncated or corrupt"),
    _p("export-ckpt-crafted-pickle", lambda t, f: export("--ckpt_path", str(crafted(t)), "--out", str(t / "e")), "could run code"),
    _p("export-lshn", lambda t, f: export("--ckpt_path", str(lshn_checkpoint(t)), "--out", str(t / "e")), "tasks.lshn.LSHNTask checkpoints are not exportable"),
    _p("export-no-task-class", lambda t, f: (torch.save({"state_dict": {}}, t / "x.ckpt"), export("--ckpt_path", str(t / "x.ckpt"), "--out", str(t / "e")))[1], "does not record its task class"),
    _p("export-out-is-a-file", lambda t, f: ((t / "file").write_text("x"), export("--ckpt_path", str(f.ckpt), "--out", str(t / "file")))[1], "is a file, not a folder"),
    _p("export-out-unwritable", lambda t, f: export("--ckpt_path", str(f.ckpt), "--out", "/proc/ahop-export"), "--out /proc/ahop-export: cannot write there"),
    _p("export-bad-format", lambda t, f: export("--ckpt_path", str(f.ckpt), "--format", "tflite"), "argument --format: invalid choice: 'tflite'"),
    _p("export-no-ckpt-option", lambda t, f: export(), "the following arguments are required: --ckpt_path"),
    # --- output folders and files
    _p("logger-dir-is-a-file", lambda t, f: ((t / "f").write_text("x"), fit(t, "--trainer.logger.init_args.save_dir", str(t / "f")))[1], "trainer.logger.init_args.save_dir"),
    _p("logger-dir-unwritable", lambda t, f: fit(t, "--trainer.logger.init_args.save_dir", "/proc/ahop-runs"), "cannot write there"),
    _p("root-dir-under-a-file", lambda t, f: ((t / "f").write_text("x"), fit(t, "--trainer.default_root_dir", str(t / "f" / "sub")))[1], "trainer.default_root_dir"),
    _p("predictions-is-a-folder", lambda t, f: predict(t, f.ckpt, "--predictions", str(t)), "is a folder; give a file name"),
    _p("predictions-wrong-suffix", lambda t, f: predict(t, f.ckpt, "--predictions", str(t / "p.txt")), "give a path ending in .csv"),
    _p("predictions-unwritable", lambda t, f: predict(t, f.ckpt, "--predictions", "/proc/ahop/p.csv"), "cannot write there"),
    _p("predictions-retrieval-as-csv", lambda t, f: predict(t, None, "--model.init_args.similarity", "dot", "--model.init_args.similarity_kwargs", "null", config="retrieval.yaml"), "ending in .pt"),
    # --- trainer settings
    _p("max-epochs-negative", lambda t, f: fit(t, "--trainer.max_epochs", "-5"), "trainer.max_epochs=-5: must be >= 0"),
    _p("max-epochs-forever", lambda t, f: fit(t, "--trainer.max_epochs", "-1"), "nothing else would stop this run"),
    _p("max-steps-negative", lambda t, f: fit(t, "--trainer.max_steps", "-3"), "trainer.max_steps=-3"),
    _p("max-epochs-not-a-number", lambda t, f: fit(t, "--trainer.max_epochs", "many"), "trainer.max_epochs: Expected a <class 'int'>"),
    _p("devices-zero", lambda t, f: fit(t, "--trainer.devices", "0"), "trainer.devices=0: must be >= 1"),
    _p("accelerator-gpu-without-one", lambda t, f: fit(t, "--trainer.accelerator", "gpu"), "no CUDA GPU is visible", no_gpu),
    _p("best-k-negative", lambda t, f: fit(t, "--best_k", "-1"), "--best_k=-1: must be >= 0"),
    _p("early-stopping-monitor-typo", lambda t, f: fit(t, "--trainer.callbacks+=ahop_cli.callbacks.EarlyStopping", "--trainer.callbacks.monitor", "val/los"), "EarlyStopping monitors 'val/los', which the task does not log"),
    # --- configs and options
    _p("config-missing", lambda t, f: ["fit", "--config", "nope.yaml"], "--config nope.yaml: no such config file (tried nope.yaml"),
    _p("model-class-missing", lambda t, f: fit(t, "--model", "tasks.nope.Model"), "tasks.nope.Model"),
    _p("unknown-similarity", lambda t, f: fit(t, "--model.init_args.similarity", "bogus"), "unknown similarity 'bogus'"),
    _p("unknown-model-option", lambda t, f: fit(t, "--model.init_args.bogus", "1"), "Option 'bogus' is not accepted"),
    _p("batch-size-zero", lambda t, f: fit(t, "--data.init_args.batch_size", "0"), "batch_size=0 must be >= 1"),
    _p("num-heads-zero", lambda t, f: fit(t, "--model.init_args.network", "lookup", "--model.init_args.num_heads", "0"), "num_heads must be an integer >= 1, got 0"),
    # --- tabular retrieval model (issue 11): options of the other network, candidate count, memory budget
    _p("tabular-option-of-lookup", lambda t, f: fit(t, "--model.init_args.quantity", "8"), "network 'retrieval' does not take quantity (an option of lookup): remove it or choose that network"),
    _p("tabular-option-of-retrieval", lambda t, f: fit(t, "--model.init_args.network", "lookup", "--model.init_args.context_size", "8"), "network 'lookup' does not take context_size (an option of retrieval)"),
    _p("tabular-unknown-network", lambda t, f: fit(t, "--model.init_args.network", "knn"), "unknown tabular network 'knn'; allowed values: lookup, retrieval"),
    _p("plateau-scheduler-wrong-mode", lambda t, f: fit(t, "--model.init_args.lr_scheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"), "where larger is better, but has mode 'min': set --model.init_args.lr_scheduler.init_args.mode max"),
    _p("tabular-context-size-zero", lambda t, f: fit(t, "--model.init_args.context_size", "0"), "context_size must be an integer >= 1, got 0"),
    _p("tabular-memory-over-budget", lambda t, f: fit(t, "--model.init_args.max_memory_rows", "100"), "more than max_memory_rows=100: raise max_memory_rows"),
    _p("val-size-too-large", lambda t, f: fit(t, "--data.init_args.val_size", "1.5"), "val_size=1.5"),
    _p("unknown-encoding", lambda t, f: fit(t, "--data.init_args.categorical_encoding", "hash"), "unknown categorical_encoding 'hash'"),
    _p("unknown-source", lambda t, f: fit(t, "--data.init_args.source", "parquet"), "unknown tabular source 'parquet'"),
    # --- tabular CSV data
    _p("csv-missing", lambda t, f: fit_csv(t, t / "missing.csv"), "no file found (tried"),
    _p("csv-empty", lambda t, f: ((t / "e.csv").write_text(""), fit_csv(t, t / "e.csv"))[1], "e.csv is empty (no header row)"),
    _p("csv-header-only", lambda t, f: ((t / "h.csv").write_text("a,churn\n"), fit_csv(t, t / "h.csv"))[1], "h.csv has a header but no data rows"),
    _p("csv-target-missing", lambda t, f: fit_csv(t, df().drop(columns=["churn"])), "target column 'churn' not found"),
    _p("csv-wrong-separator", lambda t, f: ((t / "s.csv").write_text(df().to_csv(index=False, sep=";")), fit_csv(t, t / "s.csv"))[1], "is csv_sep=',' the file's separator?"),
    _p("csv-inf", lambda t, f: fit_csv(t, set_cell(df(), 7, "charges", "inf")), "numeric column 'charges' has 1 infinite value(s): line 9 of"),
    _p("csv-text-in-float-column", lambda t, f: fit_csv(t, set_cell(df(), 5, "charges", "abc")), "column 'charges' holds numbers except for 1 cell(s): line 7 of"),
    _p("csv-text-in-int-column", lambda t, f: fit_csv(t, set_cell(df(), 3, "tenure", "twelve")), "column 'tenure' holds numbers except for 1 cell(s): line 5 of"),
    _p("csv-all-missing-column", lambda t, f: fit_csv(t, df().assign(empty=" ")), "column 'empty' is entirely missing"),
    _p("csv-identifier-column", lambda t, f: fit_csv(t, df().assign(name=[f"n{i}" for i in range(40)]), "--data.init_args.max_categories", "10"), "column 'name' is non-numeric with 40 distinct values"),
    _p("csv-single-class", lambda t, f: fit_csv(t, df().assign(churn="No")), "single class ['No']"),
    _p("csv-missing-targets", lambda t, f: fit_csv(t, set_cell(df(), 2, "churn", " ")), "target 'churn' has 1 missing values (rows [2]"),
    _p("csv-continuous-target", lambda t, f: fit_csv(t, df().assign(churn=np.linspace(0, 1, 40))), "looks continuous"),
    _p("csv-drop-unknown-column", lambda t, f: fit_csv(t, df(), "--data.init_args.drop_columns", "[nope]"), "drop_columns ['nope'] not in the data"),
    _p("csv-id-column-unknown", lambda t, f: fit_csv(t, df(), "--data.init_args.id_column", "key"), "id_column ['key'] not in the data"),
    _p("csv-drop-the-target", lambda t, f: fit_csv(t, df(), "--data.init_args.drop_columns", "[churn]"), "drop_columns names the target 'churn'"),
    _p("predict-csv-missing-column", lambda t, f: predict(t, f.ckpt, "--data.init_args.predict_path", str(write_csv(t, pd.DataFrame({"mean radius": [1.0]})))), "raw rows lack the feature columns"),
    _p("predict-csv-text-cell", lambda t, f: predict(t, f.ckpt, "--data.init_args.predict_path", str(text_in_new_rows(t))), "numeric column 'mean area' has 1 non-numeric cell(s): line 3 of"),
    _p("predict-csv-missing-file", lambda t, f: predict(t, f.ckpt, "--data.init_args.predict_path", str(t / "none.csv")), "predict_path: no file"),
    _p("predict-csv-empty", lambda t, f: ((t / "e.csv").write_text(""), predict(t, f.ckpt, "--data.init_args.predict_path", str(t / "e.csv")))[1], "predict_path: the CSV file"),
    # --- images
    _p("cifar10-offline", lambda t, f: fit(t, "--data.init_args.data_dir", str(t), config="image_cifar10.yaml"), "cifar10 train split is not in"),
    _p("idx-corrupt", lambda t, f: fit(t, "--data.init_args.dataset", "mnist", "--data.init_args.carve_from", "test", "--data.init_args.data_dir", str(idx_garbage(t)), config="image.yaml"), "is not a readable IDX file"),
    _p("mnist-missing", lambda t, f: fit(t, "--data.init_args.data_dir", str(t), config="image_mnist.yaml"), "MNIST test split not found"),
    _p("predict-image-folder-empty", lambda t, f: predict(t, None, "--data.init_args.predict_path", str(image_folder(t, None)), config="image.yaml"), "no image files"),
    _p("predict-image-wrong-size", lambda t, f: predict(t, None, "--data.init_args.predict_path", str(image_folder(t, 28)), config="image.yaml"), "a.png is (1, 28, 28) (channels, height, width), the model takes (1, 8, 8)"),
    _p("predict-image-path-missing", lambda t, f: predict(t, None, "--data.init_args.predict_path", str(t / "none"), config="image.yaml"), "predict_path: no file or folder"),
    # --- retrieval and LSHN
    _p("retrieval-unknown-similarity", lambda t, f: run("validate", "retrieval_fixed.yaml", t, "--model.init_args.similarity", "hamming"), "unknown similarity 'hamming'; allowed values: adaptive, cosine"),
    _p("retrieval-unknown-dataset", lambda t, f: run("fit", "retrieval.yaml", t, "--data.init_args.dataset", "svhn"), "unknown retrieval dataset 'svhn'; allowed values: digits"),
    _p("retrieval-too-many-memories", lambda t, f: run("validate", "retrieval_fixed.yaml", t, "--data.init_args.num_memories", "100000"), "num_memories=100000 exceeds the"),
    _p("retrieval-nothing-to-fit", lambda t, f: run("fit", "retrieval_fixed.yaml", t), "nothing to fit"),
    _p("retrieval-cifar10-missing", lambda t, f: run("validate", "retrieval_cifar10.yaml", t, "--data.init_args.data_dir", str(t)), "cifar10 train split not found"),
    _p("lshn-unknown-attractor", lambda t, f: run("fit", "lshn.yaml", t, "--model.init_args.network.attractor", "dense"), "allowed values: hebbian, learned"),
    _p("lshn-eval-max-steps-zero", lambda t, f: run("fit", "lshn.yaml", t, "--model.init_args.eval_max_steps", "0"), "eval_max_steps must be an integer >= 1"),
    _p("lshn-unknown-schedule", lambda t, f: run("fit", "lshn.yaml", t, "--model.init_args.network.schedule", "cosine"), "allowed values"),
    _p("lshn-sanity-steps-zero", lambda t, f: run("fit", "lshn.yaml", t, "--model.init_args.sanity_max_steps", "0"), "sanity_max_steps must be an integer >= 1"),
    # --- MIL bags
    _p("mat-truncated", lambda t, f: fit(t, "--data.init_args.dataset", "elephant", "--data.init_args.data_dir", str(mat_file(t, "truncated")), config="mil.yaml"), "elephant.mat is not a readable MATLAB .mat file"),
    _p("mat-corrupt", lambda t, f: fit(t, "--data.init_args.dataset", "elephant", "--data.init_args.data_dir", str(mat_file(t, "corrupt")), config="mil.yaml"), "elephant.mat is not a readable MATLAB .mat file"),
    _p("mil-csv-text-cell", lambda t, f: ((t / "musk1.csv").write_text("1,a,1.0,x\n0,b,0.5,0.1\n"), fit(t, "--data.init_args.dataset", "musk1", "--data.init_args.data_dir", str(t), config="mil.yaml"))[1], "line 1 (bag a), column 3 (0-based): 'x'"),
    _p("mil-csv-empty", lambda t, f: ((t / "musk1.csv").write_text(""), fit(t, "--data.init_args.dataset", "musk1", "--data.init_args.data_dir", str(t), config="mil.yaml"))[1], "musk1.csv: the file is empty"),
    _p("mil-nan-feature", lambda t, f: fit(t, "--data.init_args.dataset", "musk1", "--data.init_args.data_dir", str(mil_files(t, "musk1", ["1,a,1.0,2.0", "1,a,nan,2.0", "0,b,0.5,0.1"])), config="mil.yaml"), "line 2 (bag a), column 2 (0-based): 'nan'"),
    _p("mil-single-class", lambda t, f: fit(t, "--data.init_args.dataset", "musk2", "--data.init_args.data_dir", str(mil_files(t, "musk2", ["1,a,1.0,2.0", "1,b,0.5,0.1"])), config="mil.yaml"), "all 2 bags are positive"),
    _p("mil-file-missing", lambda t, f: fit(t, "--data.init_args.dataset", "elephant", "--data.init_args.data_dir", str(t), config="mil.yaml"), "elephant: none of ['elephant.mat'] found"),
    _p("predict-bags-wrong-width", lambda t, f: predict(t, None, "--data.init_args.data_dir", str(t), "--data.init_args.predict_path", str(mil_bags(t)), config="mil.yaml"), "bags with 2 features per instance"),
]  # fmt: skip


def text_in_new_rows(tmp_path: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    rows = load_breast_cancer(as_frame=True).data.iloc[:3].astype(str)
    rows.loc[1, "mean area"] = "n/a?"
    return write_csv(tmp_path, rows, "new.csv")


def one_line_error(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(argv)
    message = exit_info.value.code
    assert isinstance(message, str), f"exit without a message: {message!r}"
    return message


@pytest.mark.parametrize("case", CASES)
def test_bad_input_ends_in_one_line(case: Bad, files: Files, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AHOP_DEBUG", raising=False)
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):  # offline for sure
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    for bypass in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(bypass, raising=False)
    monkeypatch.chdir(ROOT)
    message = one_line_error(case.argv(tmp_path, files))
    assert message.startswith("error: ") and "\n" not in message, message
    assert case.expect in message, message
    assert "Traceback" not in message and "weights_only=False" not in message
    assert len(CASES) >= 55
    assert not (tmp_path / MARKER).exists(), "a crafted pickle ran its payload"


def test_exit_status_and_debug_traceback(files: Files, tmp_path: Path, monkeypatch) -> None:
    """A real process: exit status 1, one stderr line; AHOP_DEBUG=1 keeps the exception."""
    command = [sys.executable, "-c", "from ahop_cli.cli import run_cli; run_cli()"]
    argv = evaluate(truncated(files, tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "AHOP_DEBUG"}
    done = subprocess.run([*command, *argv], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "truncated or corrupt" in last
    assert "Traceback" not in done.stderr
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("AHOP_DEBUG", "1")
    with pytest.raises(ValueError, match="truncated or corrupt"):  # raised, with its traceback
        run_cli(argv)


def test_accepted_inputs_are_reported(tmp_path: Path, monkeypatch, caplog) -> None:
    """Inputs that are fine but change or skip something: each is reported, none is silent."""
    monkeypatch.chdir(ROOT)
    frame = set_cell(set_cell(churn_frame(), 4, "charges", " "), 9, "charges", np.nan)
    with caplog.at_level(logging.INFO, logger="ahop.data"):
        main(fit_csv(tmp_path, frame))
    assert (
        "numeric column 'charges': 2 of 40 cells missing, imputed with the training median"
        in caplog.text
    )
    assert (
        "column kinds: 2 numeric ['charges', 'tenure'], 1 categorical ['plan' (text" in caplog.text
    )
    # EarlyStopping whose run ends before the first validation: a warning, not a crash
    early = ["--trainer.callbacks+=ahop_cli.callbacks.EarlyStopping"]
    early += ["--trainer.callbacks.monitor", "val/loss", "--trainer.max_steps", "2"]
    with pytest.warns(UserWarning, match="training stopped before the first validation"):
        cli = main(fit(tmp_path / "early", *early))
    assert cli.trainer.global_step == 2
    # max_epochs -1 is accepted with another stopping rule
    cli = main(fit(tmp_path / "steps", "--trainer.max_epochs", "-1", "--trainer.max_steps", "3"))
    assert cli.trainer.global_step == 3
