"""Image classification benchmark: test accuracy and epoch time per similarity.

Trains ``configs/image.yaml`` (scikit-learn digits, 8x8) and ``configs/image_mnist.yaml`` (MNIST,
carved 8,000 / 2,000 from the 10k test split in the config's ``data_dir``) exactly as
``ahop fit --config ...`` would (:func:`ahop_cli.cli.main`), once per similarity (``dot``, ``manhattan``,
``adaptive``); digits keeps its config's 30 epochs, MNIST runs 5 of its config's 10 epochs (the
cosine schedule's ``T_max`` follows) to fit the time budget. The checkpoint with the best
``val/acc`` is then tested.

Commands::

    python benchmarks/image.py                                 # digits 30 epochs, MNIST 5 epochs
    python benchmarks/image.py --datasets digits --epochs digits=30
    python benchmarks/image.py --similarities dot adaptive --threads 2

Prints a markdown table (test accuracy, best val accuracy, median training-epoch wall time,
parameters) and writes ``benchmarks/out/image.png`` and ``benchmarks/out/image.json``. The epoch
time covers the training loop only (no validation), measured with ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/image.py` from anywhere
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ahop_cli.cli import main as build_cli  # noqa: E402
from benchmarks.common import (  # noqa: E402
    EpochTimer,
    add_threads_option,
    markdown_table,
    save_figure,
    save_json,
)
from tasks.quiet import quiet_lightning  # noqa: E402

#: dataset -> (config, default epochs); the data comes from the config's data_dir
DATASETS = {"digits": ("configs/image.yaml", 30), "mnist": ("configs/image_mnist.yaml", 5)}
SIMILARITIES = ("dot", "manhattan", "adaptive")


def run_one(dataset: str, similarity: str, epochs: int, root: Path) -> dict[str, Any]:
    """Train and test one (dataset, similarity) through the ``ahop`` command line; its row."""
    overrides = {
        "model.init_args.network.similarity": similarity,
        "trainer.max_epochs": epochs,
        "model.init_args.lr_scheduler.init_args.T_max": epochs,
        "trainer.logger": "false",
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "trainer.default_root_dir": root / f"{dataset}-{similarity}",
    }
    args = ["--config", str(ROOT / DATASETS[dataset][0])]
    cli = build_cli(args + [f"--{key}={value}" for key, value in overrides.items()], run=False)
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - start
    (tested,) = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False
    )
    return {
        "dataset": dataset,
        "similarity": similarity,
        "epochs": epochs,
        "train_images": len(cli.datamodule.train_set),
        "test_images": len(cli.datamodule.test_set),
        "test_acc": float(tested["test/acc"]),
        "best_val_acc": float(cli.trainer.checkpoint_callback.best_model_score),
        "epoch_seconds": statistics.median(timer.times),
        "first_epoch_seconds": timer.times[0],
        "fit_seconds": fit_seconds,
        "parameters": sum(p.numel() for p in cli.model.parameters()),
    }


def plot(rows: list[dict[str, Any]]) -> Path:
    """Test accuracy and epoch time per similarity, one group of bars per dataset."""
    frame = pd.DataFrame(rows)
    figure = Figure(figsize=(9, 3.5))
    for index, (key, label) in enumerate(
        [("test_acc", "test accuracy"), ("epoch_seconds", "s / training epoch")]
    ):
        axis = figure.add_subplot(1, 2, index + 1)
        table = frame.pivot(index="dataset", columns="similarity", values=key)
        table = table.loc[frame["dataset"].unique(), frame["similarity"].unique()]
        table.plot.bar(ax=axis, rot=0, xlabel="", ylabel=label, logy=key != "test_acc")
        if key == "test_acc":
            axis.set_ylim(0.5, 1.0)
        axis.legend(fontsize=8, loc="lower right" if key == "test_acc" else "upper left")
    figure.tight_layout()
    return save_figure(figure, "image")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--similarities", nargs="*", default=list(SIMILARITIES))
    parser.add_argument(
        "--epochs",
        nargs="*",
        default=[],
        metavar="DATASET=N",
        help="epochs per dataset (default: digits=30 as in its config, mnist=5)",
    )
    add_threads_option(parser)
    options = parser.parse_args(argv)
    epochs = {name: spec[1] for name, spec in DATASETS.items()}
    for item in options.epochs:
        name, _, value = item.partition("=")
        if name not in DATASETS or not value.isdigit():
            parser.error(f"--epochs takes DATASET=N with DATASET in {list(DATASETS)}")
        epochs[name] = int(value)
    torch.set_num_threads(options.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        for dataset in options.datasets:
            for similarity in options.similarities:
                rows.append(row := run_one(dataset, similarity, epochs[dataset], Path(tmp)))
                print(
                    f"{dataset} {similarity}: test acc {row['test_acc']:.4f}, "
                    f"{row['epoch_seconds']:.1f} s/epoch",
                    flush=True,
                )
    headers = ["dataset", "similarity", "epochs", "train / test images", "test acc (%)"]
    headers += ["best val acc (%)", "s / train epoch", "parameters"]
    cells = (
        "{dataset}|{similarity}|{epochs}|{train_images} / {test_images}|{test_acc:.2%}|"
        "{best_val_acc:.2%}|{epoch_seconds:.2f}|{parameters}"
    )
    table = [cells.format(**r).replace("%", "").split("|") for r in rows]  # the header has "%"
    print(markdown_table(headers, table))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\ntorch {torch.__version__}, {options.threads} threads, {machine}")
    print(f"plot: {plot(rows)}")
    save_json("image", rows)
    return rows


if __name__ == "__main__":
    main()
