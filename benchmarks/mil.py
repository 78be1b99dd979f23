"""Multiple-instance learning benchmark: Hopfield pooling with ``dot`` vs ``adaptive`` similarity.

1. **Classic MIL sets** (``../shared/data/mil``): elephant, musk1, musk2, UCSB breast cancer.
   Stratified k-fold CV over bags (10 folds by default) through :func:`mil_cv.run_cv` with the
   per-dataset configs (``configs/mil.yaml`` for musk1, ``configs/mil_<name>.yaml`` otherwise):
   exactly ``python mil_cv.py --config <config> --model.init_args.similarity <s>``, with
   ``--max-epochs`` passed on. Reported next to the published numbers (Ramsauer et al. 2020,
   Hopfield pooling ROC-AUC; Ilse et al. 2018, attention-MIL accuracy).
2. **MNIST-bags** (``configs/mil_mnist_bags.yaml``, MNIST carved from the 10k test split in
   ``../shared/data``): test AUROC vs number of training bags (50, 100, 200, 500) at mean bag
   length 10, 1,000 test bags, one run per seed.

Commands::

    python benchmarks/mil.py                                  # everything, 10 folds, 1 repeat
    python benchmarks/mil.py --datasets elephant --repeats 5  # the paper's 5 x 10-fold protocol
    python benchmarks/mil.py --skip-datasets --bag-counts 50 500

Prints markdown tables; writes ``benchmarks/out/mil.json``, ``benchmarks/out/mil_datasets.png``
and ``benchmarks/out/mil_mnist_bags.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/mil.py` from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import mil_cv  # noqa: E402
from benchmarks.common import OUT, markdown_table, save_figure  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
#: dataset -> config (all read their file from --data-dir)
CONFIGS = {
    "elephant": "configs/mil_elephant.yaml",
    "musk1": "configs/mil.yaml",
    "musk2": "configs/mil_musk2.yaml",
    "ucsb": "configs/mil_ucsb.yaml",
}
#: published numbers (x100): Hopfield pooling ROC-AUC (Ramsauer et al. 2020, 10-fold CV) and
#: attention-MIL accuracy (Ilse et al. 2018), from ../shared/data/README.md
PUBLISHED = {
    "elephant": "AUROC 94.9 ± 0.3 (Hopfield); acc 86.8 (att. MIL)",
    "musk1": "acc 89.2 (att. MIL)",
    "musk2": "acc 85.8 (att. MIL)",
    "ucsb": "AUROC 89.5 ± 0.8 (Hopfield)",
}
SIMILARITIES = ("dot", "adaptive")
BAG_COUNTS = (50, 100, 200, 500)
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
QUIET += ["--trainer.enable_model_summary", "false"]


def _cv(config: str, overrides: list[str], folds: int | None, repeats: int, root: Path):
    args = ["--config", str(ROOT / config), *QUIET, *overrides]
    return mil_cv.run_cv(args, num_folds=folds, repeats=repeats, output_dir=root)


def run_datasets(options: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    rows = []
    for dataset in options.datasets:
        for similarity in options.similarities:
            overrides = [
                "--model.init_args.similarity",
                similarity,
                "--data.init_args.data_dir",
                str(options.data_dir / "mil"),
            ]
            if dataset == "musk1":
                overrides += ["--data.init_args.dataset", "musk1"]  # not `auto`
            if options.max_epochs:
                overrides += ["--trainer.max_epochs", str(options.max_epochs)]
            results = _cv(CONFIGS[dataset], overrides, options.folds, options.repeats, root)
            summary = mil_cv.summarize(results)
            row = {
                "dataset": dataset,
                "similarity": similarity,
                "runs": len(results),
                "bags": sum(results[0].extra["bags"].values()),
                "summary": summary,
                "epochs": sum(r.epochs for r in results) / len(results),
                "seconds_per_fold": sum(r.seconds for r in results) / len(results),
                "repeat_auroc": _per_repeat_means(results, "test/auroc"),
                "folds": [asdict(r) for r in results],
            }
            auroc = summary["test/auroc"]
            print(
                f"{dataset} {similarity}: AUROC {100 * auroc['mean']:.1f} ± "
                f"{100 * auroc['std']:.1f} ({len(results)} runs)",
                flush=True,
            )
            rows.append(row)
    return rows


def run_mnist_bags(options: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    rows = []
    for count in options.bag_counts:
        for similarity in options.similarities:
            overrides = [
                "--model.init_args.similarity",
                similarity,
                "--data.init_args.data_dir",
                str(options.data_dir),
                "--data.init_args.num_train_bags",
                str(count),
                "--data.init_args.num_test_bags",
                str(options.test_bags),
            ]
            if options.max_epochs:
                overrides += ["--trainer.max_epochs", str(options.max_epochs)]
            results = _cv("configs/mil_mnist_bags.yaml", overrides, None, options.mnist_seeds, root)
            summary = mil_cv.summarize(results)
            auroc = summary["test/auroc"]
            print(f"mnist_bags {count} {similarity}: AUROC {_pm(auroc, len(results))}", flush=True)
            rows.append(
                {
                    "train_bags": count,
                    "similarity": similarity,
                    "runs": len(results),
                    "summary": summary,
                    "epochs": sum(r.epochs for r in results) / len(results),
                    "seconds_per_run": sum(r.seconds for r in results) / len(results),
                    "folds": [asdict(r) for r in results],
                }
            )
    return rows


def _per_repeat_means(results: Sequence[mil_cv.FoldResult], metric: str) -> list[float]:
    """Mean of ``metric`` over the folds of each CV repeat (the published std is over these)."""
    by_repeat: dict[int, list[float]] = {}
    for result in results:
        by_repeat.setdefault(result.seed, []).append(result.metrics[metric])
    return [statistics.fmean(values) for values in by_repeat.values()]


def _pm(entry: dict[str, float], runs: int = 2) -> str:
    """``mean ± std`` in percent; a single run has no spread to show."""
    if runs < 2:
        return f"{100 * entry['mean']:.1f}"
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"


def _pm_repeats(means: Sequence[float]) -> str:
    """``mean ± std`` (population) of per-repeat means in percent; one repeat has no spread."""
    if len(means) < 2:
        return "-"
    return f"{100 * statistics.fmean(means):.1f} ± {100 * statistics.pstdev(means):.1f}"


def dataset_table(rows: list[dict[str, Any]]) -> str:
    headers = ["dataset", "bags", "similarity", "runs", "test AUROC", "AUROC over repeats"]
    headers += ["test acc", "epochs", "s / fold", "published"]
    body = [
        [
            r["dataset"],
            r["bags"],
            r["similarity"],
            r["runs"],
            _pm(r["summary"]["test/auroc"]),
            _pm_repeats(r["repeat_auroc"]),
            _pm(r["summary"]["test/acc"]),
            f"{r['epochs']:.0f}",
            f"{r['seconds_per_fold']:.1f}",
            PUBLISHED[r["dataset"]],
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def mnist_table(rows: list[dict[str, Any]]) -> str:
    headers = ["train bags", "similarity", "runs", "test AUROC", "test acc", "epochs", "s / run"]
    body = [
        [
            r["train_bags"],
            r["similarity"],
            r["runs"],
            _pm(r["summary"]["test/auroc"], r["runs"]),
            _pm(r["summary"]["test/acc"], r["runs"]),
            f"{r['epochs']:.0f}",
            f"{r['seconds_per_run']:.1f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def plot_datasets(rows: list[dict[str, Any]]) -> Path:
    figure = Figure(figsize=(6, 3.5))
    axis = figure.add_subplot(1, 1, 1)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    similarities = list(dict.fromkeys(r["similarity"] for r in rows))
    width = 0.8 / max(1, len(similarities))
    for s, similarity in enumerate(similarities):
        chosen = [
            next(r for r in rows if r["dataset"] == d and r["similarity"] == similarity)
            for d in datasets
        ]
        auroc = [r["summary"]["test/auroc"] for r in chosen]
        axis.bar(
            [d + s * width for d in range(len(datasets))],
            [a["mean"] for a in auroc],
            width=width,
            yerr=[a["std"] for a in auroc],
            capsize=3,
            label=similarity,
        )
    axis.set_xticks([d + width * (len(similarities) - 1) / 2 for d in range(len(datasets))])
    axis.set_xticklabels(datasets)
    axis.set_ylabel("test ROC-AUC (mean ± std over folds)")
    axis.set_ylim(0.4, 1.0)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, "mil_datasets")


def plot_mnist(rows: list[dict[str, Any]]) -> Path:
    figure = Figure(figsize=(5, 3.5))
    axis = figure.add_subplot(1, 1, 1)
    for similarity in dict.fromkeys(r["similarity"] for r in rows):
        chosen = [r for r in rows if r["similarity"] == similarity]
        auroc = [r["summary"]["test/auroc"] for r in chosen]
        axis.errorbar(
            [r["train_bags"] for r in chosen],
            [a["mean"] for a in auroc],
            yerr=[a["std"] for a in auroc],
            marker="o",
            capsize=3,
            label=similarity,
        )
    axis.set_xscale("log")
    counts = sorted({r["train_bags"] for r in rows})
    axis.set_xticks(counts, labels=[str(c) for c in counts])
    axis.minorticks_off()
    axis.set_xlabel("training bags (mean bag length 10)")
    axis.set_ylabel("test ROC-AUC")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, "mil_mnist_bags")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--similarities", nargs="*", default=list(SIMILARITIES))
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the k-fold CV")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the configs'")
    parser.add_argument("--bag-counts", nargs="*", type=int, default=list(BAG_COUNTS))
    parser.add_argument("--test-bags", type=int, default=1000, help="MNIST-bags test bags")
    parser.add_argument("--mnist-seeds", type=int, default=1, help="MNIST-bags runs per point")
    parser.add_argument("--skip-datasets", action="store_true")
    parser.add_argument("--skip-mnist-bags", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: these small models run fastest on one thread, and on a "
        "shared machine 2 threads can be many times slower)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = parse_args(argv)
    torch.set_num_threads(options.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    report: dict[str, Any] = {"datasets": [], "mnist_bags": []}
    with tempfile.TemporaryDirectory() as tmp:
        if not options.skip_datasets and options.datasets:
            report["datasets"] = run_datasets(options, Path(tmp) / "datasets")
        if not options.skip_mnist_bags and options.bag_counts:
            report["mnist_bags"] = run_mnist_bags(options, Path(tmp) / "mnist_bags")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\ntorch {torch.__version__}, {options.threads} threads, {machine}")
    if report["datasets"]:
        print(
            f"\n{options.folds}-fold CV x {options.repeats} repeat(s) (x100): test AUROC / acc "
            "= mean ± std over all runs; AUROC over repeats = mean ± std of the per-repeat means "
            "(the published protocol)"
        )
        print(dataset_table(report["datasets"]))
        print(f"plot: {plot_datasets(report['datasets'])}")
    if report["mnist_bags"]:
        print(f"\nMNIST-bags, {options.test_bags} test bags (x100)")
        print(mnist_table(report["mnist_bags"]))
        print(f"plot: {plot_mnist(report['mnist_bags'])}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mil.json").write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
