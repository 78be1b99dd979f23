"""k-fold cross-validation of a multiple-instance config from one command.

    python mil_cv.py --config configs/mil.yaml
    python mil_cv.py --config configs/mil_elephant.yaml --repeats 5 --results runs/elephant.json
    python mil_cv.py --config configs/mil.yaml --folds 5 --model.init_args.similarity dot

For every repeat ``r`` (seed = the config's data seed + ``r``) and every fold ``k`` of the
stratified k-fold split over bags, this trains a fresh model exactly as
``python train.py fit --config ... --data.init_args.fold k`` would (same config, callbacks and
overrides; early stopping and the best checkpoint on the inner validation split), tests the best
checkpoint on fold ``k`` and prints a markdown table of the test metrics per fold with their
mean ± std. Datasets with fixed train / test bags (``mnist_bags``) run once per repeat.

Options of this runner: ``--config`` (repeatable, as in train.py), ``--folds`` (number of folds,
default: the config's ``num_folds``), ``--repeats``, ``--output_dir`` (checkpoints of runs without
a logger) and ``--results`` (write every fold's numbers as JSON). Every other argument is passed
on to train.py (e.g. ``--model.init_args.similarity dot``, ``--trainer.max_epochs 50``).
With a TensorBoard logger, fold ``k`` of seed ``s`` logs to version ``cv_seed<s>_fold<k>``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger

import train
from datamodules.mil import MILDataModule

#: test metrics shown in the table, in this order, with their column titles
TABLE_METRICS = {"test/auroc": "test AUROC", "test/acc": "test acc", "test/f1": "test F1"}


@dataclass
class FoldResult:
    """What one fold of one repeat produced."""

    seed: int
    fold: int
    metrics: dict[str, float]
    epochs: int
    best_val: float | None
    seconds: float
    checkpoint: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def _data_seed(cli: train.AhopCLI) -> int:
    return int(cli.datamodule.hparams.get("seed", 0))


def _fold_args(args: list[str], seed: int, fold: int, num_folds: int | None, root: Path, tb: bool):
    extra = [
        "--seed_everything",
        str(seed),
        "--data.init_args.seed",
        str(seed),
        "--data.init_args.fold",
        str(fold),
        "--trainer.default_root_dir",
        str(root / f"seed{seed}" / f"fold{fold:02d}"),
    ]
    if num_folds is not None:
        extra += ["--data.init_args.num_folds", str(num_folds)]
    if tb:
        extra += ["--trainer.logger.init_args.version", f"cv_seed{seed}_fold{fold:02d}"]
    return [*args, *extra]  # run=False: the CLI has no subcommands


def run_cv(
    args: list[str],
    num_folds: int | None = None,
    repeats: int = 1,
    output_dir: str | Path = "runs/mil_cv",
) -> list[FoldResult]:
    """Train and test every fold of every repeat of the train.py arguments ``args``.

    Args:
        args: train.py arguments without the subcommand, e.g. ``["--config", "configs/mil.yaml"]``.
        num_folds: override of the datamodule's ``num_folds`` (``None``: the config's).
        repeats: repeats of the whole cross-validation; repeat ``r`` uses seed ``seed + r`` for
            the folds, the validation split and the model's initialisation.
        output_dir: root of the per-fold ``default_root_dir`` (checkpoints when no logger is set).

    Returns:
        one :class:`FoldResult` per (repeat, fold), in run order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if num_folds is not None and num_folds < 2:
        raise ValueError(f"folds must be >= 2, got {num_folds}")
    probe_args = [*args] + (
        [] if num_folds is None else ["--data.init_args.num_folds", str(num_folds)]
    )
    probe = train.main(probe_args, run=False)
    if not isinstance(probe.datamodule, MILDataModule):
        raise ValueError(
            f"mil_cv needs a datamodules.mil.MILDataModule config, got "
            f"{type(probe.datamodule).__name__}"
        )
    base_seed = _data_seed(probe)
    fold_count = probe.datamodule.fold_count
    tensorboard = isinstance(probe.trainer.logger, TensorBoardLogger)
    results: list[FoldResult] = []
    for repeat in range(repeats):
        seed = base_seed + repeat
        pool = None  # one datamodule per repeat reads the files once; every fold is a view of it
        for fold in range(fold_count):
            fold_args = _fold_args(args, seed, fold, num_folds, Path(output_dir), tensorboard)
            cli = train.main(fold_args, run=False)
            if pool is None:
                pool = _fresh_datamodule(cli.datamodule)
                pool.load()
            results.append(_run_fold(cli, pool.with_fold(fold), seed, fold))
    return results


def _fresh_datamodule(datamodule: MILDataModule) -> MILDataModule:
    """The same datamodule built from its init arguments only (LightningCLI adds private
    ``_class_path`` entries to ``hparams``, which ``with_fold`` would pass to ``__init__``)."""
    init_args = {k: v for k, v in datamodule.hparams.items() if not k.startswith("_")}
    return type(datamodule)(**init_args)


def _run_fold(cli: train.AhopCLI, datamodule: MILDataModule, seed: int, fold: int) -> FoldResult:
    start = time.perf_counter()
    trainer, model = cli.trainer, cli.model
    trainer.fit(model, datamodule=datamodule)
    callback = trainer.checkpoint_callback
    best_path = getattr(callback, "best_model_path", "") or ""
    # fast_dev_run and runs without checkpointing have no best checkpoint: test the last weights
    tested = trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)
    metrics = {name: float(value) for name, value in tested[0].items()}
    best = getattr(callback, "best_model_score", None)
    return FoldResult(
        seed=seed,
        fold=fold,
        metrics=metrics,
        epochs=trainer.current_epoch,
        best_val=None if best is None else float(best),
        seconds=time.perf_counter() - start,
        checkpoint=best_path,
        extra={"bags": datamodule.num_bags},
    )


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN for no values."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(results: list[FoldResult]) -> dict[str, dict[str, float]]:
    """Per metric: ``mean`` and ``std`` over all folds, and, with several repeats, ``repeat_std``
    (std of the per-repeat means, the number papers with repeated CV report)."""
    summary: dict[str, dict[str, float]] = {}
    seeds = sorted({r.seed for r in results})
    for name in TABLE_METRICS:
        values = [r.metrics[name] for r in results if name in r.metrics]
        mean, std = mean_std(values)
        entry = {"mean": mean, "std": std}
        if len(seeds) > 1:
            per_repeat = [
                mean_std([r.metrics[name] for r in results if r.seed == s and name in r.metrics])[0]
                for s in seeds
            ]
            entry["repeat_std"] = mean_std(per_repeat)[1]
        summary[name] = entry
    return summary


def format_table(results: list[FoldResult]) -> str:
    """Markdown table: one row per fold, then mean ± std over folds (and over repeats)."""
    titles = ["seed", "fold", "epochs", "best val/loss", *TABLE_METRICS.values(), "time (s)"]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for r in results:
        best = "" if r.best_val is None else f"{r.best_val:.4f}"
        cells = [str(r.seed), str(r.fold), str(r.epochs), best]
        cells += [f"{r.metrics.get(name, math.nan):.4f}" for name in TABLE_METRICS]
        lines.append("| " + " | ".join([*cells, f"{r.seconds:.1f}"]) + " |")
    summary = summarize(results)
    cells = [f"{s['mean']:.4f} ± {s['std']:.4f}" for s in summary.values()]
    total = sum(r.seconds for r in results)
    lines.append(f"| **mean ± std** | {len(results)} runs | | | " + " | ".join(cells))
    lines[-1] += f" | {total:.1f} |"
    if any("repeat_std" in s for s in summary.values()):
        cells = [f"{s['mean']:.4f} ± {s['repeat_std']:.4f}" for s in summary.values()]
        lines.append("| **over repeats** | | | | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="k-fold cross-validation of a MIL config (extra arguments go to train.py)",
        allow_abbrev=False,
    )
    parser.add_argument("--config", action="append", required=True, help="train.py config(s)")
    parser.add_argument("--folds", type=int, default=None, help="number of folds (default: config)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the whole CV")
    parser.add_argument("--output_dir", default="runs/mil_cv", help="root of per-fold run dirs")
    parser.add_argument("--results", default=None, help="write per-fold results to this JSON")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> list[FoldResult]:
    """Run the cross-validation of the command line ``argv`` and print its table."""
    options, overrides = parse_args(argv)
    args = [item for config in options.config for item in ("--config", config)] + overrides
    results = run_cv(args, options.folds, options.repeats, options.output_dir)
    print(format_table(results))
    if options.results:
        path = Path(options.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"args": args, "folds": [asdict(r) for r in results]}
        payload["summary"] = summarize(results)
        path.write_text(json.dumps(payload, indent=2))
    return results


def run_cli() -> None:
    """Like train.py: configuration and data errors end with a one-line ``error: ...``."""
    try:
        main()
    except train.USER_ERRORS as error:
        if os.environ.get("AHOP_DEBUG"):
            raise
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    run_cli()
