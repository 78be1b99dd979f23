"""Tabular accuracy benchmark: the Hopfield classifiers against logistic regression and gradient
boosting, on the same splits and the same preprocessed tensors.

Data (offline copies in ``../shared/data/tabular``, see its README; scikit-learn bundles digits):

* the 21 pre-split UCI sets: their 4 fixed train / val / test splits (``configs/tabular_uci.yaml``);
* shrutime and blastchar: 5 stratified 65 / 15 / 20 % splits (seeds 0..4, the Hopular protocol),
  with the data settings of ``configs/tabular_<name>.yaml``;
* digits (1,797 rows, 64 columns, 10 classes): 5 stratified 65 / 15 / 20 % splits;
* any CSV: ``--csv-path file.csv --target column [--drop-columns ...]`` (5 stratified splits).

Models:

* ``retrieval-<similarity>``: :class:`tasks.tabular.TabularClassifier` with the default network
  (retrieval from the training rows), evaluated by ``ahop cv``'s engine
  (:func:`engine_evaluate`, the one place that calls :func:`ahop_cli.evaluate.evaluate`; selection
  ``validation``): each split is trained exactly as
  ``ahop fit --config <config>`` trains it and its best checkpoint (the task's model-selection
  rule: lowest ``val/loss``, early stopping on it) is tested once. ``<similarity>``: dot,
  euclidean, adaptive, manhattan, ...
* ``lookup-<similarity>``: the same task with ``network: lookup`` and the lookup model's recipe
  (:data:`LOOKUP`: the settings of the earlier configs), same selection rule;
* ``logreg``, ``hist-gb`` (scikit-learn), ``lightgbm``, ``xgboost``, ``catboost`` (the ``bench``
  extra; skipped when not installed): default settings, fit on the training rows, 1 thread.

Commands::

    python benchmarks/tabular.py --quick                       # a few sets, 1 split each
    python benchmarks/tabular.py --uci --csv shrutime --seed-ids 0 --save benchmarks/out/p1.csv
    python benchmarks/tabular.py --report benchmarks/out/p*.csv  # merge pieces into one report
    python benchmarks/tabular.py --csv-path my.csv --target label --drop-columns id
    # validation-only tuning: each grid point is a set of CLI overrides; test rows never scored
    python benchmarks/tabular.py --tune --uci --csv shrutime --seed-ids 0 1 --models retrieval-euclidean \\
        --grid model.init_args.context_size=32,96 model.init_args.memory_refresh=full,frozen

Prints markdown tables: test accuracy per set (mean ± std over splits), mean accuracy and mean rank
over the UCI sets and over the mid-size sets, win / tie / loss against hist-gb, the published
numbers for shrutime / blastchar, median fit seconds. The baselines are checked to be tested on
the rows the evaluation engine tested. ``--tune`` reads validation scores only (the best
checkpoint's ``val/selection``; the engine tests that checkpoint too, but no test number is read).
Seconds per epoch and peak memory against the rows: ``benchmarks/tabular_speed.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/tabular.py` from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from ahop_cli import cli as ahop_cli  # noqa: E402
from ahop_cli.checkpoints import read_checkpoint  # noqa: E402
from ahop_cli.evaluate import Protocol, evaluate  # noqa: E402
from datamodules.tabular_sources import uci_names  # noqa: E402
from tasks.quiet import LIGHTNING_LOGGERS, quiet_lightning  # noqa: E402
from tasks.reports import format_mean_std, markdown_table  # noqa: E402

#: loggers hidden below ERROR during the fits: Lightning's and the datamodules' (``ahop.data``)
QUIET_LOGGERS = (*LIGHTNING_LOGGERS, "ahop.data")
DATA_ROOT = ROOT.parent / "shared" / "data" / "tabular"
CONFIGS = ROOT / "configs"
OUT_DIR = ROOT / "benchmarks" / "out"
CSV_SETS = ("shrutime", "blastchar")
#: the sets with thousands of rows: they weigh more than the UCI mean (see docs/results_tabular.md)
MID_SIZE = ("shrutime", "blastchar", "digits")
#: the configs' default (euclidean) first, then the dot and adaptive variants the issue compares
DEFAULT_MODELS = ("retrieval-euclidean", "retrieval-dot", "retrieval-adaptive", "lookup-dot")
#: |accuracy difference| (points, mean over splits) below which a comparison with hist-gb is a tie
TIE_POINTS = 0.5

#: Published test accuracy (%) on the Hopular protocol (5 stratified splits), from the data README.
PUBLISHED: dict[str, dict[str, float]] = {
    "shrutime": {"Hopular": 86.12, "XGBoost": 84.58, "CatBoost": 86.39, "LightGBM": 86.18},
    "blastchar": {"Hopular": 80.05, "XGBoost": 76.78, "CatBoost": 80.13, "LightGBM": 79.92},
}

#: the lookup model's recipe (the settings of the configs before the retrieval model), as overrides
LOOKUP: tuple[str, ...] = (
    "--model.init_args.network=lookup",
    "--model.init_args.embedding_dim=64",
    "--model.init_args.quantity=32",
    "--model.init_args.num_heads=4",
    "--model.init_args.dropout=0.1",
    "--model.init_args.feature_embedding=linear",
    "--model.init_args.early_stopping_patience=8",
    "--model.init_args.optimizer.init_args.lr=0.01",
    "--model.init_args.optimizer.init_args.weight_decay=0.01",
    "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.CosineAnnealingLR",
    "--model.init_args.lr_scheduler.init_args.T_max=40",
    "--trainer.max_epochs=40",
)

#: prefix of a Hopfield model name -> CLI overrides of that network (the suffix is the similarity)
NETWORKS: dict[str, tuple[str, ...]] = {"retrieval": (), "lookup": LOOKUP}


# ----------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Split:
    """One train / val / test split of one data set: a config and its data overrides."""

    dataset: str
    index: int
    config: Path
    overrides: tuple[str, ...] = ()


def uci_splits(names: Iterable[str], folds: Iterable[int]) -> list[Split]:
    """The predefined UCI splits ``folds`` (0..3) of each UCI folder in ``names``."""
    config = CONFIGS / "tabular_uci.yaml"
    return [
        Split(
            name,
            fold,
            config,
            (
                f"--data.init_args.name={name}",
                f"--data.init_args.data_dir={DATA_ROOT}",
                f"--data.init_args.fold={fold}",
            ),
        )
        for name in names
        for fold in folds
    ]


def stratified_splits(
    name: str, config: Path, seeds: Iterable[int], data: Sequence[str] = ()
) -> list[Split]:
    """Stratified splits (one per seed) of the data set a config (plus ``data`` overrides) reads."""
    return [Split(name, s, config, (*data, f"--data.init_args.seed={s}")) for s in seeds]


def csv_splits(names: Iterable[str], seeds: Iterable[int]) -> list[Split]:
    """shrutime / blastchar with ``configs/tabular_<name>.yaml``'s data settings."""
    return [
        split
        for name in names
        for split in stratified_splits(
            name,
            CONFIGS / f"tabular_{name}.yaml",
            seeds,
            (f"--data.init_args.data_dir={DATA_ROOT}",),
        )
    ]


def digits_splits(seeds: Iterable[int]) -> list[Split]:
    """scikit-learn's digits, 65 / 15 / 20 % stratified splits."""
    data = (
        "--data.init_args.source=sklearn",
        "--data.init_args.name=digits",
        "--data.init_args.val_size=0.15",
        "--data.init_args.test_size=0.2",
    )
    return stratified_splits("digits", CONFIGS / "tabular.yaml", seeds, data)


def any_csv_splits(
    path: Path, target: str, drop: Sequence[str], seeds: Iterable[int]
) -> list[Split]:
    """Any CSV file, 65 / 15 / 20 % stratified splits, the generic config's model."""
    data = [
        "--data.init_args.source=csv",
        f"--data.init_args.csv_path={path}",
        f"--data.init_args.target={target}",
        "--data.init_args.val_size=0.15",
        "--data.init_args.test_size=0.2",
    ]
    if drop:
        data.append(f"--data.init_args.drop_columns=[{', '.join(drop)}]")
    return stratified_splits(path.stem, CONFIGS / "tabular.yaml", seeds, data)


# ----------------------------------------------------------------------------- baselines
def _lightgbm(seed: int) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1)


def _xgboost(seed: int) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(random_state=seed, n_jobs=1)


def _catboost(seed: int) -> Any:
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        random_seed=seed, thread_count=1, verbose=0, allow_writing_files=False
    )


#: baseline name -> (package it needs, factory of a default-settings classifier from a seed)
BASELINES: dict[str, tuple[str, Callable[[int], Any]]] = {
    "logreg": ("sklearn", lambda seed: LogisticRegression(max_iter=2000)),
    "hist-gb": ("sklearn", lambda seed: HistGradientBoostingClassifier(random_state=seed)),
    "lightgbm": ("lightgbm", _lightgbm),
    "xgboost": ("xgboost", _xgboost),
    "catboost": ("catboost", _catboost),
}


def available_baselines() -> list[str]:
    """The baselines whose package is installed."""
    return [n for n, (package, _) in BASELINES.items() if importlib.util.find_spec(package)]


# ----------------------------------------------------------------------------- results
@dataclass
class Result:
    """One model on one split."""

    dataset: str
    split: int
    model: str
    val_acc: float
    test_acc: float = float("nan")
    fit_s: float = float("nan")
    epoch_s: float = float("nan")
    epochs: int = 0
    best_epoch: int = -1
    peak_mib: float = float("nan")
    setting: str = ""
    sel_min_loss: float = float("nan")
    sel_max_acc: float = float("nan")
    sel_max_acc_then_loss: float = float("nan")
    sel_last: float = float("nan")


def accuracy(predicted: np.ndarray | torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of rows whose predicted class equals the target."""
    return float((torch.as_tensor(predicted) == target).float().mean())


def model_overrides(model: str) -> tuple[str, ...]:
    """CLI overrides of a Hopfield model name ``<network>-<similarity>``."""
    network, _, similarity = model.partition("-")
    if network not in NETWORKS or not similarity:
        raise ValueError(
            f"unknown model {model!r}: expected <network>-<similarity> with network in "
            f"{sorted(NETWORKS)}, or a baseline in {sorted(BASELINES)}"
        )
    return (*NETWORKS[network], f"--model.init_args.similarity={similarity}")


def build_cli(split: Split, overrides: Sequence[str], root: str, seed: int) -> Any:
    """The LightningCLI of ``split`` (its config + data overrides + ``overrides``), not run: the
    baselines read its datamodule (the same preprocessed tensors the Hopfield models see)."""
    args = [
        "--config",
        str(split.config),
        *split.overrides,
        *overrides,
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        f"--seed_everything={seed}",
    ]
    return ahop_cli.main(args, run=False)


# ----------------------------------------------------------------------------- the CV engine
# Every Hopfield fit of this benchmark goes through `ahop cv`'s engine, and only through the two
# functions below (re-point them here when the engine's public API moves).
def engine_evaluate(
    args: Sequence[str], repeats: int, seed: int | None, max_folds: int | None
) -> Any:
    """``ahop cv`` (selection ``validation``: the config's early stopping, the best checkpoint by
    the task's ``val/selection``, tested once) of the ``ahop fit`` arguments ``args``; returns the
    engine's ``Evaluation``."""
    protocol = Protocol(repeats=repeats, seed=seed, selection="validation")
    return evaluate(list(args), protocol, output_dir=OUT_DIR / "cv", max_folds=max_folds, log=None)


def best_validation_score(fold: Any) -> float:
    """The monitored validation score (``val/selection`` = val/acc - 1e-4 val/loss: the validation
    accuracy within 0.001) of an engine fold's best checkpoint: validation rows only."""
    path = fold.selection.get("checkpoint") or ""
    if not path or not Path(path).is_file():
        return float("nan")
    for state in read_checkpoint(path).get("callbacks", {}).values():
        score = state.get("current_score") if isinstance(state, dict) else None
        if score is not None and state.get("monitor"):  # the checkpoint callback that kept it
            return float(score)
    return float("nan")


def evaluate_hopfield(
    splits: Sequence[Split], model: str, extra: Sequence[str] = ()
) -> tuple[list[Result], dict[int, list[int]]]:
    """The accuracy of a Hopfield model on the splits of one data set through ``ahop cv``
    (:func:`engine_evaluate`). Returns the results and each split's test rows.

    UCI sets: the first ``len(splits)`` predefined folds (one repeat); stratified sets: one repeat
    per seed (``seed``, ``seed + 1``, ...).
    """
    first = splits[0]
    ids = [s.index for s in splits]
    uci = first.config.name == "tabular_uci.yaml"
    if ids != list(range(ids[0], ids[0] + len(ids))) or (uci and ids[0] != 0):
        raise ValueError(
            f"{first.dataset}: the evaluation runs consecutive splits (UCI folds from 0); got {ids}"
        )
    data = [
        o
        for o in first.overrides
        if not o.startswith(("--data.init_args.fold=", "--data.init_args.seed="))
    ]
    args = ["--config", str(first.config), *data, *model_overrides(model), *extra]
    args.append("--trainer.logger=false")
    evaluation = engine_evaluate(
        args,
        repeats=1 if uci else len(ids),
        seed=None if uci else ids[0],
        max_folds=len(ids) if uci else None,
    )
    results, test_rows = [], {}
    for fold in evaluation.folds:
        index = fold.fold if uci else fold.seed
        test_rows[index] = [int(i) for i in fold.test_ids]
        epochs = fold.epochs or 0
        results.append(
            Result(
                first.dataset,
                index,
                model,
                val_acc=best_validation_score(fold),
                test_acc=fold.metrics["test/acc"],
                fit_s=fold.seconds,
                best_epoch=epochs - 1,
                setting=str(evaluation.run_dir),
            )
        )
    return results, test_rows


# ----------------------------------------------------------------------------- baselines' fits
def fit_baseline(datamodule: Any, name: str, seed: int, scored: Sequence[str]) -> dict[str, float]:
    """Fit a :data:`BASELINES` model on the training tensors; accuracy on the ``scored`` splits."""
    model = BASELINES[name][1](seed)
    x, y = datamodule.tensors("train")
    start = time.perf_counter()
    model.fit(x.numpy(), y.numpy())
    scores = {"fit_s": time.perf_counter() - start}
    for part in scored:
        x, y = datamodule.tensors(part)
        scores[f"{part}_acc"] = accuracy(np.asarray(model.predict(x.numpy())).reshape(-1), y)
    return scores


def run_baselines(
    split: Split,
    models: Sequence[str],
    scored: Sequence[str] = ("val", "test"),
    setting: str = "",
    check: dict[str, dict[int, list[int]]] | None = None,
) -> list[Result]:
    """Every baseline on one split (``check``: model -> split -> the test rows the engine tested,
    which must be this split's)."""
    with tempfile.TemporaryDirectory() as root:  # the config's data section, as the CLI reads it
        datamodule = build_cli(split, (), root, split.index).datamodule
    datamodule.setup("fit")
    rows = [int(i) for i in datamodule.split_indices["test"]]
    for other, tested in (check or {}).items():
        if split.index in tested and sorted(tested[split.index]) != sorted(rows):
            raise RuntimeError(f"{split.dataset} #{split.index}: {other} was tested on other rows")
    results = []
    for model in models:
        scores = fit_baseline(datamodule, model, split.index, scored)
        result = Result(split.dataset, split.index, model, setting=setting, **scores)
        results.append(result)
        test = f"  test {100 * result.test_acc:5.1f}" if "test" in scored else ""
        print(
            f"{split.dataset:>28} #{split.index} {model:>20}: val {100 * result.val_acc:5.1f}"
            f"{test}  fit {result.fit_s:.1f} s",
            flush=True,
        )
    return results


# ----------------------------------------------------------------------------- reports
def percent_mean_std(values: pd.Series) -> str:
    """``mean ± std`` of accuracies in % (population std over splits). pandas' arithmetic, not
    :func:`tasks.reports.mean_std`'s: the two differ in the last bit, which flips a printed second
    decimal now and then."""
    if values.empty:
        return ""
    return format_mean_std(100 * values.mean(), 100 * values.std(ddof=0), 2, missing="nan")


def per_set(results: pd.DataFrame, models: Sequence[str], column: str = "test_acc") -> pd.DataFrame:
    """Data set x model: mean of ``column`` over splits."""
    table = results.groupby(["dataset", "model"])[column].mean().unstack("model")
    return table.reindex(columns=list(models))


def summary_rows(table: pd.DataFrame, models: Sequence[str], label: str) -> list[list[str]]:
    """Mean accuracy, mean rank (1 = best) and win / tie / loss against hist-gb over ``table``."""
    n = len(table)
    ranks = table.rank(axis=1, ascending=False).mean()
    rows = [
        [f"**{label} mean ({n} sets)**", "", *(f"{100 * table[m].mean():.2f}" for m in models)],
        [f"**{label} mean rank**", "", *(f"{ranks[m]:.2f}" for m in models)],
    ]
    if "hist-gb" in table:
        diff = (table[list(models)].sub(table["hist-gb"], axis=0)) * 100
        cells = []
        for m in models:
            if m == "hist-gb":
                cells.append("-")
                continue
            wins = int((diff[m] >= TIE_POINTS).sum())
            losses = int((diff[m] <= -TIE_POINTS).sum())
            cells.append(f"{wins} / {n - wins - losses} / {losses}")
        rows.append([f"**{label} W / T / L vs hist-gb**", "", *cells])
    return rows


def accuracy_table(results: pd.DataFrame, models: Sequence[str], column: str = "test_acc") -> str:
    """Data set x model: mean ± std of ``column`` (%) over splits; UCI sets first, then their
    summary, then the mid-size sets with theirs and the published numbers."""
    datasets = list(dict.fromkeys(results["dataset"]))
    published = sorted({m for d in datasets for m in PUBLISHED.get(d, {})})

    def row(dataset: str) -> list[str]:
        part = results[results["dataset"] == dataset]
        cells = [percent_mean_std(part[part["model"] == m][column]) for m in models]
        return [dataset, str(part["split"].nunique()), *cells]

    table = per_set(results, models, column)
    uci = [d for d in datasets if d not in MID_SIZE and d not in CSV_SETS]
    rows = [row(d) for d in uci]
    if len(uci) > 1:
        rows += summary_rows(table.loc[uci], models, "UCI")
    mid = [d for d in datasets if d in MID_SIZE]
    rows += [row(d) for d in mid]
    if len(mid) > 1:
        rows += summary_rows(table.loc[mid], models, "mid-size")
    rows += [row(d) for d in datasets if d not in uci and d not in mid]
    header = ["data set", "splits", *models]
    text = markdown_table(header, rows)
    if published:
        pub_rows = [
            [d, *(f"{PUBLISHED[d].get(p, float('nan')):.2f}" for p in published)]
            for d in datasets
            if d in PUBLISHED
        ]
        text += "\n\nPublished (Hopular paper protocol, its own 5 splits):\n\n"
        text += markdown_table(["data set", *published], pub_rows)
    return text


def plot(results: pd.DataFrame, models: Sequence[str], path: Path) -> None:
    """PNG: grouped bars of mean test accuracy per data set (one panel for the UCI sets, one for
    the mid-size sets with the published numbers hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = results.groupby(["dataset", "model"])["test_acc"].agg(["mean", "std"]) * 100
    datasets = list(dict.fromkeys(results["dataset"]))
    panels = [
        ([d for d in datasets if d not in MID_SIZE], list(models), "UCI sets (fixed splits)"),
        (
            [d for d in datasets if d in MID_SIZE],
            [*models, *sorted({m for d in datasets for m in PUBLISHED.get(d, {})})],
            "Mid-size sets (stratified splits) vs published",
        ),
    ]
    panels = [p for p in panels if p[0]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 3.8 * len(panels)), squeeze=False)
    for ax, (names, bars, title) in zip(axes[:, 0], panels):
        width = 0.8 / len(bars)
        heights = []
        for j, bar in enumerate(bars):
            xs, means, errs = [], [], []
            for i, d in enumerate(names):
                if (d, bar) in stats.index:
                    mean, std = stats.loc[(d, bar)]
                elif bar in PUBLISHED.get(d, {}):
                    mean, std = PUBLISHED[d][bar], 0.0
                else:
                    continue
                xs.append(i + (j - (len(bars) - 1) / 2) * width)
                means.append(mean)
                errs.append(0.0 if np.isnan(std) else std)
            published = bar not in set(results["model"])
            ax.bar(
                xs,
                means,
                width,
                yerr=errs,
                color=plt.get_cmap("tab10")(j % 10),
                hatch="//" if published else None,
                label=f"{bar} (published)" if published else bar,
            )
            heights += means
        if heights:
            ax.set_ylim(max(0.0, min(heights) - 5), min(100.0, max(heights) + 3))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45 if len(names) > 4 else 0, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{title}: mean ± std over splits", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: pd.DataFrame, models: Sequence[str], out: Path | None) -> None:
    """Print the accuracy table; save the PNG to ``out``."""
    results = results[results["setting"] != "cost"]  # rows of the former --cost mode
    print("\n## Test accuracy (%), mean ± std over splits\n")
    print(accuracy_table(results, models))
    print(
        f"\n(W / T / L: per data set, mean test accuracy at least {TIE_POINTS} points above / "
        "within / below hist-gb's)"
    )
    fit = results.groupby("model")["fit_s"].median()
    print("\nmedian fit seconds per split: " + ", ".join(f"{m} {fit[m]:.1f}" for m in models))
    if out is not None:
        plot(results, models, out)
        print(f"\nplot: {out}")


def merge(paths: Sequence[Path]) -> tuple[pd.DataFrame, list[str]]:
    """Concatenate per-split CSVs; a (dataset, split, model) run twice keeps its last row. Models
    ordered: retrieval, lookup, then the baselines in :data:`BASELINES` order."""
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    frame["setting"] = frame["setting"].fillna("")
    frame["kind"] = np.where(frame["setting"] == "cost", "cost", "accuracy")
    frame = frame.drop_duplicates(["dataset", "split", "model", "kind"], keep="last")
    frame = frame.drop(columns="kind")
    present = list(dict.fromkeys(frame["model"]))
    hopfield = sorted(m for m in present if m not in BASELINES)
    hopfield.sort(
        key=lambda m: list(NETWORKS).index(m.split("-")[0]) if m.split("-")[0] in NETWORKS else 9
    )
    models = hopfield + [b for b in BASELINES if b in present]
    return frame.reset_index(drop=True), models


# ----------------------------------------------------------------------------- commands
def parse_grid(items: Sequence[str]) -> list[tuple[str, ...]]:
    """``["model.init_args.context_size=32,96", "trainer.max_epochs=50"]`` -> the CLI overrides of
    every grid point (the product of the lists)."""
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        if not key or not values:
            raise ValueError(f"bad grid entry {item!r}: expected key=v1,v2,... (a CLI key)")
        axes.append([f"--{key.removeprefix('--')}={v}" for v in values.split(",")])
    return [tuple(point) for point in itertools.product(*axes)] if axes else [()]


def tune(
    splits: Sequence[Split],
    models: Sequence[str],
    grid: list[tuple[str, ...]],
    common: Sequence[str] = (),
) -> pd.DataFrame:
    """Validation score of every grid point and Hopfield model through the CV engine (the best
    checkpoint's ``val/selection``; the engine tests that checkpoint too, but no test number is
    read, printed or saved here). ``common``: overrides of every point (not in its label)."""
    results = []
    for point in grid:
        setting = " ".join(p.removeprefix("--").removeprefix("model.init_args.") for p in point)
        start = time.perf_counter()
        rows = []
        for _, group in itertools.groupby(splits, key=lambda s: s.dataset):
            for model in models:
                rows += [
                    {**asdict(r), "test_acc": float("nan"), "setting": setting}
                    for r in evaluate_hopfield(list(group), model, (*common, *point))[0]
                ]
        frame = pd.DataFrame(rows)
        results.append(frame)
        summary = frame.groupby(["model", "dataset"])["val_acc"].mean().groupby("model").mean()
        print(
            f"## {setting or '(defaults)'}: mean val score "
            + ", ".join(f"{m} {100 * v:.2f}" for m, v in summary.items())
            + f"; {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    return pd.concat(results, ignore_index=True)


def tune_table(frame: pd.DataFrame) -> str:
    """Setting x data set: mean validation score (%) over splits, the mean over sets, and the
    median fit seconds per split."""
    table = frame.groupby(["setting", "model", "dataset"])["val_acc"].mean().unstack("dataset")
    seconds = frame.groupby(["setting", "model"])["fit_s"].median()
    rows = [
        [
            setting or "(defaults)",
            model,
            *(f"{100 * v:.2f}" for v in values),
            f"{100 * values.mean():.2f}",
            f"{seconds[(setting, model)]:.0f}",
        ]
        for (setting, model), values in table.iterrows()
    ]
    return markdown_table(["setting", "model", *table.columns, "mean", "fit s"], rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 UCI sets + shrutime, 1 split")
    parser.add_argument("--tune", action="store_true", help="validation-only grid search")
    parser.add_argument("--grid", nargs="*", default=[], help="--tune grid: key=v1,v2 (CLI keys)")
    parser.add_argument("--uci", nargs="*", default=None, help="UCI sets (no names: all of them)")
    parser.add_argument("--csv", nargs="*", default=None, choices=CSV_SETS, help="churn sets")
    parser.add_argument("--digits", action="store_true", help="scikit-learn's digits")
    parser.add_argument("--csv-path", type=Path, default=None, help="any CSV file")
    parser.add_argument("--target", default=None, help="label column of --csv-path")
    parser.add_argument(
        "--drop-columns", nargs="*", default=[], help="columns of --csv-path to ignore"
    )
    parser.add_argument("--fold-ids", nargs="*", type=int, default=[0, 1, 2, 3], help="UCI splits")
    parser.add_argument(
        "--seed-ids", nargs="*", type=int, default=[0, 1, 2, 3, 4], help="stratified splits"
    )
    parser.add_argument("--models", nargs="*", default=None, help="Hopfield models and baselines")
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="CLI overrides of every Hopfield fit, e.g. trainer.max_epochs=5",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "tabular.png")
    parser.add_argument(
        "--save", type=Path, default=None, help="per-split CSV (default: --out .csv)"
    )
    parser.add_argument(
        "--report", nargs="+", type=Path, default=None, help="merge CSVs, train nothing"
    )
    args = parser.parse_args(argv)
    if args.csv_path is not None and not args.target:
        sys.exit("error: --csv-path needs --target (the label column)")
    return args


def collect_splits(args: argparse.Namespace) -> list[Split]:
    """The splits the arguments ask for (``--quick``: a small subset)."""
    if args.quick:
        return uci_splits(uci_names(DATA_ROOT)[:3], [0]) + csv_splits(["shrutime"], [0])
    splits: list[Split] = []
    if args.csv_path is not None:
        splits += any_csv_splits(
            args.csv_path.resolve(), args.target, args.drop_columns, args.seed_ids
        )
    if args.uci is not None:
        splits += uci_splits(args.uci or uci_names(DATA_ROOT), args.fold_ids)
    if args.csv is not None:
        splits += csv_splits(args.csv or CSV_SETS, args.seed_ids)
    if args.digits:
        splits += digits_splits(args.seed_ids)
    return splits


def main(argv: Sequence[str] | None = None) -> pd.DataFrame | None:
    args = parse_args(argv)
    if args.report:
        results, models = merge(args.report)
        print(f"# {len(results)} runs from {len(args.report)} CSV files")
        report(results, models, args.out)
        return results
    splits = collect_splits(args)
    if not splits:
        sys.exit("error: no data: name --uci / --csv / --digits / --csv-path, or --quick")
    if any(s.config.name != "tabular.yaml" for s in splits) and not DATA_ROOT.is_dir():
        sys.exit(f"error: the offline data folder {DATA_ROOT} is missing (see its README)")
    torch.set_num_threads(args.threads)
    with quiet_lightning(logging.ERROR, loggers=QUIET_LOGGERS):
        run(args, splits)
    return None


def run(args: argparse.Namespace, splits: list[Split]) -> None:
    """The fits (or the tuning grid) of ``splits``, their CSV and the report."""
    models = args.models or (
        list(DEFAULT_MODELS[:1]) if args.tune else [*DEFAULT_MODELS, *available_baselines()]
    )
    missing = [m for m in models if m in BASELINES and m not in available_baselines()]
    if missing:
        sys.exit(f"error: {missing} not installed: pip install -e '.[bench]'")
    print(
        f"# {len(splits)} splits; models {models}; torch threads {torch.get_num_threads()}; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    overrides = tuple(f"--{o.removeprefix('--')}" for o in args.override)
    start = time.perf_counter()
    save = args.save or args.out.with_suffix(".csv")
    save.parent.mkdir(parents=True, exist_ok=True)
    hopfield = [m for m in models if m not in BASELINES]
    baselines = [m for m in models if m in BASELINES]
    if args.tune:
        grid = parse_grid(args.grid)
        frames = [tune(splits, hopfield, grid, overrides)] if hopfield else []
        if baselines:  # once, on the validation rows only
            rows = [asdict(r) for s in splits for r in run_baselines(s, baselines, ("val",))]
            frames.append(pd.DataFrame(rows).assign(setting="(baseline)"))
        frame = pd.concat(frames, ignore_index=True)
        frame.to_csv(save, index=False)
        print("\n## Validation score (%), mean over splits (no test number read)\n")
        print(tune_table(frame))
    else:
        rows: list[dict[str, Any]] = []
        for dataset, group in itertools.groupby(splits, key=lambda s: s.dataset):
            group = list(group)  # saved after every data set: an interruption loses one
            test_rows: dict[str, dict[int, list[int]]] = {}
            for model in hopfield:
                results, test_rows[model] = evaluate_hopfield(group, model, overrides)
                rows += [asdict(r) for r in results]
                for r in results:
                    print(
                        f"{dataset:>28} #{r.split} {model:>20}: val {100 * r.val_acc:5.1f}  "
                        f"test {100 * r.test_acc:5.1f}  fit {r.fit_s:.0f} s",
                        flush=True,
                    )
            for split in group:
                if baselines:
                    rows += [asdict(r) for r in run_baselines(split, baselines, check=test_rows)]
            pd.DataFrame(rows).to_csv(save, index=False)
        results, models = merge([save])
        report(results, models, args.out)
    print(f"per-split results: {save}")
    print(
        f"total wall time {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
