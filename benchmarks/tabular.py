"""Tabular accuracy benchmark: the Hopfield classifier against scikit-learn baselines.

Data (offline copies in ``../shared/data/tabular``, see its README):

* the pre-split UCI sets: their 4 fixed train / val / test splits;
* shrutime and blastchar: 5 stratified 65 / 15 / 20 % splits (seeds 0..4, the Hopular protocol),
  with the data settings of ``configs/tabular_<name>.yaml``.

Models, all on the same preprocessed tensors of the same :class:`TabularDataModule`:

* ``hopfield-<similarity>``: the configs' :class:`tasks.tabular.TabularClassifier` with ``dot``,
  ``manhattan`` or ``adaptive`` similarity, trained by a plain Lightning ``Trainer`` (no logger,
  no checkpoint files), early-stopped on the validation loss with the best epoch's weights restored;
* ``logreg`` / ``hist-gb``: scikit-learn ``LogisticRegression`` and
  ``HistGradientBoostingClassifier`` with default settings, fit on the training rows.

Commands::

    python benchmarks/tabular.py            # full run: table + benchmarks/out/tabular.png
    python benchmarks/tabular.py --quick    # a few data sets, fewer splits and epochs
    python benchmarks/tabular.py --tune     # validation-only grid over lr / embedding / epochs
    # in pieces (each writes its own CSV), then one report over all of them:
    python benchmarks/tabular.py --uci breast_cancer ecoli --csv --save benchmarks/out/p1.csv
    python benchmarks/tabular.py --uci --csv shrutime --seed-ids 0 1 --save benchmarks/out/p2.csv
    python benchmarks/tabular.py --report benchmarks/out/p1.csv benchmarks/out/p2.csv

Prints a markdown table of mean ± std test accuracy (%) per data set and model, the published
Hopular / XGBoost / CatBoost / LightGBM numbers for shrutime and blastchar, and the training wall
time per epoch of the Hopfield models. ``--tune`` reports validation accuracy only; the test rows
play no part in choosing :data:`DEFAULTS`.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/tabular.py` from anywhere
    sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.callbacks import Callback, EarlyStopping  # noqa: E402
from sklearn.base import ClassifierMixin  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from datamodules.tabular import TabularDataModule  # noqa: E402
from datamodules.tabular_sources import uci_names  # noqa: E402
from tasks.tabular import TabularClassifier  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data" / "tabular"
OUT_DIR = ROOT / "benchmarks" / "out"
CSV_SETS = ("shrutime", "blastchar")
SIMILARITIES = ("dot", "manhattan", "adaptive")

#: Published test accuracy (%) on the Hopular protocol (5 stratified splits), from the data README.
PUBLISHED: dict[str, dict[str, float]] = {
    "shrutime": {"Hopular": 86.12, "XGBoost": 84.58, "CatBoost": 86.39, "LightGBM": 86.18},
    "blastchar": {"Hopular": 80.05, "XGBoost": 76.78, "CatBoost": 80.13, "LightGBM": 79.92},
}


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class HopfieldSettings:
    """Model and training settings of the Hopfield classifier (one set for every data set)."""

    embedding_dim: int = 64
    quantity: int = 32
    num_heads: int = 4
    dropout: float = 0.1
    lr: float = 1e-2
    weight_decay: float = 0.01
    max_epochs: int = 40
    patience: int = 8
    batch_size: int = 128
    min_steps: int = 1  # small training sets get smaller batches: >= min_steps steps per epoch
    feature_embedding: str = "linear"  # or "periodic"
    periodic_sigma: float = 0.1  # initial frequency scale of the periodic embedding

    def batch_size_for(self, train_rows: int) -> int:
        """``batch_size``, shrunk (down to 8) so an epoch of ``train_rows`` has ``min_steps``."""
        return min(self.batch_size, max(8, train_rows // self.min_steps))

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


#: Defaults chosen with ``--tune`` (validation accuracy only): on shrutime + blastchar splits 0-1,
#: lr 1e-2 / embedding 64 was the best of lr {3e-3, 1e-2} x embedding {64, 128} (docs/results_tabular.md).
DEFAULTS = HopfieldSettings()

#: Default ``--tune`` grid (``--grid name=v1,v2 ...`` replaces it): each point overrides DEFAULTS.
TUNE_GRID: dict[str, Sequence[Any]] = {
    "lr": (1e-3, 3e-3, 1e-2),
    "embedding_dim": (32, 64),
}


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["lr=1e-3,3e-3", "embedding_dim=32,64"]`` -> ``{"lr": [0.001, 0.003], ...}``, each value
    cast to the type of that field in :class:`HopfieldSettings`."""
    fields = asdict(DEFAULTS)
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in fields or not values:
            raise ValueError(
                f"bad grid entry {item!r}: expected name=v1,v2,... with name in {sorted(fields)}"
            )
        grid[name] = [type(fields[name])(v) for v in values.split(",")]
    return grid


@dataclass(frozen=True)
class Split:
    """One train / val / test split of one data set: the TabularDataModule's arguments."""

    dataset: str
    index: int
    data: dict[str, Any]


def uci_splits(names: Iterable[str], folds: Iterable[int]) -> list[Split]:
    """The predefined UCI splits ``folds`` (0..3) of each UCI folder in ``names``."""
    return [
        Split(name, fold, {"source": "uci", "name": name, "data_dir": str(DATA_ROOT), "fold": fold})
        for name in names
        for fold in folds
    ]


def csv_splits(names: Iterable[str], seeds: Iterable[int]) -> list[Split]:
    """Stratified splits (one per seed) of the CSV sets, with ``configs/tabular_<name>.yaml``'s
    data settings, so the benchmark preprocesses exactly as the configs do."""
    splits = []
    for name in names:
        config = yaml.safe_load((ROOT / "configs" / f"tabular_{name}.yaml").read_text())
        data = dict(config["data"]["init_args"], data_dir=str(DATA_ROOT))
        splits += [Split(name, seed, {**data, "seed": seed}) for seed in seeds]
    return splits


# ----------------------------------------------------------------------------- models
BASELINES: dict[str, Callable[[int], ClassifierMixin]] = {
    "logreg": lambda seed: LogisticRegression(max_iter=2000),
    "hist-gb": lambda seed: HistGradientBoostingClassifier(random_state=seed),
}
"""scikit-learn baselines by name (default hyper-parameters), built from a seed."""


class BestWeights(Callback):
    """Keeps (in memory) the weights of the epoch with the best monitored value and loads them
    back when fitting ends, so the evaluated model is the best-validation one."""

    def __init__(self, monitor: str, mode: str = "min") -> None:
        self.monitor, self.sign = monitor, 1.0 if mode == "min" else -1.0
        self.best, self.best_epoch, self.state = math.inf, -1, None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        if self.sign * float(value) < self.best:
            self.best, self.best_epoch = self.sign * float(value), trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


class EpochTimer(Callback):
    """Wall time of each training epoch (the training batches only, not validation)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.times.append(time.perf_counter() - self.start)


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


def accuracy(predicted: np.ndarray | torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of rows whose predicted class equals the target."""
    return float((torch.as_tensor(predicted) == target).float().mean())


def fit_hopfield(
    datamodule: TabularDataModule,
    similarity: str,
    settings: HopfieldSettings,
    seed: int,
    scored: Sequence[str] = ("val", "test"),
) -> dict[str, float]:
    """Train the configs' TabularClassifier on ``datamodule``; accuracy on the ``scored`` splits."""
    L.seed_everything(seed, verbose=False)
    task = TabularClassifier(
        num_features=datamodule.num_features,
        num_classes=datamodule.num_classes,
        embedding_dim=settings.embedding_dim,
        quantity=settings.quantity,
        num_heads=settings.num_heads,
        similarity=similarity,
        dropout=settings.dropout,
        feature_embedding=settings.feature_embedding,
        feature_embedding_kwargs=(
            {"sigma": settings.periodic_sigma} if settings.feature_embedding == "periodic" else None
        ),
        optimizer=functools.partial(
            torch.optim.AdamW, lr=settings.lr, weight_decay=settings.weight_decay
        ),
        lr_scheduler=functools.partial(
            torch.optim.lr_scheduler.CosineAnnealingLR, T_max=settings.max_epochs
        ),
    )
    best, timer = BestWeights("val/loss", "min"), EpochTimer()
    trainer = L.Trainer(
        max_epochs=settings.max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[EarlyStopping("val/loss", patience=settings.patience), best, timer],
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    fit_s = time.perf_counter() - start
    task.eval()
    scores = {}
    with torch.no_grad():
        for split in scored:
            x, y = datamodule.tensors(split)
            scores[f"{split}_acc"] = accuracy(task(x).argmax(-1), y)
    return {
        **scores,
        "fit_s": fit_s,
        "epoch_s": float(np.median(timer.times)),
        "epochs": len(timer.times),
        "best_epoch": best.best_epoch,
    }


def fit_baseline(
    datamodule: TabularDataModule, name: str, seed: int, scored: Sequence[str] = ("val", "test")
) -> dict[str, float]:
    """Fit a :data:`BASELINES` model on the training tensors; accuracy on the ``scored`` splits."""
    model = BASELINES[name](seed)
    x, y = datamodule.tensors("train")
    start = time.perf_counter()
    model.fit(x.numpy(), y.numpy())
    scores = {"fit_s": time.perf_counter() - start}
    for split in scored:
        x, y = datamodule.tensors(split)
        scores[f"{split}_acc"] = accuracy(model.predict(x.numpy()), y)
    return scores


def run_split(
    split: Split,
    models: Sequence[str],
    settings: HopfieldSettings,
    scored: Sequence[str] = ("val", "test"),
    verbose: bool = True,
) -> list[Result]:
    """Every model in ``models`` (``hopfield-<similarity>`` or a baseline name) on one split;
    ``scored``: the splits whose accuracy is computed (``("val",)`` while tuning)."""
    datamodule = TabularDataModule(**split.data)
    datamodule.setup("fit")
    # the loaders read the batch size when they are built, i.e. after the training rows are known
    datamodule.hparams.batch_size = settings.batch_size_for(datamodule.split_sizes["train"])
    results = []
    for model in models:
        if model.startswith("hopfield-"):
            similarity = model.removeprefix("hopfield-")
            scores = fit_hopfield(datamodule, similarity, settings, split.index, scored)
        else:
            scores = fit_baseline(datamodule, model, split.index, scored)
        result = Result(split.dataset, split.index, model, **scores)
        results.append(result)
        if verbose:
            timing = (
                f"  {result.epochs} epochs (best {result.best_epoch}), {result.epoch_s:.3f} s/epoch"
                if result.epochs
                else ""
            )
            test = f"  test {100 * result.test_acc:5.1f}" if "test" in scored else ""
            print(
                f"{split.dataset:>28} #{split.index} {model:>18}: val {100 * result.val_acc:5.1f}"
                f"{test}{timing}",
                flush=True,
            )
    return results


def model_names(similarities: Sequence[str], baselines: Sequence[str]) -> list[str]:
    return [f"hopfield-{s}" for s in similarities] + list(baselines)


# ----------------------------------------------------------------------------- reports
def mean_std(values: pd.Series) -> str:
    """``mean ± std`` of accuracies in % (population std over splits)."""
    return f"{100 * values.mean():.2f} ± {100 * values.std(ddof=0):.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(results: pd.DataFrame, models: Sequence[str], column: str = "test_acc") -> str:
    """Data set x model: mean ± std of ``column`` (%) over splits. UCI sets first, then their
    mean and average rank per model, then shrutime / blastchar with the published numbers."""
    datasets = list(dict.fromkeys(results["dataset"]))
    published = sorted({m for d in datasets for m in PUBLISHED.get(d, {})})

    def row(dataset: str) -> list[str]:
        part = results[results["dataset"] == dataset]
        cells = [mean_std(part[part["model"] == m][column]) for m in models]
        cells += [
            f"{PUBLISHED[dataset][p]:.2f}" if p in PUBLISHED.get(dataset, {}) else ""
            for p in published
        ]
        return [dataset, str(part["split"].nunique()), *cells]

    uci_sets = [d for d in datasets if d not in CSV_SETS]
    rows = [row(d) for d in uci_sets]
    if len(uci_sets) > 1:
        uci = results[results["dataset"].isin(uci_sets)]
        per_set = uci.groupby(["dataset", "model"])[column].mean().unstack("model")[list(models)]
        ranks = per_set.rank(axis=1, ascending=False).mean()
        blank = [""] * len(published)
        n = len(per_set)
        rows.append(
            [
                f"**UCI mean ({n} sets)**",
                "",
                *(f"{100 * per_set[m].mean():.2f}" for m in models),
                *blank,
            ]
        )
        rows.append(
            [f"**UCI avg. rank ({n} sets)**", "", *(f"{ranks[m]:.2f}" for m in models), *blank]
        )
    rows += [row(d) for d in datasets if d in CSV_SETS]
    header = ["data set", "splits", *models, *(f"{p} (published)" for p in published)]
    return markdown_table(header, rows)


def verdict(results: pd.DataFrame) -> list[str]:
    """Per churn set: the best Hopfield model against the best published gradient boosting
    (XGBoost / CatBoost / LightGBM) and against our HistGradientBoosting."""
    lines = []
    for dataset in (d for d in CSV_SETS if d in set(results["dataset"])):
        part = results[results["dataset"] == dataset].groupby("model")["test_acc"].mean() * 100
        hopfield = part[part.index.str.startswith("hopfield-")]
        if hopfield.empty:
            continue
        best_model, best = hopfield.idxmax(), hopfield.max()
        gbdt = {k: v for k, v in PUBLISHED[dataset].items() if k != "Hopular"}
        best_gbdt = max(gbdt, key=gbdt.get)
        line = (
            f"{dataset}: best Hopfield {best_model} {best:.2f} vs best published GBDT "
            f"{best_gbdt} {gbdt[best_gbdt]:.2f} ({best - gbdt[best_gbdt]:+.2f}), "
            f"Hopular {PUBLISHED[dataset]['Hopular']:.2f} ({best - PUBLISHED[dataset]['Hopular']:+.2f})"
        )
        if "hist-gb" in part:
            line += f", our hist-gb {part['hist-gb']:.2f} ({best - part['hist-gb']:+.2f})"
        lines.append(line)
    return lines


def timing_table(results: pd.DataFrame) -> str:
    """Median training wall time per epoch (s) and mean epochs run, per data set and model."""
    hopfield = results[results["model"].str.startswith("hopfield-")]
    models = list(dict.fromkeys(hopfield["model"]))
    rows = []
    for dataset in dict.fromkeys(hopfield["dataset"]):
        part = hopfield[hopfield["dataset"] == dataset]
        cells = []
        for m in models:
            runs = part[part["model"] == m]
            cells.append(f"{runs['epoch_s'].median():.3f} s ({runs['epochs'].mean():.0f} ep.)")
        rows.append([dataset, *cells])
    return markdown_table(["data set", *models], rows)


def _bar_panel(
    ax: Any, results: pd.DataFrame, datasets: Sequence[str], bars: Sequence[str]
) -> None:
    """Grouped bars (one group per data set) of mean ± std test accuracy; a bar named after a
    published method shows that number, hatched."""
    import matplotlib.pyplot as plt

    stats = results.groupby(["dataset", "model"])["test_acc"].agg(["mean", "std"]) * 100
    width = 0.8 / len(bars)
    heights = []
    for j, bar in enumerate(bars):
        xs, means, errs = [], [], []
        for i, dataset in enumerate(datasets):
            if (dataset, bar) in stats.index:
                mean, std = stats.loc[(dataset, bar)]
            elif bar in PUBLISHED.get(dataset, {}):
                mean, std = PUBLISHED[dataset][bar], 0.0
            else:
                continue
            xs.append(i + (j - (len(bars) - 1) / 2) * width)
            means.append(mean)
            errs.append(0.0 if np.isnan(std) else std)
        is_published = bar not in set(results["model"])
        ax.bar(
            xs,
            means,
            width,
            yerr=errs,
            color=plt.get_cmap("tab10")(j % 10),
            hatch="//" if is_published else None,
            label=f"{bar} (published)" if is_published else bar,
        )
        heights += means
    ax.set_ylim(max(0.0, min(heights) - 5), min(100.0, max(heights) + 3))
    ax.set_xticks(range(len(datasets)))
    rotate = len(datasets) > 4
    ax.set_xticklabels(
        datasets, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8
    )
    ax.set_ylabel("test accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def plot(results: pd.DataFrame, models: Sequence[str], path: Path) -> None:
    """PNG: one panel of the UCI sets (our models), one of shrutime / blastchar (our models next
    to the published numbers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(results["dataset"]))
    panels = [
        ([d for d in datasets if d not in CSV_SETS], list(models), "UCI sets (fixed splits)"),
        (
            [d for d in datasets if d in CSV_SETS],
            [*models, *sorted({m for d in datasets for m in PUBLISHED.get(d, {})})],
            "Churn sets (stratified splits) vs published",
        ),
    ]
    panels = [panel for panel in panels if panel[0]]
    widths = [max(3.0, 0.45 * len(d) * len(b) / 4) for d, b, _ in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8.0, *widths) + 2, 3.6 * len(panels)), squeeze=False
    )
    for ax, (names, bars, title) in zip(axes[:, 0], panels):
        _bar_panel(ax, results, names, bars)
        ax.set_title(f"{title}: mean ± std test accuracy over splits", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- commands
def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and the small-data warnings."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*number of training batches.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")


def benchmark(
    splits: Sequence[Split],
    models: Sequence[str],
    settings: HopfieldSettings,
    scored: Sequence[str] = ("val", "test"),
) -> pd.DataFrame:
    """One row per (split, model): a :class:`Result` as a data frame."""
    results = [r for split in splits for r in run_split(split, models, settings, scored)]
    return pd.DataFrame([asdict(r) for r in results])


def tune(splits: Sequence[Split], similarities: Sequence[str], grid: dict[str, Sequence[Any]]):
    """Validation accuracy of every grid point (test rows are never scored for the choice)."""
    names = list(grid)
    rows = []
    for values in itertools.product(*(grid[n] for n in names)):
        settings = replace(DEFAULTS, **dict(zip(names, values)))
        start = time.perf_counter()
        frame = benchmark(splits, model_names(similarities, ()), settings, scored=("val",))
        per_set = frame.groupby(["model", "dataset"])["val_acc"].mean().groupby("model").mean()
        rows.append(
            [
                *(str(v) for v in values),
                *(f"{100 * per_set[f'hopfield-{s}']:.2f}" for s in similarities),
                f"{100 * per_set.mean():.2f}",
                f"{frame['epochs'].mean():.1f}",
                f"{time.perf_counter() - start:.0f}",
            ]
        )
        print(markdown_table([*names, *similarities, "mean", "epochs", "s"], rows[-1:]), flush=True)
    header = [*names, *(f"val {s}" for s in similarities), "val mean", "epochs", "time (s)"]
    return markdown_table(header, rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subset, few epochs")
    parser.add_argument("--tune", action="store_true", help="validation-only grid search")
    parser.add_argument(
        "--grid", nargs="*", default=None, help="--tune grid, e.g. lr=1e-3,3e-3 dropout=0,0.1"
    )
    parser.add_argument(
        "--uci", nargs="*", default=None, help="UCI sets (default: all under the data root)"
    )
    parser.add_argument("--csv", nargs="*", default=list(CSV_SETS), choices=CSV_SETS)
    parser.add_argument("--folds", type=int, default=4, help="UCI splits per set (max 4)")
    parser.add_argument("--seeds", type=int, default=5, help="stratified splits per CSV set")
    parser.add_argument(
        "--fold-ids", nargs="*", type=int, default=None, help="these UCI folds (overrides --folds)"
    )
    parser.add_argument(
        "--seed-ids", nargs="*", type=int, default=None, help="these CSV splits (overrides --seeds)"
    )
    parser.add_argument("--similarities", nargs="*", default=list(SIMILARITIES))
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "tabular.png")
    parser.add_argument(
        "--save", type=Path, default=None, help="per-split CSV (default: --out with .csv)"
    )
    parser.add_argument(
        "--report",
        nargs="+",
        type=Path,
        default=None,
        help="train nothing: merge these per-split CSVs (from earlier pieces) into one report",
    )
    return parser.parse_args(argv)


def report(results: pd.DataFrame, models: Sequence[str], out: Path) -> None:
    """Print the accuracy, verdict and timing tables of ``results`` and save the PNG to ``out``."""
    print("\n## Test accuracy (%), mean ± std over splits\n")
    print(accuracy_table(results, models))
    print("\n" + "\n".join(verdict(results)))
    print("\n## Hopfield training wall time per epoch (median) and epochs run\n")
    print(timing_table(results))
    plot(results, models, out)
    print(f"\nplot: {out}")


def merge(paths: Sequence[Path]) -> tuple[pd.DataFrame, list[str]]:
    """Concatenate per-split CSVs; a (dataset, split, model) run twice keeps its last row. Models
    ordered Hopfield similarities first (as :data:`SIMILARITIES`), then :data:`BASELINES`."""
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    frame = frame.drop_duplicates(["dataset", "split", "model"], keep="last")
    order = model_names(SIMILARITIES, list(BASELINES))
    present = set(frame["model"])
    models = [m for m in order if m in present] + sorted(present - set(order))
    return frame.reset_index(drop=True), models


def main(argv: Sequence[str] | None = None) -> pd.DataFrame | None:
    args = parse_args(argv)
    if args.report:
        results, models = merge(args.report)
        print(f"# {len(results)} runs from {len(args.report)} CSV files")
        report(results, models, args.out)
        return results
    if not DATA_ROOT.is_dir():
        sys.exit(f"error: the offline data folder {DATA_ROOT} is missing (see its README)")
    torch.set_num_threads(args.threads)
    quiet_lightning()
    uci = uci_names(DATA_ROOT) if args.uci is None else args.uci
    folds, seeds, settings = range(args.folds), range(args.seeds), DEFAULTS
    if args.quick:
        uci, folds, seeds = uci[:3] if args.uci is None else uci, range(1), range(2)
        settings = replace(settings, max_epochs=10, patience=3)
    folds = folds if args.fold_ids is None else args.fold_ids
    seeds = seeds if args.seed_ids is None else args.seed_ids
    if args.max_epochs is not None:
        settings = replace(settings, max_epochs=args.max_epochs)
    splits = uci_splits(uci, folds) + csv_splits(args.csv, seeds)
    print(
        f"# {len(splits)} splits; torch threads {torch.get_num_threads()}; "
        f"{platform.processor() or platform.machine()}, {torch.__version__}\n# {settings.describe()}"
    )
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (other processes share the CPU)")
    start = time.perf_counter()
    if args.tune:
        grid = TUNE_GRID if args.grid is None else parse_grid(args.grid)
        print(tune(splits, args.similarities, grid))
        print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
        return None
    models = model_names(args.similarities, args.baselines)
    results = benchmark(splits, models, settings)
    save = args.save or args.out.with_suffix(".csv")
    save.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(save, index=False)
    report(results, models, args.out)
    print(f"per-split results: {save}")
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    print(f"load average at the end (1 min): {os.getloadavg()[0]:.2f}")
    return results


if __name__ == "__main__":
    main()
