"""Tabular accuracy benchmark: the Hopfield classifiers against logistic regression and gradient
boosting, on the same splits and the same preprocessed tensors.

Data (offline copies in ``../shared/data/tabular``): the 21 pre-split UCI sets (``--uci``, their 4
fixed splits), shrutime and blastchar (``--csv``, 5 stratified 65 / 15 / 20 % splits, the Hopular
protocol), scikit-learn's digits (``--digits``) and any CSV (``--csv-path file.csv --target
column``): 5 stratified splits. Models, each evaluated by ``ahop cv``'s engine with selection
``validation`` (:func:`evaluate_model`): ``retrieval-<similarity>``, ``lookup-<similarity>``
(:data:`LOOKUP`) and the ``ahop cv --baselines`` of the first Hopfield model's run (``logreg``,
``hist-gb``, ``lightgbm``, ``xgboost``, ``catboost``). Prints markdown tables and saves a PNG and
the per-split CSV (``--report``: merge CSVs; ``--tune``: validation scores of a ``--grid`` only).
Commands and results: docs/results_tabular.md; cost against the rows: ``tabular_speed.py``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/tabular.py` from anywhere

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ahop_cli.checkpoints import read_checkpoint  # noqa: E402
from ahop_cli.cv.baselines import BASELINES, installed  # noqa: E402
from ahop_cli.evaluate import Protocol, evaluate  # noqa: E402
from benchmarks.common import machine, save_figure  # noqa: E402
from datamodules.logs import log as data_log  # noqa: E402
from datamodules.tabular_sources import uci_names  # noqa: E402
from tasks.quiet import LIGHTNING_LOGGERS, quiet_lightning  # noqa: E402
from tasks.reports import format_mean_std, markdown_table  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data" / "tabular"
CONFIGS = ROOT / "configs"
OUT_DIR = ROOT / "benchmarks" / "out"
CSV_SETS = ("shrutime", "blastchar")
#: the sets with thousands of rows: they weigh more than the UCI mean (see docs/results_tabular.md)
MID_SIZE = ("shrutime", "blastchar", "digits")
#: the configs' default (euclidean) first, then the dot and adaptive variants the issue compares
DEFAULT_MODELS = ("retrieval-euclidean", "retrieval-dot", "retrieval-adaptive", "lookup-dot")
#: the tabular baselines of ``ahop cv --baselines``, in table order
TABULAR_BASELINES = tuple(n for n, b in BASELINES.items() if b.features == "rows")
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
#: the stratified 65 / 15 / 20 % split of the generic config's data sets
SPLIT = ("--data.init_args.val_size=0.15", "--data.init_args.test_size=0.2")
#: Lightning's and the data modules' loggers quiet (errors only)
quiet = functools.partial(
    quiet_lightning, logging.ERROR, loggers=(*LIGHTNING_LOGGERS, data_log.name)
)


@dataclass(frozen=True)
class DataSet:
    """One data set: its config, data overrides and split ids (``uci``: the predefined folds
    ``splits``; else one stratified split per seed in ``splits``)."""

    name: str
    config: Path
    data: tuple[str, ...]
    splits: tuple[int, ...]
    uci: bool = False


def csv_data(path: Path, target: str, drop: Sequence[str] = ()) -> tuple[str, ...]:
    """Data overrides of ``configs/tabular.yaml`` for any CSV file (:data:`SPLIT`)."""
    data = ["--data.init_args.source=csv", f"--data.init_args.csv_path={path}", *SPLIT]
    data.append(f"--data.init_args.target={target}")
    if drop:
        data.append(f"--data.init_args.drop_columns=[{', '.join(drop)}]")
    return tuple(data)


def data_sets(args: argparse.Namespace) -> list[DataSet]:
    """The data sets the arguments ask for."""
    seeds, sets, root = tuple(args.seed_ids), [], f"--data.init_args.data_dir={DATA_ROOT}"
    if args.csv_path is not None:
        data = csv_data(args.csv_path.resolve(), args.target, args.drop_columns)
        sets.append(DataSet(args.csv_path.stem, CONFIGS / "tabular.yaml", data, seeds))
    for name in args.uci or (uci_names(DATA_ROOT) if args.uci is not None else []):
        data = (f"--data.init_args.name={name}", root)
        sets.append(DataSet(name, CONFIGS / "tabular_uci.yaml", data, tuple(args.fold_ids), True))
    for name in args.csv or (CSV_SETS if args.csv is not None else []):
        sets.append(DataSet(name, CONFIGS / f"tabular_{name}.yaml", (root,), seeds))
    if args.digits:
        data = ("--data.init_args.source=sklearn", "--data.init_args.name=digits", *SPLIT)
        sets.append(DataSet("digits", CONFIGS / "tabular.yaml", data, seeds))
    return sets


def model_overrides(model: str) -> tuple[str, ...]:
    """CLI overrides of a Hopfield model name ``<network>-<similarity>``."""
    network, _, similarity = model.partition("-")
    if network not in NETWORKS or not similarity:
        raise ValueError(
            f"unknown model {model!r}: expected <network>-<similarity> with network in "
            f"{sorted(NETWORKS)}, or a baseline in {list(TABULAR_BASELINES)}"
        )
    return (*NETWORKS[network], f"--model.init_args.similarity={similarity}")


def best_validation_score(fold: Any) -> float:
    """The monitored validation score (``val/selection`` = val/acc - 1e-4 val/loss: the validation
    accuracy within 0.001) of an engine fold's best checkpoint: validation rows only."""
    path = fold.selection.get("checkpoint") or ""
    states = read_checkpoint(path).get("callbacks", {}).values() if Path(path).is_file() else ()
    for state in (s for s in states if isinstance(s, dict) and s.get("monitor")):
        if state.get("current_score") is not None:  # the checkpoint callback that kept it
            return float(state["current_score"])
    return float("nan")


def evaluate_model(
    data: DataSet,
    model: str,
    extra: Sequence[str] = (),
    baselines: Sequence[str] = (),
    keep_test: bool = True,
) -> list[dict[str, Any]]:
    """``ahop cv`` (selection ``validation``, ``--baselines``) of a Hopfield model on the splits
    of a data set: the UCI folds from 0 (one repeat), else one repeat per seed (``seed``,
    ``seed + 1``, ...). One row per split and model (the baselines' rows too). ``keep_test``
    false (tuning): every ``test_acc`` is ``nan`` and no test number is printed."""
    ids = list(data.splits)
    if ids != list(range(ids[0], ids[0] + len(ids))) or (data.uci and ids[0] != 0):
        raise ValueError(f"{data.name}: the engine runs consecutive splits (UCI from 0); got {ids}")
    repeats, seed, max_folds = (1, None, len(ids)) if data.uci else (len(ids), ids[0], None)
    protocol = Protocol(repeats=repeats, seed=seed, selection="validation", baselines=[*baselines])
    args = ["--config", str(data.config), *data.data, *model_overrides(model), *extra]
    args.append("--trainer.logger=false")
    evaluation = evaluate(args, protocol, output_dir=OUT_DIR / "cv", max_folds=max_folds, log=None)
    rows = []
    for fold in evaluation.folds:
        row = {"dataset": data.name, "split": fold.fold if data.uci else fold.seed}
        rows.append({**row, "model": model, "val_acc": best_validation_score(fold)})
        rows[-1] |= {"test_acc": fold.metrics["test/acc"], "fit_s": fold.seconds}
        rows[-1] |= {"best_epoch": (fold.epochs or 0) - 1, "setting": str(evaluation.run_dir)}
        for name, scores in fold.baselines.items():
            rows.append({**row, "model": name, "best_epoch": -1, "val_acc": scores["val/acc"]})
            rows[-1] |= {"test_acc": scores["test/acc"], "setting": "", "fit_s": scores["seconds"]}
    for row in rows:
        row["test_acc"] = row["test_acc"] if keep_test else float("nan")
        test = f"  test {100 * row['test_acc']:5.1f}" if keep_test else ""
        print(
            f"{row['dataset']:>28} #{row['split']} {row['model']:>20}: val "
            f"{100 * row['val_acc']:5.1f}{test}  fit {row['fit_s']:.1f} s",
            flush=True,
        )
    return rows


def percent_mean_std(values: pd.Series) -> str:
    """``mean ± std`` of accuracies in % (population std over splits), by pandas' arithmetic (the
    last bit of :func:`tasks.reports.mean_std`'s can flip a printed second decimal)."""
    if values.empty:
        return ""
    return format_mean_std(100 * values.mean(), 100 * values.std(ddof=0), 2, missing="nan")


def summary_rows(table: pd.DataFrame, models: Sequence[str], label: str) -> list[list[str]]:
    """Mean accuracy, mean rank (1 = best) and win / tie / loss against hist-gb over ``table``
    (data set x model: mean test accuracy)."""
    n, ranks = len(table), table.rank(axis=1, ascending=False).mean()
    rows = [
        [f"**{label} mean ({n} sets)**", "", *(f"{100 * table[m].mean():.2f}" for m in models)],
        [f"**{label} mean rank**", "", *(f"{ranks[m]:.2f}" for m in models)],
    ]
    if "hist-gb" in table:
        diff = table[list(models)].sub(table["hist-gb"], axis=0) * 100
        wins, losses = (diff >= TIE_POINTS).sum(), (diff <= -TIE_POINTS).sum()
        cells = [f"{wins[m]} / {n - wins[m] - losses[m]} / {losses[m]}" for m in models]
        cells = ["-" if m == "hist-gb" else c for m, c in zip(models, cells)]
        rows.append([f"**{label} W / T / L vs hist-gb**", "", *cells])
    return rows


def published(datasets: Sequence[str]) -> list[str]:
    """The published models of any of ``datasets`` (:data:`PUBLISHED`), sorted."""
    return sorted({m for d in datasets for m in PUBLISHED.get(d, {})})


def accuracy_table(results: pd.DataFrame, models: Sequence[str]) -> str:
    """Data set x model: mean ± std of the test accuracy (%) over splits; UCI sets first, then
    their summary, then the mid-size sets with theirs and the published numbers."""
    datasets = list(dict.fromkeys(results["dataset"]))
    means = results.groupby(["dataset", "model"])["test_acc"].mean().unstack("model")
    means = means.reindex(columns=list(models))

    def row(dataset: str) -> list[str]:
        part = results[results["dataset"] == dataset]
        cells = [percent_mean_std(part[part["model"] == m]["test_acc"]) for m in models]
        return [dataset, str(part["split"].nunique()), *cells]

    rows, mid = [], [d for d in datasets if d in MID_SIZE]  # the CSV sets are mid-size
    for group, label in (([d for d in datasets if d not in mid], "UCI"), (mid, "mid-size")):
        rows += [row(d) for d in group]
        rows += summary_rows(means.loc[group], models, label) if len(group) > 1 else []
    text = markdown_table(["data set", "splits", *models], rows)
    if names := published(datasets):
        table = [d for d in datasets if d in PUBLISHED]
        cells = [[d, *(f"{PUBLISHED[d].get(p, np.nan):.2f}" for p in names)] for d in table]
        text += "\n\nPublished (Hopular paper protocol, its own 5 splits):\n\n"
        text += markdown_table(["data set", *names], cells)
    return text


def plot(results: pd.DataFrame, models: Sequence[str], path: Path) -> None:
    """PNG: grouped bars of mean test accuracy per data set (one panel for the UCI sets, one for
    the mid-size sets with the published numbers hatched)."""
    stats = results.groupby(["dataset", "model"])["test_acc"].agg(["mean", "std"]) * 100
    datasets = list(dict.fromkeys(results["dataset"]))
    mid, hatched = [d for d in datasets if d in MID_SIZE], published(datasets)
    panels = [([d for d in datasets if d not in MID_SIZE], list(models), "UCI sets (fixed splits)")]
    panels += [(mid, [*models, *hatched], "Mid-size sets (stratified splits) vs published")]
    panels = [p for p in panels if p[0]]
    figure = Figure(figsize=(14, 3.8 * len(panels)))
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (names, bars, title) in zip(axes, panels):
        width, heights = 0.8 / len(bars), []
        for j, bar in enumerate(bars):
            known = {d: (PUBLISHED[d][bar], 0.0) for d in names if bar in PUBLISHED.get(d, {})}
            known |= {d: tuple(stats.loc[(d, bar)]) for d in names if (d, bar) in stats.index}
            xs = [i + (j - (len(bars) - 1) / 2) * width for i, d in enumerate(names) if d in known]
            means = [known[d][0] for d in names if d in known]
            errs = [np.nan_to_num(known[d][1]) for d in names if d in known]
            label, hatch = (f"{bar} (published)", "//") if bar in hatched else (bar, None)
            ax.bar(xs, means, width, yerr=errs, color=f"C{j % 10}", hatch=hatch, label=label)
            heights += means
        if heights:
            ax.set_ylim(max(0.0, min(heights) - 5), min(100.0, max(heights) + 3))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45 if len(names) > 4 else 0, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{title}: mean ± std over splits", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    save_figure(figure, path, bbox_inches=None)


def merge(paths: Sequence[Path]) -> tuple[pd.DataFrame, list[str]]:
    """Concatenate per-split CSVs; a (dataset, split, model) run twice keeps its last row (rows
    of the former ``--cost`` mode are left out). Models ordered: retrieval, lookup, then the
    baselines in :data:`TABULAR_BASELINES` order."""
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    frame["setting"] = frame["setting"].fillna("")
    frame = frame[frame["setting"] != "cost"]
    frame = frame.drop_duplicates(["dataset", "split", "model"], keep="last")
    present = list(dict.fromkeys(frame["model"]))
    hopfield = sorted(m for m in present if m not in BASELINES)
    hopfield.sort(key=lambda m: [*NETWORKS, m.split("-")[0]].index(m.split("-")[0]))
    return frame.reset_index(drop=True), hopfield + [b for b in BASELINES if b in present]


def report(results: pd.DataFrame, models: Sequence[str], out: Path | None) -> None:
    """Print the accuracy table; save the PNG to ``out``."""
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


def parse_grid(items: Sequence[str]) -> list[tuple[str, ...]]:
    """``["model.init_args.context_size=32,96", "trainer.max_epochs=50"]`` -> the CLI overrides of
    every grid point (the product of the lists)."""
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        if not key or not values:
            raise ValueError(f"bad grid entry {item!r}: expected key=v1,v2,... (a CLI key)")
        axes.append([f"--{key.removeprefix('--')}={v}" for v in _top_level_split(values)])
    return [tuple(point) for point in itertools.product(*axes)] if axes else [()]


def _top_level_split(values: str) -> list[str]:
    """Split on the commas outside brackets: ``{a: 1, b: 2},{a: 3}`` is two values."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(values):
        depth += (char in "{[") - (char in "}]")
        if char == "," and depth == 0:
            parts.append(values[start:i])
            start = i + 1
    return [*parts, values[start:]]


def tune_table(frame: pd.DataFrame) -> str:
    """Setting x data set: mean validation score (%) over splits, the mean over sets, and the
    median fit seconds per split."""
    table = frame.groupby(["setting", "model", "dataset"])["val_acc"].mean().unstack("dataset")
    seconds = frame.groupby(["setting", "model"])["fit_s"].median()
    rows = []
    for (setting, model), values in table.iterrows():
        cells = [f"{100 * v:.2f}" for v in [*values, values.mean()]]
        rows.append([setting or "(defaults)", model, *cells, f"{seconds[(setting, model)]:.0f}"])
    return markdown_table(["setting", "model", *table.columns, "mean", "fit s"], rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", action="store_true", help="validation-only grid search")
    parser.add_argument("--grid", nargs="*", default=[], help="--tune grid: key=v1,v2 (CLI keys)")
    parser.add_argument("--uci", nargs="*", default=None, help="UCI sets (no names: all of them)")
    parser.add_argument("--csv", nargs="*", default=None, choices=CSV_SETS, help="churn sets")
    parser.add_argument("--digits", action="store_true", help="scikit-learn's digits")
    parser.add_argument("--csv-path", type=Path, default=None, help="any CSV file")
    parser.add_argument("--target", default=None, help="label column of --csv-path")
    parser.add_argument("--drop-columns", nargs="*", default=[], help="columns to ignore")
    parser.add_argument("--fold-ids", nargs="*", type=int, default=[0, 1, 2, 3], help="UCI splits")
    parser.add_argument("--seed-ids", nargs="*", type=int, default=[0, 1, 2, 3, 4], help="seeds")
    parser.add_argument("--models", nargs="*", default=None, help="Hopfield models and baselines")
    parser.add_argument("--override", nargs="*", default=[], help="e.g. trainer.max_epochs=5")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "tabular.png")
    parser.add_argument("--save", type=Path, default=None, help="per-split CSV (default: --out)")
    parser.add_argument("--report", nargs="+", type=Path, help="merge CSVs, train nothing")
    args = parser.parse_args(argv)
    if args.csv_path is not None and not args.target:
        sys.exit("error: --csv-path needs --target (the label column)")
    return args


def main(argv: Sequence[str] | None = None) -> pd.DataFrame | None:
    args = parse_args(argv)
    if args.report:
        results, models = merge(args.report)
        print(f"# {len(results)} runs from {len(args.report)} CSV files")
        report(results, models, args.out)
        return results
    if not (sets := data_sets(args)):
        sys.exit("error: no data: name --uci / --csv / --digits / --csv-path")
    if any(s.config.name != "tabular.yaml" for s in sets) and not DATA_ROOT.is_dir():
        sys.exit(f"error: the offline data folder {DATA_ROOT} is missing (see its README)")
    default = [*DEFAULT_MODELS, *(b for b in TABULAR_BASELINES if installed(b))]
    models = args.models or (list(DEFAULT_MODELS[:1]) if args.tune else default)
    baselines = [m for m in models if m in BASELINES]
    hopfield = [m for m in models if m not in BASELINES]
    if baselines and not hopfield:
        sys.exit("error: the baselines run in a Hopfield model's folds: name one too")
    if missing := [b for b in baselines if not installed(b)]:
        sys.exit(f"error: {missing}: pip install -e '.[bench]'")
    for model in hopfield:
        model_overrides(model)
    torch.set_num_threads(args.threads)
    print(
        f"# {len(sets)} data sets; models {models}; torch threads {torch.get_num_threads()}; "
        f"{machine()}, torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    start, save = time.perf_counter(), args.save or args.out.with_suffix(".csv")
    save.parent.mkdir(parents=True, exist_ok=True)
    overrides = tuple(f"--{o.removeprefix('--')}" for o in args.override)
    rows: list[dict[str, Any]] = []
    with quiet():
        for p, point in enumerate(parse_grid(args.grid) if args.tune else [()]):
            setting = " ".join(o.removeprefix("--").removeprefix("model.init_args.") for o in point)
            for data in sets:  # saved after every data set: an interruption loses one
                for m, model in enumerate(hopfield):
                    with_baselines = baselines if p == m == 0 else ()  # once per data set
                    extra = (*overrides, *point)
                    for row in evaluate_model(data, model, extra, with_baselines, not args.tune):
                        if args.tune:  # validation scores only: no test number is kept
                            row["setting"] = "(baseline)" if row["model"] in BASELINES else setting
                        rows.append(row)
                pd.DataFrame(rows).to_csv(save, index=False)
    if args.tune:
        print("\n## Validation score (%), mean over splits (no test number read)\n")
        print(tune_table(pd.DataFrame(rows)))
    else:
        report(*merge([save]), args.out)
    print(f"per-split results: {save}")
    wall = time.perf_counter() - start
    print(f"total wall time {wall:.0f} s; load average {os.getloadavg()[0]:.2f}")
    return None


if __name__ == "__main__":
    main()
