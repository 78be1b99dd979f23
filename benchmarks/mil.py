"""Multiple-instance learning benchmark through the evaluation engine of ``ahop cv``.

1. **MIL data sets** (every one the MIL datamodule reads: elephant, fox, tiger, musk1, musk2,
   ucsb_breast_cancer, synthetic; files in ``--data-dir`` or ``--data-dir/mil``). Each
   (data set, model) is one :func:`ahop_cli.evaluate.evaluate` run, i.e. exactly
   ``ahop cv --config configs/mil.yaml --data.init_args.dataset <name> --repeats R`` with
   ``--model.init_args.network.similarity <s>`` (the Hopfield pooling, ``--similarities``) or
   ``--model.init_args.pooling attention | mean`` (the deep baselines, ``--networks``):
   stratified k-fold over bags repeated with new fold seeds, the model chosen on the training
   folds only (``--selection``, default the engine's ``inner_cv``), optionally after an Optuna
   search per training fold (``--search configs/search/mil.yaml``). Beside them, on the same
   folds: mean-pool and max-pool + logistic regression (scikit-learn defaults). Shown next to
   the published numbers (Ramsauer et al. 2020, Hopfield pooling ROC-AUC; Ilse et al. 2018,
   attention-MIL accuracy).
2. **MNIST-bags** (``configs/mil_mnist_bags.yaml``): test AUROC vs number of training bags, one
   fixed test set, ``--mnist-seeds`` repeats.

Commands::

    python benchmarks/mil.py --datasets elephant ucsb_breast_cancer musk1 musk2 --skip-mnist-bags
    python benchmarks/mil.py --datasets elephant --repeats 5                 # published protocol
    python benchmarks/mil.py --datasets ucsb_breast_cancer --search configs/search/mil.yaml
    python benchmarks/mil.py --skip-datasets --bag-counts 50 500

Every run keeps its own folder under ``--output-dir`` (per-fold results, TensorBoard, table,
box plot); ``--resume`` continues the runs of the same settings recorded in
``benchmarks/out/mil_runs.json`` (finished folds are skipped). Prints markdown tables; writes
``benchmarks/out/mil.json``, ``benchmarks/out/mil_datasets.png`` and
``benchmarks/out/mil_mnist_bags.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/mil.py` from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from ahop_cli.evaluate import Evaluation, Protocol, evaluate, start_run, summarize  # noqa: E402
from ahop_cli.search import load_search_file  # noqa: E402
from benchmarks.common import OUT, add_threads_option, markdown_table, save_figure  # noqa: E402
from datamodules.mil import MIL_DATASETS, BagSet, MILDataModule  # noqa: E402
from tasks.reports import format_mean_std, format_number  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
#: data sets with k-fold CV (``auto`` is an alias, ``mnist_bags`` has its own section, ``csv`` /
#: ``mat`` read a file of your own via ``--override --data.init_args.path FILE``)
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
#: a deep baseline: the same instance MLP and training, another pooling (``+ name``)
BASELINE_ARGS = [
    "--model.init_args.network",
    '{"embedding_dim": 64, "num_embedding_layers": 2, "dropout": 0.1}',
    "--model.init_args.pooling",
]
RUNS_FILE = OUT / "mil_runs.json"


def _config_args(dataset: str) -> list[str]:
    """Every bag set runs the one MIL config, as a user would: ``--data.init_args.dataset``."""
    return ["--config", str(ROOT / "configs" / "mil.yaml"), "--data.init_args.dataset", dataset]


def _protocol(options: argparse.Namespace, repeats: int, folds: int | None) -> Protocol:
    search = load_search_file(options.search) if options.search else None
    if search is not None and options.trials is not None:
        search["trials"] = options.trials
    return Protocol(
        repeats=repeats,
        folds=folds,
        selection=options.selection,
        inner_folds=options.inner_folds,
        monitor=options.monitor,
        search=search,
    )


def _run(options: argparse.Namespace, key: str, args: list[str], protocol: Protocol) -> Evaluation:
    """One evaluation; with ``--resume`` the folder recorded for the same ``key`` continues."""
    runs = json.loads(RUNS_FILE.read_text()) if RUNS_FILE.is_file() else {}
    record = runs.get(key)
    resume = None
    if options.resume and record and record["args"] == args and Path(record["run_dir"]).is_dir():
        resume = record["run_dir"]
    if resume is None:  # create the folder first, so an interrupted run can be resumed
        resume = str(start_run(args, protocol, options.output_dir))
        runs[key] = {"args": args, "run_dir": resume}
        OUT.mkdir(parents=True, exist_ok=True)
        RUNS_FILE.write_text(json.dumps(runs, indent=2))
    print(f"{key}: {resume}", flush=True)
    return evaluate(
        args,
        protocol,
        resume=resume,
        threads=options.threads,
        log=lambda line: print(f"  {line}", flush=True),
    )


def _row(evaluation: Evaluation) -> dict[str, Any]:
    folds = evaluation.folds
    return {
        "run_dir": str(evaluation.run_dir),
        "runs": len(folds),
        "summary": evaluation.summary,
        "epochs": sum(r.epochs or 0 for r in folds) / max(1, len(folds)),
        "seconds_per_fold": sum(r.seconds for r in folds) / max(1, len(folds)),
        "seconds": sum(r.seconds for r in folds),
        "bags": sum(folds[0].sizes.values()) if folds else 0,
        "inner": _inner_means(evaluation),
    }


def _inner_means(evaluation: Evaluation) -> dict[str, float]:
    """Mean over folds of the inner-validation evidence behind each fold's choice."""
    values: dict[str, list[float]] = {}
    for fold in evaluation.folds:
        for name, value in fold.selection.get("evidence", {}).items():
            values.setdefault(name, []).append(value)
    return {name: sum(v) / len(v) for name, v in values.items()}


def _extra_args(options: argparse.Namespace) -> list[str]:
    extra = ["--data.init_args.data_dir", str(options.data_dir)]
    if options.max_epochs:
        extra += ["--trainer.max_epochs", str(options.max_epochs)]
    return extra + list(options.override or [])


@dataclass
class BaselineFold:
    """One outer fold of a non-neural baseline (what :func:`summarize` reads of a fold)."""

    repeat: int
    fold: int
    metrics: dict[str, float]
    seconds: float
    test_ids: list


def pooled_features(bags: BagSet, how: str) -> np.ndarray:
    """One vector per bag: the mean or the max of its (standardised) instances."""
    reduce = {"mean": torch.mean, "max": torch.amax}[how]
    return torch.stack([reduce(bags.bag(i), dim=0) for i in range(len(bags))]).numpy()


def pooled_logistic_regression(
    dataset: str, data_dir: Path, how: str, repeats: int, seed: int = 0, folds: int = 10
) -> list[BaselineFold]:
    """Mean- or max-pooling + logistic regression (scikit-learn defaults, pooled features
    standardised on the training bags) on exactly the outer folds of ``ahop cv``: repeat ``r``
    is fold seed ``seed + r``, the datamodule's stratified k-fold; all non-test bags train."""
    results = []
    for repeat in range(repeats):
        for fold in range(folds):
            start = time.perf_counter()
            datamodule = MILDataModule(
                dataset,
                str(data_dir),
                num_folds=folds,
                fold=fold,
                seed=seed + repeat,
                val_fraction=0.0,
            )
            datamodule.setup("fit")
            train, test = datamodule.train_set, datamodule.test_set
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
            model.fit(pooled_features(train, how), train.labels.numpy())
            probability = model.predict_proba(pooled_features(test, how))[:, 1]
            labels = test.labels.numpy()
            metrics = {
                "test/auroc": float(roc_auc_score(labels, probability)),
                "test/acc": float(np.mean((probability >= 0.5) == labels)),
            }
            seconds = time.perf_counter() - start
            test_ids = datamodule.split_ids("test")
            results.append(BaselineFold(repeat, fold, metrics, seconds, test_ids))
    return results


def run_baselines(options: argparse.Namespace) -> list[dict[str, Any]]:
    """The pooled logistic-regression baselines on every data set, same folds as the models."""
    rows = []
    folds = options.folds or 10
    for dataset in options.datasets:
        for how in ("mean", "max"):
            results = pooled_logistic_regression(
                dataset, options.data_dir, how, options.repeats, folds=folds
            )
            row = {
                "dataset": dataset,
                "model": f"{how}-pool + logistic regression",
                "runs": len(results),
                "summary": summarize(results),
                "epochs": 0,
                "seconds_per_fold": sum(r.seconds for r in results) / len(results),
                "bags": None,
                "inner": {},
            }
            print(f"{dataset} {row['model']}: AUROC {_pm(row['summary']['test/auroc'])}")
            rows.append(row)
    return rows


def _model_runs(options: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(label, extra ``ahop fit`` arguments) per model: the Hopfield pooling once per similarity,
    then the deep baselines (their pooling has no similarity)."""
    runs = []
    for network in options.networks:
        if network == "hopfield":
            for similarity in options.similarities:
                runs.append(
                    (
                        f"hopfield ({similarity})",
                        ["--model.init_args.network.similarity", similarity],
                    )
                )
        else:
            # the baselines keep the instance MLP's options; the pooling's own are dropped
            runs.append((f"{network} (baseline)", [*BASELINE_ARGS, network]))
    return runs


def run_datasets(options: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    protocol = _protocol(options, options.repeats, options.folds)
    for dataset in options.datasets:
        for label, model_args in _model_runs(options):
            args = [*_config_args(dataset), *model_args, *_extra_args(options)]
            key = f"{dataset}/{label}/{options.selection}/{options.search or 'nosearch'}"
            evaluation = _run(options, key, args, protocol)
            row = {"dataset": dataset, "model": label, **_row(evaluation)}
            auroc = row["summary"].get("test/auroc", {})
            print(f"{dataset} {label}: AUROC {_pm(auroc)} ({row['runs']} folds)", flush=True)
            rows.append(row)
    return rows


def run_mnist_bags(options: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    protocol = _protocol(options, options.mnist_seeds, None)
    for count in options.bag_counts:
        for similarity in options.similarities:
            args = ["--config", str(ROOT / "configs" / "mil_mnist_bags.yaml")]
            args += ["--model.init_args.network.similarity", similarity, *_extra_args(options)]
            args += ["--data.init_args.num_train_bags", str(count)]
            args += ["--data.init_args.num_test_bags", str(options.test_bags)]
            key = (
                f"mnist_bags{count}/{similarity}/{options.selection}/{options.search or 'nosearch'}"
            )
            row = {
                "train_bags": count,
                "similarity": similarity,
                "model": f"hopfield ({similarity})",
            }
            row.update(_row(_run(options, key, args, protocol)))
            print(f"mnist_bags {count} {similarity}: AUROC {_pm(row['summary']['test/auroc'])}")
            rows.append(row)
    return rows


def _pm(entry: dict[str, float], key: str = "") -> str:
    """``mean ± std`` in percent (``key``: ``repeat_`` for the spread of the repeat means)."""
    if not entry:
        return "-"
    mean, std = entry[f"{key}mean"], entry[f"{key}std"]
    count = entry.get("repeats", 1) if key else entry.get("n", 1)
    if count < 2:
        return format_number(100 * mean, 1, missing="nan")
    return format_mean_std(100 * mean, 100 * std, 1, missing="nan")


def dataset_table(rows: list[dict[str, Any]]) -> str:
    """One row per (data set, model); Δ = AUROC points above mean-pool + logistic regression on
    the same folds (the baseline every learned pooling has to beat)."""
    headers = ["data set", "model", "folds", "test AUROC (folds)", "test AUROC (repeats)"]
    headers += ["Δ AUROC vs mean-pool LR", "test acc (folds)", "test acc (repeats)", "epochs"]
    headers += ["s / fold", "published"]
    reference = {
        r["dataset"]: r["summary"]["test/auroc"]["mean"]
        for r in rows
        if r["model"].startswith("mean-pool")
    }
    body = []
    for r in rows:
        auroc = r["summary"].get("test/auroc", {})
        delta = (
            f"{100 * (auroc['mean'] - reference[r['dataset']]):+.1f}"
            if auroc and r["dataset"] in reference
            else "-"
        )
        body.append(
            [
                r["dataset"],
                r["model"],
                r["runs"],
                _pm(auroc),
                _pm(auroc, "repeat_"),
                delta,
                _pm(r["summary"].get("test/acc", {})),
                _pm(r["summary"].get("test/acc", {}), "repeat_"),
                f"{r['epochs']:.0f}" if r["epochs"] else "-",
                f"{r['seconds_per_fold']:.1f}",
                PUBLISHED.get(r["dataset"], "-"),
            ]
        )
    return markdown_table(headers, body)


def mnist_table(rows: list[dict[str, Any]]) -> str:
    headers = ["train bags", "similarity", "runs", "test AUROC", "test acc", "epochs", "s / run"]
    body = [
        [
            r["train_bags"],
            r["similarity"],
            r["runs"],
            _pm(r["summary"]["test/auroc"]),
            _pm(r["summary"]["test/acc"]),
            f"{r['epochs']:.0f}",
            f"{r['seconds_per_fold']:.1f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def plot_datasets(rows: list[dict[str, Any]]) -> Path:
    figure = Figure(figsize=(7, 3.5))
    axis = figure.add_subplot(1, 1, 1)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / max(1, len(models))
    for s, model in enumerate(models):
        chosen = [r for r in rows if r["model"] == model]
        positions = [datasets.index(r["dataset"]) + s * width for r in chosen]
        auroc = [r["summary"]["test/auroc"] for r in chosen]
        axis.bar(
            positions,
            [a["mean"] for a in auroc],
            width=width,
            yerr=[a["repeat_std"] if a["repeats"] > 1 else a["std"] for a in auroc],
            capsize=3,
            label=model,
        )
    axis.set_xticks([d + width * (len(models) - 1) / 2 for d in range(len(datasets))])
    axis.set_xticklabels(datasets, fontsize=8)
    axis.set_ylabel("test ROC-AUC (mean ± std)")
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


def selection_report(run_dirs: Sequence[Path]) -> str:
    """How well epoch-selection rules generalise, measured on inner validation folds only.

    Uses the inner-fold curves that ``inner_cv`` saves per outer fold (``result.json``): for each
    held-out inner fold ``h``, a rule picks an epoch count from the *other* inner folds and is
    scored on fold ``h`` (leave-one-inner-fold-out). No test bag is involved.
    """
    import numpy as np

    rules = {
        "inner k-1 folds, mean val/loss": ("pool", "val/loss", "min"),
        "inner k-1 folds, mean val/auroc": ("pool", "val/auroc", "max"),
        "one inner fold, val/loss (a small split)": ("single", "val/loss", "min"),
        "last epoch (fixed schedule)": ("last", None, None),
    }
    scores: dict[str, list[tuple[float, float, float]]] = {name: [] for name in rules}
    oracle: list[float] = []
    for run_dir in run_dirs:
        for path in sorted(Path(run_dir).glob("folds/*/result.json")):
            curves = json.loads(path.read_text())["selection"].get("inner_curves") or []
            if len(curves) < 2:
                continue
            length = min(len(c) for c in curves)
            value = {
                m: np.array([[e[m] for e in c[:length]] for c in curves])
                for m in ("val/loss", "val/auroc")
            }
            for held in range(len(curves)):
                others = [j for j in range(len(curves)) if j != held]
                oracle.append(float(value["val/auroc"][held].max()))
                for name, (kind, metric, mode) in rules.items():
                    pick = np.argmin if mode == "min" else np.argmax
                    if kind == "pool":
                        chosen = [int(pick(value[metric][others].mean(axis=0)))]
                    elif kind == "single":
                        chosen = [int(pick(value[metric][j])) for j in others]
                    else:
                        chosen = [length - 1]
                    for epoch in chosen:
                        scores[name].append(
                            (
                                float(value["val/auroc"][held, epoch]),
                                float(value["val/loss"][held, epoch]),
                                epoch + 1,
                            )
                        )
    rows = [
        [
            name,
            len(vals),
            f"{100 * np.mean([v[0] for v in vals]):.1f}",
            f"{np.mean([v[1] for v in vals]):.3f}",
            f"{np.mean([v[2] for v in vals]):.1f}",
            f"{100 * np.mean([v[2] <= 2 for v in vals]):.0f} %",
        ]
        for name, vals in scores.items()
        if vals
    ]
    rows.append(
        [
            "(oracle: best epoch of the held-out fold)",
            len(oracle),
            f"{100 * np.mean(oracle):.1f}" if oracle else "-",
            "",
            "",
            "",
        ]
    )
    headers = ["rule (epochs chosen on)", "choices", "held-out inner AUROC", "held-out inner loss"]
    headers += ["mean epochs", "epoch <= 2"]
    return markdown_table(headers, rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        nargs="*",
        default=["elephant", "musk1", "musk2", "ucsb_breast_cancer"],
        choices=DATASETS,
    )
    parser.add_argument(
        "--similarities", nargs="*", default=["adaptive"], help="of the Hopfield pooling"
    )
    parser.add_argument(
        "--networks",
        nargs="*",
        default=["hopfield", "attention"],
        choices=["hopfield", "attention", "mean"],
        help="bag networks (attention / mean: the deep baselines)",
    )
    parser.add_argument(
        "--skip-baselines", action="store_true", help="no pooled logistic-regression rows"
    )
    parser.add_argument("--folds", type=int, default=None, help="outer folds (default: config)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the k-fold CV")
    parser.add_argument("--selection", default="inner_cv", help="inner_cv | validation | fixed")
    parser.add_argument("--inner-folds", type=int, default=5)
    parser.add_argument("--monitor", default=None, help="selecting metric (default: val/loss)")
    parser.add_argument("--search", default=None, help="search YAML: nested Optuna search")
    parser.add_argument("--trials", type=int, default=None, help="trials per search")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the configs'")
    parser.add_argument("--override", nargs="*", default=[], help="more `ahop fit` arguments")
    parser.add_argument("--bag-counts", nargs="*", type=int, default=list(BAG_COUNTS))
    parser.add_argument("--test-bags", type=int, default=1000, help="MNIST-bags test bags")
    parser.add_argument("--mnist-seeds", type=int, default=1, help="MNIST-bags runs per point")
    parser.add_argument("--skip-datasets", action="store_true")
    parser.add_argument("--skip-mnist-bags", action="store_true")
    parser.add_argument(
        "--data-dir", type=Path, default=SHARED, help="folder of the files (or its mil/)"
    )
    parser.add_argument("--output-dir", default="runs/benchmarks/mil", help="parent of run folders")
    parser.add_argument("--resume", action="store_true", help="continue runs of the same settings")
    parser.add_argument(
        "--selection-report",
        nargs="*",
        type=Path,
        help="only print the inner-validation report of epoch-selection rules for these run folders",
    )
    add_threads_option(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = parse_args(argv)
    if options.selection_report:
        table = selection_report(options.selection_report)
        print(table)
        return {"selection_report": table}
    torch.set_num_threads(options.threads)
    report: dict[str, Any] = {"datasets": [], "mnist_bags": [], "options": vars(options)}
    if not options.skip_datasets and options.datasets:
        if not options.skip_baselines:
            report["datasets"] += run_baselines(options)
        report["datasets"] += run_datasets(options)
    if not options.skip_mnist_bags and options.bag_counts:
        report["mnist_bags"] = run_mnist_bags(options)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\ntorch {torch.__version__}, {options.threads} threads, {machine}")
    if report["datasets"]:
        search = f", Optuna search {options.search} per training fold" if options.search else ""
        print(
            f"\nk-fold CV x {options.repeats} repeat(s), selection {options.selection}{search} "
            "(x100): (folds) = mean ± std over all folds; (repeats) = mean ± std of the "
            "per-repeat means (the published convention)"
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
