"""Image classification benchmark: test accuracy and epoch time per similarity.

Trains ``configs/image.yaml`` (digits, 30 epochs) and ``configs/image_mnist.yaml`` (MNIST, 5 of its
10 epochs, the cosine ``T_max`` following) as ``ahop fit --config ...`` would, once per
similarity, then tests the checkpoint with the best ``val/acc``. Prints a markdown table (test and
best val accuracy, median training-epoch wall time, parameters); writes
``benchmarks/out/image.{png,json}``. Command and results: docs/results.md.
"""
# ruff: noqa: E402

from __future__ import annotations

import argparse
import itertools
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
sys.path.insert(0, str(ROOT))  # `python benchmarks/image.py` from anywhere

import pandas as pd
import torch
from matplotlib.figure import Figure

from ahop_cli.cli import main as build_cli
from benchmarks.common import EpochTimer, add_threads_option, markdown_table, save_figure, save_json
from tasks.quiet import quiet_lightning

#: dataset -> (config, default epochs); the data comes from the config's data_dir
DATASETS = {"digits": ("configs/image.yaml", 30), "mnist": ("configs/image_mnist.yaml", 5)}
SIMILARITIES = ("dot", "manhattan", "adaptive")


def run_one(dataset: str, similarity: str, epochs: int, root: Path) -> dict[str, Any]:
    """Train and test one (dataset, similarity) through the ``ahop`` command line; its row."""
    args = ["--config", str(ROOT / DATASETS[dataset][0])]
    args += [f"--model.init_args.network.similarity={similarity}", f"--trainer.max_epochs={epochs}"]
    args += [f"--model.init_args.lr_scheduler.init_args.T_max={epochs}", "--trainer.logger=false"]
    args += [f"--trainer.enable_{k}=false" for k in ("progress_bar", "model_summary")]
    cli = build_cli([*args, f"--trainer.default_root_dir={root}/{dataset}-{similarity}"], run=False)
    cli.trainer.callbacks.append(timer := EpochTimer())
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - start
    data, trainer = cli.datamodule, cli.trainer
    (tested,) = trainer.test(cli.model, datamodule=data, ckpt_path="best", verbose=False)
    row = dict(dataset=dataset, similarity=similarity, epochs=epochs)
    row.update(train_images=len(data.train_set), test_images=len(data.test_set))
    row.update(test_acc=float(tested["test/acc"]))
    row.update(best_val_acc=float(trainer.checkpoint_callback.best_model_score))
    row.update(epoch_seconds=statistics.median(timer.times), first_epoch_seconds=timer.times[0])
    row.update(fit_seconds=fit_seconds, parameters=sum(p.numel() for p in cli.model.parameters()))
    return row


def plot(rows: list[dict[str, Any]]) -> Path:
    """Test accuracy and epoch time per similarity, one group of bars per dataset."""
    frame = pd.DataFrame(rows)
    figure = Figure(figsize=(9, 3.5))
    labels = {"test_acc": "test accuracy", "epoch_seconds": "s / training epoch"}
    for axis, (key, label) in zip(figure.subplots(1, 2), labels.items()):
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
    about = "epochs per dataset (default: digits=30 as in its config, mnist=5)"
    parser.add_argument("--epochs", nargs="*", default=[], metavar="DATASET=N", help=about)
    add_threads_option(parser)
    options = parser.parse_args(argv)
    epochs = {name: spec[1] for name, spec in DATASETS.items()}
    for name, _, value in (item.partition("=") for item in options.epochs):
        if name not in DATASETS or not value.isdigit():
            parser.error(f"--epochs takes DATASET=N with DATASET in {list(DATASETS)}")
        epochs[name] = int(value)
    torch.set_num_threads(options.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        for dataset, similarity in itertools.product(options.datasets, options.similarities):
            rows.append(row := run_one(dataset, similarity, epochs[dataset], Path(tmp)))
            speed = f"test acc {row['test_acc']:.4f}, {row['epoch_seconds']:.1f} s/epoch"
            print(f"{dataset} {similarity}: {speed}", flush=True)
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
