"""How the MIL defaults were chosen: model variants compared on inner validation folds only.

Per data set and variant, the training bags of the first ``--outer-folds`` outer folds (repeat 0)
are split into ``--inner-folds`` inner folds and the variant's validation curves averaged over
them (what ``ahop cv --selection inner_cv`` does: :meth:`FoldRunner.inner_curves`); no test fold is
used. Prints markdown tables (the inner scores at the epochs the mean validation loss selects; the
epoch-selection rules scored by leave-one-inner-fold-out), draws ``benchmarks/out/mil_curves.png``
and appends every (data set, variant) result to ``benchmarks/out/mil_inner.json`` as soon as it
is measured (a rerun skips measured ones). Commands and results: docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/mil_inner.py` from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning import Callback  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from ahop_cli.evaluate import FoldRunner, InnerHooks, Protocol, prepare  # noqa: E402
from ahop_cli.selection import CurveRecorder  # noqa: E402
from benchmarks.common import OUT, format_rows, save_figure  # noqa: E402
from benchmarks.mil import BASELINE_NETWORK as BASELINE  # noqa: E402
from benchmarks.mil import SHARED, _config_args  # noqa: E402
from tasks.quiet import quiet_lightning  # noqa: E402

NET, OPTIMIZER = "model.init_args.network.", "model.init_args.optimizer.init_args."
#: the Hopfield pooling as it was before 2026-12-03: value and output projections (+ LayerNorm)
PROJECTED = {f"{NET}pooling_kwargs": None}
EMA = {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", "init_args": {"decay": 0.9}}
#: variant name -> config edits (dotted option -> value) on top of configs/mil.yaml
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "projected": PROJECTED,
    "projected_dot": {**PROJECTED, f"{NET}similarity": "dot"},
    "dot": {f"{NET}similarity": "dot"},
    "attention": {"model.init_args.pooling": "attention", "model.init_args.network": BASELINE},
    "mean": {"model.init_args.pooling": "mean", "model.init_args.network": BASELINE},
    "idrop0.3": {f"{NET}instance_dropout": 0.3},
    "input_dropout0.3": {f"{NET}input_dropout": 0.3},
    "emb16": {f"{NET}embedding_dim": 16},
    "layers1": {f"{NET}num_embedding_layers": 1},
    "layers1_emb128": {f"{NET}num_embedding_layers": 1, f"{NET}embedding_dim": 128},
    "lr3e-4": {f"{OPTIMIZER}lr": 3e-4},
    "ens3": {"model.init_args.ensemble_size": 3},
    "ens5": {"model.init_args.ensemble_size": 5},
    "ens10": {"model.init_args.ensemble_size": 10},
    "max_pool_skip": {f"{NET}max_pool_skip": True},
    "pooled_linear": {f"{NET}pooled_linear": True},
    "ema": {"trainer.callbacks": [EMA]},
}
RESULTS = OUT / "mil_inner.json"
METRICS = {"auroc": "AUROC", "acc": "acc"}
RULES = {"loss": "loss-chosen epochs", "auroc": "AUROC-chosen epochs", "fixed": "fixed epochs"}
#: the columns of :func:`table`: header -> template of a row's fields (percentages: ``_pct``)
COLUMNS = {"data set": "{dataset}", "variant": "{variant}"}
COLUMNS |= {"inner AUROC @ loss epoch": "{auroc_at_loss_epoch_pct:.1f}"}
COLUMNS |= {"inner acc @ loss epoch": "{acc_at_loss_epoch_pct:.1f}", "loss epochs": "{epochs:.1f}"}
COLUMNS |= {"best mean AUROC (epoch)": "{best_auroc_pct:.1f} ({best_auroc_epoch:.0f})"}
COLUMNS |= {"AUROC last epoch": "{auroc_last_pct:.1f}", "s / outer fold": "{seconds_per_fold:.0f}"}
#: the columns of the held-out inner-fold AUROC / accuracy per epoch-selection rule
#: (:func:`held_out_rules`)
RULE_COLUMNS = {"data set": "{dataset}", "variant": "{variant}"}
RULE_COLUMNS |= {
    f"{METRICS[m]}, {RULES[r]}": f"{{held_out_{m}_{r}_pct:.1f}}" for m in METRICS for r in RULES
}


def _mean_curve(curves: Sequence[Sequence[float]]) -> list[float]:
    """Mean over folds per epoch (as long as the shortest fold)."""
    length = min(len(c) for c in curves)
    return [float(np.mean([c[e] for c in curves])) for e in range(length)]


def _train_curve(recorders: Sequence[CurveRecorder], name: str) -> list[float]:
    """Mean over the inner folds of one training metric per epoch."""
    return _mean_curve([[epoch.get(name, np.nan) for epoch in r.epochs] for r in recorders])


class PredictionRecorder(Callback):
    """Each validation epoch's positive-bag probabilities and labels (``epochs[i]`` = after epoch
    ``i``), recomputed by the task's ``shared_step`` (the validation bags are few)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[np.ndarray, np.ndarray]] = []
        self._batches: list[tuple[np.ndarray, np.ndarray]] = []

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._batches = []

    @torch.no_grad()
    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        _, (probabilities, labels) = pl_module.shared_step(batch, "val")
        self._batches.append((probabilities.cpu().numpy(), labels.cpu().numpy()))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.epochs.append(tuple(np.concatenate(part) for part in zip(*self._batches)))


def held_out_rules(
    folds: Sequence[Sequence[dict[str, float]]], predictions: Sequence[PredictionRecorder]
) -> dict[str, float]:
    """Epoch-selection rules scored without a test bag: for each inner fold, the rule picks an
    epoch count from the *other* inner folds' curves, and that fold's validation predictions at
    it are kept; the AUROC / accuracy of all kept predictions (every training bag once)."""
    length = min(len(p.epochs) for p in predictions)
    chosen: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for held in range(len(folds)):
        others = [k for k in range(len(folds)) if k != held]
        mean = {
            name: np.mean([[folds[k][e][name] for e in range(length)] for k in others], axis=0)
            for name in ("val/loss", "val/auroc")
        }
        epochs = {
            "loss": int(np.argmin(mean["val/loss"])),
            "auroc": int(np.nanargmax(mean["val/auroc"])),
            "fixed": length - 1,
        }
        for rule, epoch in epochs.items():
            chosen.setdefault(rule, []).append(predictions[held].epochs[epoch])
    scores = {}
    for rule, parts in chosen.items():
        probabilities, labels = (np.concatenate(part) for part in zip(*parts))
        scores[f"held_out_auroc_{rule}"] = float(roc_auc_score(labels, probabilities))
        scores[f"held_out_acc_{rule}"] = float(np.mean((probabilities > 0.5) == labels))
    return scores


def measure(dataset: str, variant: str, options: argparse.Namespace) -> dict[str, Any]:
    """The inner-validation facts of one variant on the first outer folds of a data set."""
    args = [*_config_args(dataset), "--data.init_args.data_dir", str(options.data_dir)]
    args += ["--trainer.max_epochs", str(options.max_epochs)]
    protocol, start, per_fold = Protocol(inner_folds=options.inner_folds), time.perf_counter(), []
    with quiet_lightning(), tempfile.TemporaryDirectory() as tmp:
        base, plan, monitor = prepare(args, protocol)
        for spec in plan[: options.outer_folds]:
            runner = FoldRunner(base, spec, protocol, Path(tmp) / spec.key, None, monitor)
            train = [CurveRecorder("train") for _ in range(options.inner_folds)]
            predictions = [PredictionRecorder() for _ in range(options.inner_folds)]
            hooks = InnerHooks(lambda k, t=train, p=predictions: [t[k], p[k]])
            curves = runner.inner_curves(VARIANTS[variant], hooks)
            (epochs, evidence), auroc = curves.choose("val/loss", "min"), curves.mean("val/auroc")
            per_fold.append(
                {
                    "epochs": epochs,
                    "auroc_at_loss_epoch": evidence["val/auroc"],
                    "acc_at_loss_epoch": evidence["val/acc"],
                    "loss_min": evidence["val/loss"],
                    "best_auroc": float(np.nanmax(auroc)),
                    "best_auroc_epoch": int(np.nanargmax(auroc)) + 1,
                    "auroc_last": float(auroc[-1]),
                    "mean_auroc_curve": [float(v) for v in auroc],
                    "mean_val_loss_curve": [float(v) for v in curves.mean("val/loss")],
                    "mean_train_loss_curve": _train_curve(train, "train/loss"),
                    "mean_train_auroc_curve": _train_curve(train, "train/auroc"),
                    **held_out_rules(curves.folds, predictions),
                }
            )
    names = [key for key in per_fold[0] if key.endswith("_curve")]
    return {
        "dataset": dataset,
        "variant": variant,
        "folds": per_fold,
        "seconds": time.perf_counter() - start,
        "curves": {key: _mean_curve([f[key] for f in per_fold]) for key in names},
        **{k: float(np.mean([f[k] for f in per_fold])) for k in per_fold[0] if k not in names},
    }


def plot_curves(rows: list[dict[str, Any]]) -> Path:
    """Per data set: training vs inner-validation loss (top) and AUROC (bottom) per epoch, one
    colour per variant (solid: validation, dashed: training); the mean over inner folds."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    figure = Figure(figsize=(4 * len(datasets), 6))
    axes = figure.subplots(2, len(datasets), squeeze=False)
    colours = {v: f"C{i}" for i, v in enumerate(dict.fromkeys(r["variant"] for r in rows))}
    for column, dataset in enumerate(datasets):
        loss, auroc = axes[0][column], axes[1][column]
        for row in (r for r in rows if r["dataset"] == dataset and "curves" in r):
            curves, colour = row["curves"], colours[row["variant"]]
            length = len(curves["mean_val_loss_curve"])
            for axis, name in ((loss, "loss"), (auroc, "auroc")):
                val = curves["mean_val_loss_curve" if name == "loss" else "mean_auroc_curve"]
                train = curves[f"mean_train_{name}_curve"][:length]
                label = row["variant"] if name == "loss" else None
                axis.plot(range(1, len(val) + 1), val, color=colour, label=label)
                axis.plot(range(1, len(train) + 1), train, color=colour, linestyle="--")
        loss.set_title(dataset, fontsize=9)
        loss.set_ylabel("loss (solid: inner val, dashed: train)", fontsize=8)
        loss.set_ylim(0, 1.2)
        auroc.set_ylabel("AUROC", fontsize=8)
        auroc.set_ylim(0.6, 1.0)
        auroc.set_xlabel("epoch")
        loss.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, "mil_curves")


def _pct(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``<score>_pct`` = 100 x each score and the seconds per outer fold."""
    pct = {f"{k}_pct": 100 * v for k, v in row.items() if isinstance(v, float) and k != "seconds"}
    return {**row, **pct, "seconds_per_fold": row["seconds"] / len(row["folds"])}


def table(rows: list[dict[str, Any]]) -> str:
    return format_rows(COLUMNS, map(_pct, rows))


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets", nargs="*", default=["elephant", "ucsb_breast_cancer", "musk1"]
    )
    variants = ["default", "projected", "attention", "mean"]
    parser.add_argument("--variants", nargs="*", default=variants, choices=list(VARIANTS))
    parser.add_argument("--outer-folds", type=int, default=2)
    parser.add_argument("--inner-folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    done = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    settings = {k: getattr(options, k) for k in ("outer_folds", "inner_folds", "max_epochs")}
    chosen = []
    for dataset in options.datasets:
        for variant in options.variants:
            key = {"dataset": dataset, "variant": variant, **settings}
            row = next((r for r in done if all(r.get(k) == v for k, v in key.items())), None)
            if row is None:
                done.append(row := {**measure(dataset, variant, options), **settings})
                OUT.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(done, indent=2))
                print(table([row]).splitlines()[-1], flush=True)
            chosen.append(row)
    print(
        f"\ninner validation only ({options.outer_folds} outer training folds x "
        f"{options.inner_folds} inner folds, {options.max_epochs} epochs), x100"
    )
    print(table(chosen))
    print("\nepoch-selection rules, held-out inner folds (every training bag once), x100")
    print(format_rows(RULE_COLUMNS, [_pct(r) for r in chosen if "held_out_auroc_fixed" in r]))
    print(f"plot: {plot_curves(chosen)}")
    return chosen


if __name__ == "__main__":
    main()
