"""Multiple-instance learning benchmark through the evaluation engine of ``ahop cv``.

1. **MIL data sets** (files in ``--data-dir`` or ``--data-dir/mil``): per (data set, model) one
   ``ahop cv --config configs/mil.yaml --data.init_args.dataset <name>`` run of the Hopfield
   pooling per ``--similarities`` or of a deep baseline pooling (``--networks attention mean``);
   the first model's run also fits the pooled logistic-regression ``--baselines`` on its folds.
   Beside the published numbers (Ramsauer et al. 2020; Ilse et al. 2018).
2. **MNIST-bags** (``configs/mil_mnist_bags.yaml``): test AUROC vs number of training bags.

The ``ahop cv`` protocol options (``--repeats``, ``--folds``, ``--selection``, ``--search`` ...) and
``--max_folds`` apply to every run, any other argument is an ``ahop fit`` argument. Each run has
its own folder under ``--output-dir`` (printed first: ``ahop cv --resume <folder>`` finishes it).
Prints markdown tables; writes ``mil.json``, ``mil_datasets.png`` and ``mil_mnist_bags.png`` in
``benchmarks/out``. Commands and results: docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/mil.py` from anywhere

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ahop_cli.cv.command import parse_args as cv_options  # noqa: E402
from ahop_cli.cv.command import protocol_from_options  # noqa: E402
from ahop_cli.evaluate import Evaluation, Protocol, evaluate, start_run, summarize  # noqa: E402
from benchmarks.common import add_threads_option, format_rows, machine, save_figure, save_json  # noqa: E402
from datamodules.mil import MIL_DATASETS  # noqa: E402
from tasks.reports import format_mean_std, format_number  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
#: data sets with k-fold CV (``auto`` is an alias, ``mnist_bags`` has its own section, ``csv`` /
#: ``mat`` read a file of your own via ``--data.init_args.path FILE``)
DATASETS = [name for name in MIL_DATASETS if name not in ("auto", "mnist_bags", "csv", "mat")]
#: published numbers (x100): Hopfield pooling ROC-AUC (Ramsauer et al. 2020, 10-fold CV) and
#: attention-MIL accuracy (Ilse et al. 2018), from ../shared/data/README.md
PUBLISHED = {
    "elephant": "AUROC 94.9 ± 0.3 (Hopfield); acc 86.8 (att. MIL)",
    "fox": "AUROC 64.05 (Hopfield)",
    "tiger": "AUROC 91.3 (Hopfield)",
    "musk1": "acc 89.2 (att. MIL)",
    "musk2": "acc 85.8 (att. MIL)",
    "ucsb_breast_cancer": "AUROC 89.5 ± 0.8 (Hopfield)",
    "synthetic": "-",
}
BAG_COUNTS = (50, 100, 200, 500)
#: the ``ahop cv --baselines`` of the first model's run -> their rows' label
BASELINES = {
    "mean-pool-logreg": "mean-pool + logistic regression",
    "max-pool-logreg": "max-pool + logistic regression",
}
#: a deep baseline: the same instance MLP and training, another pooling (``BASELINE_ARGS + name``)
BASELINE_NETWORK = {"embedding_dim": 64, "num_embedding_layers": 2, "dropout": 0.1}
BASELINE_ARGS = [
    "--model.init_args.network",
    json.dumps(BASELINE_NETWORK),
    "--model.init_args.pooling",
]
SIMILARITY = "--model.init_args.network.similarity"
#: the columns of the tables: header -> template of a row's fields (:func:`_cells`)
DATASET_COLUMNS = {"data set": "{dataset}", "model": "{model}", "folds": "{runs}"}
DATASET_COLUMNS |= {"test AUROC (folds)": "{auroc}", "test AUROC (repeats)": "{auroc_repeats}"}
DATASET_COLUMNS |= {"Δ AUROC vs mean-pool LR": "{delta}", "test acc (folds)": "{acc}"}
DATASET_COLUMNS |= {"test acc (repeats)": "{acc_repeats}", "epochs": "{epoch_cell}"}
DATASET_COLUMNS |= {"s / fold": "{seconds_per_fold:.1f}", "published": "{published}"}
MNIST_COLUMNS = {"train bags": "{train_bags}", "similarity": "{similarity}", "runs": "{runs}"}
MNIST_COLUMNS |= {"test AUROC": "{auroc}", "test acc": "{acc}", "epochs": "{epochs:.0f}"}
MNIST_COLUMNS |= {"s / run": "{seconds_per_fold:.1f}"}


def _config_args(dataset: str) -> list[str]:
    """Every bag set runs the one MIL config, as a user would: ``--data.init_args.dataset``."""
    return ["--config", str(ROOT / "configs" / "mil.yaml"), "--data.init_args.dataset", dataset]


def _run(options: argparse.Namespace, key: str, args: list[str], protocol: Protocol) -> Evaluation:
    """One ``ahop cv`` run of ``args`` (plus the data folder and the extra ``ahop fit``
    arguments) in a new folder under ``--output-dir``, printed before its first fold."""
    args = [*args, "--data.init_args.data_dir", str(options.data_dir), *options.fit_args]
    print(f"{key}: {(run_dir := start_run(args, protocol, options.output_dir))}", flush=True)
    log = functools.partial(print, " ", flush=True)
    kwargs = {"threads": options.threads, "max_folds": options.max_folds, "log": log}
    return evaluate(args, protocol, resume=run_dir, **kwargs)


def _row(folds: Sequence[Any], **labels: Any) -> dict[str, Any]:
    """A table row of one model (or baseline) over ``folds``."""
    n = max(1, len(folds))
    means = {"epochs": sum(r.epochs or 0 for r in folds) / n}
    means["seconds_per_fold"] = sum(r.seconds for r in folds) / n
    return {**labels, "runs": len(folds), "summary": summarize(folds), **means}


def _model_runs(options: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(label, extra ``ahop fit`` arguments) per model: the Hopfield pooling once per similarity,
    then the deep baselines (they keep the instance MLP's options; the pooling has none)."""
    runs = []
    for network in options.networks:
        if network != "hopfield":
            runs.append((f"{network} (baseline)", [*BASELINE_ARGS, network]))
            continue
        runs += [(f"hopfield ({s})", [SIMILARITY, s]) for s in options.similarities]
    return runs


def run_datasets(options: argparse.Namespace) -> list[dict[str, Any]]:
    """Per data set: the pooled logistic-regression baselines (unless ``--skip-baselines``),
    then every model, all on the same folds."""
    rows = []
    for dataset in options.datasets:
        for index, (label, model_args) in enumerate(_model_runs(options)):
            protocol = options.protocol
            if index == 0 and not options.skip_baselines:
                protocol = dataclasses.replace(protocol, baselines=list(BASELINES))
            key = f"{dataset}/{label}/{protocol.selection or 'default'}"
            evaluation = _run(options, key, [*_config_args(dataset), *model_args], protocol)
            models = {BASELINES[n]: folds for n, folds in evaluation.baselines.items()}
            for model, folds in {**models, label: evaluation.folds}.items():
                rows.append(_row(folds, dataset=dataset, model=model))
                auroc = _pm(rows[-1]["summary"].get("test/auroc", {}))
                print(f"{dataset} {model}: AUROC {auroc} ({len(folds)} folds)", flush=True)
    return rows


def run_mnist_bags(options: argparse.Namespace) -> list[dict[str, Any]]:
    """Per training-bag count and similarity: one ``ahop cv`` of ``configs/mil_mnist_bags.yaml``
    (one fixed test set, ``--mnist-seeds`` repeats)."""
    rows = []
    protocol = dataclasses.replace(options.protocol, repeats=options.mnist_seeds, folds=None)
    for count in options.bag_counts:
        for similarity in options.similarities:
            args = ["--config", str(ROOT / "configs" / "mil_mnist_bags.yaml"), SIMILARITY]
            args += [similarity, "--data.init_args.num_train_bags", str(count)]
            args += ["--data.init_args.num_test_bags", str(options.test_bags)]
            key = f"mnist_bags{count}/{similarity}/{protocol.selection or 'default'}"
            folds = _run(options, key, args, protocol).folds
            model = f"hopfield ({similarity})"
            rows.append(_row(folds, train_bags=count, similarity=similarity, model=model))
            auroc = _pm(rows[-1]["summary"]["test/auroc"])
            print(f"mnist_bags {count} {similarity}: AUROC {auroc}")
    return rows


def _pm(entry: dict[str, float], key: str = "") -> str:
    """``mean ± std`` in percent (``key``: ``repeat_`` for the spread of the repeat means)."""
    if not entry:
        return "-"
    mean, std = entry[f"{key}mean"], entry[f"{key}std"]
    if (entry.get("repeats", 1) if key else entry.get("n", 1)) < 2:
        return format_number(100 * mean, 1, missing="nan")
    return format_mean_std(100 * mean, 100 * std, 1, missing="nan")


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its AUROC / accuracy cells over folds and over repeats (:func:`_pm`)."""
    cells = dict(row)
    for metric in ("auroc", "acc"):
        entry = row["summary"].get(f"test/{metric}", {})
        cells |= {metric: _pm(entry), f"{metric}_repeats": _pm(entry, "repeat_")}
    return cells


def dataset_table(rows: list[dict[str, Any]]) -> str:
    """One row per (data set, model); Δ = AUROC points above mean-pool + logistic regression on
    the same folds (the baseline every learned pooling has to beat)."""
    reference = {
        r["dataset"]: r["summary"]["test/auroc"]["mean"]
        for r in rows
        if r["model"].startswith("mean-pool")
    }
    body = []
    for r in map(_cells, rows):
        auroc, base = r["summary"].get("test/auroc", {}), reference.get(r["dataset"])
        r["delta"] = f"{100 * (auroc['mean'] - base):+.1f}" if auroc and base is not None else "-"
        r["epoch_cell"] = f"{r['epochs']:.0f}" if r["epochs"] else "-"
        body.append({**r, "published": PUBLISHED.get(r["dataset"], "-")})
    return format_rows(DATASET_COLUMNS, body)


def plot(rows: list[dict[str, Any]], x: str, series: str, name: str) -> Path:
    """Test ROC-AUC (mean ± std) of ``rows``: bars per data set and model (``x="dataset"``), or
    lines against the training bags per similarity (``x="train_bags"``)."""
    figure = Figure(figsize=(7 if x == "dataset" else 5, 3.5))
    axis = figure.add_subplot(1, 1, 1)
    groups = list(dict.fromkeys(r[x] for r in rows))
    labels = list(dict.fromkeys(r[series] for r in rows))
    width = 0.8 / max(1, len(labels))
    for s, label in enumerate(labels):
        chosen = [r for r in rows if r[series] == label]
        auroc = [r["summary"]["test/auroc"] for r in chosen]
        means = [a["mean"] for a in auroc]
        if x == "dataset":  # the spread of the repeat means when there are repeats
            spread = [a["repeat_std"] if a["repeats"] > 1 else a["std"] for a in auroc]
            positions = [groups.index(r[x]) + s * width for r in chosen]
            axis.bar(positions, means, width=width, yerr=spread, capsize=3, label=label)
        else:
            spread, xs = [a["std"] for a in auroc], [r[x] for r in chosen]
            axis.errorbar(xs, means, yerr=spread, marker="o", capsize=3, label=label)
    if x == "dataset":
        axis.set_xticks([d + width * (len(labels) - 1) / 2 for d in range(len(groups))])
        axis.set_xticklabels(groups, fontsize=8)
        axis.set_ylabel("test ROC-AUC (mean ± std)")
        axis.set_ylim(0.4, 1.0)
    else:
        axis.set_xscale("log")
        axis.set_xticks(sorted(groups), labels=[str(c) for c in sorted(groups)])
        axis.minorticks_off()
        axis.set_xlabel("training bags (mean bag length 10)")
        axis.set_ylabel("test ROC-AUC")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, name)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options; the rest are ``ahop cv`` options (``options.protocol``) and
    ``ahop fit`` arguments of every run (``options.fit_args``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    default = ["elephant", "musk1", "musk2", "ucsb_breast_cancer"]
    parser.add_argument("--datasets", nargs="*", default=default, choices=DATASETS)
    parser.add_argument(
        "--similarities", nargs="*", default=["adaptive"], help="of the Hopfield pooling"
    )
    networks = ["hopfield", "attention", "mean"]
    note = "bag networks (attention / mean: the deep baselines)"
    parser.add_argument("--networks", nargs="*", default=networks[:2], choices=networks, help=note)
    note = "no pooled logistic-regression rows"
    parser.add_argument("--skip-baselines", action="store_true", help=note)
    parser.add_argument("--bag-counts", nargs="*", type=int, default=list(BAG_COUNTS))
    parser.add_argument("--test-bags", type=int, default=1000, help="MNIST-bags test bags")
    parser.add_argument("--mnist-seeds", type=int, default=1, help="MNIST-bags runs per point")
    parser.add_argument("--skip-datasets", action="store_true")
    parser.add_argument("--skip-mnist-bags", action="store_true")
    note = "folder of the files (or its mil/)"
    parser.add_argument("--data-dir", type=Path, default=SHARED, help=note)
    parser.add_argument("--output-dir", default="runs/benchmarks/mil", help="parent of run folders")
    add_threads_option(parser)
    options, rest = parser.parse_known_args(argv)
    cv, options.fit_args = cv_options(rest)
    given = {"--resume": cv.resume, "--storage": cv.storage, "--workers": cv.workers != 1}
    given["--output_dir"] = cv.output_dir != "runs/cv"  # this benchmark's is --output-dir
    if any(given.values()):
        parser.error(f"{[k for k, v in given.items() if v]}: ahop cv options it does not take")
    options.protocol = protocol_from_options(cv)
    options.search, options.max_folds = cv.search, cv.max_folds
    return options


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = parse_args(argv)
    torch.set_num_threads(options.threads)
    report: dict[str, Any] = {"datasets": [], "mnist_bags": [], "options": vars(options)}
    if not options.skip_datasets and options.datasets:
        report["datasets"] = run_datasets(options)
    if not options.skip_mnist_bags and options.bag_counts:
        report["mnist_bags"] = run_mnist_bags(options)
    print(
        f"\ntorch {torch.__version__}, {options.threads} threads, {machine()}, {os.cpu_count()} CPUs"
    )
    if report["datasets"]:
        protocol = options.protocol
        search = f", Optuna search {options.search} per training fold" if options.search else ""
        print(
            f"\nk-fold CV x {protocol.repeats} repeat(s), "
            f"selection {protocol.selection or 'the task default'}{search} "
            "(x100): (folds) = mean ± std over all folds; (repeats) = mean ± std of the "
            "per-repeat means (the published convention)"
        )
        print(dataset_table(report["datasets"]))
        print(f"plot: {plot(report['datasets'], 'dataset', 'model', 'mil_datasets')}")
    if report["mnist_bags"]:
        print(f"\nMNIST-bags, {options.test_bags} test bags (x100)")
        print(format_rows(MNIST_COLUMNS, map(_cells, report["mnist_bags"])))
        print(f"plot: {plot(report['mnist_bags'], 'train_bags', 'similarity', 'mil_mnist_bags')}")
    save_json("mil", report, indent=2)
    return report


if __name__ == "__main__":
    main()
