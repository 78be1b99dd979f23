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

import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ahop_cli.cli import main as build_cli  # noqa: E402
from benchmarks.common import add_threads_option, markdown_table, save_figure, save_json  # noqa: E402
from tasks.quiet import quiet_lightning  # noqa: E402

#: dataset -> (config, default epochs); the data comes from the config's data_dir
DATASETS: dict[str, tuple[str, int]] = {
    "digits": ("configs/image.yaml", 30),
    "mnist": ("configs/image_mnist.yaml", 5),
}
SIMILARITIES = ("dot", "manhattan", "adaptive")


class EpochTimer(Callback):
    """Wall time of every training epoch (the training loop only, validation excluded)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.times.append(time.perf_counter() - self._start)


def run_one(dataset: str, similarity: str, epochs: int, root: Path) -> dict[str, Any]:
    """Train and test one (dataset, similarity); returns the row of the table."""
    config, _ = DATASETS[dataset]
    args = [
        "--config",
        str(ROOT / config),
        "--model.init_args.network.similarity",
        similarity,
        "--trainer.max_epochs",
        str(epochs),
        "--model.init_args.lr_scheduler.init_args.T_max",
        str(epochs),
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.default_root_dir",
        str(root / f"{dataset}-{similarity}"),
    ]
    cli = build_cli(args, run=False)
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - start
    (tested,) = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False
    )
    best_val = cli.trainer.checkpoint_callback.best_model_score
    return {
        "dataset": dataset,
        "similarity": similarity,
        "epochs": epochs,
        "train_images": len(cli.datamodule.train_set),
        "test_images": len(cli.datamodule.test_set),
        "test_acc": float(tested["test/acc"]),
        "best_val_acc": float(best_val),
        "epoch_seconds": statistics.median(timer.times),
        "first_epoch_seconds": timer.times[0],
        "fit_seconds": fit_seconds,
        "parameters": sum(p.numel() for p in cli.model.parameters()),
    }


def plot(rows: list[dict[str, Any]]) -> Path:
    """Test accuracy and epoch time per similarity, one group of bars per dataset."""
    figure = Figure(figsize=(9, 3.5))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    similarities = list(dict.fromkeys(r["similarity"] for r in rows))
    width = 0.8 / max(1, len(similarities))
    for index, (key, label) in enumerate(
        [("test_acc", "test accuracy"), ("epoch_seconds", "s / training epoch")]
    ):
        axis = figure.add_subplot(1, 2, index + 1)
        for s, similarity in enumerate(similarities):
            values = [
                next(
                    (r[key] for r in rows if r["dataset"] == d and r["similarity"] == similarity), 0
                )
                for d in datasets
            ]
            positions = [d + s * width for d in range(len(datasets))]
            axis.bar(positions, values, width=width, label=similarity)
        axis.set_xticks([d + width * (len(similarities) - 1) / 2 for d in range(len(datasets))])
        axis.set_xticklabels(datasets)
        axis.set_ylabel(label)
        if key == "test_acc":
            axis.set_ylim(0.5, 1.0)
        else:
            axis.set_yscale("log")
        axis.legend(fontsize=8, loc="lower right" if key == "test_acc" else "upper left")
    figure.tight_layout()
    return save_figure(figure, "image")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    options = parse_args(argv)
    epochs = {name: spec[1] for name, spec in DATASETS.items()}
    for item in options.epochs:
        name, _, value = item.partition("=")
        if name not in DATASETS or not value.isdigit():
            raise SystemExit(f"error: --epochs takes DATASET=N with DATASET in {list(DATASETS)}")
        epochs[name] = int(value)
    torch.set_num_threads(options.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        for dataset in options.datasets:
            for similarity in options.similarities:
                row = run_one(dataset, similarity, epochs[dataset], Path(tmp))
                print(
                    f"{dataset} {similarity}: test acc {row['test_acc']:.4f}, "
                    f"{row['epoch_seconds']:.1f} s/epoch",
                    flush=True,
                )
                rows.append(row)
    headers = ["dataset", "similarity", "epochs", "train / test images", "test acc (%)"]
    headers += ["best val acc (%)", "s / train epoch", "parameters"]
    table = [
        [
            r["dataset"],
            r["similarity"],
            r["epochs"],
            f"{r['train_images']} / {r['test_images']}",
            f"{100 * r['test_acc']:.2f}",
            f"{100 * r['best_val_acc']:.2f}",
            f"{r['epoch_seconds']:.2f}",
            r["parameters"],
        ]
        for r in rows
    ]
    print(markdown_table(headers, table))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\ntorch {torch.__version__}, {options.threads} threads, {machine}")
    print(f"plot: {plot(rows)}")
    save_json("image", rows)
    return rows


if __name__ == "__main__":
    main()
