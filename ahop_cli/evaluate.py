"""``ahop cv``: one evaluation protocol for every classification config (tabular, MIL, image).

    ahop cv --config configs/mil.yaml --data.init_args.dataset elephant --repeats 5   # 5 x 10-fold CV
    ahop cv --config configs/mil.yaml --search configs/search/mil.yaml
    ahop cv --resume runs/cv/mil-20261201-101500-3f2a          # continue a stopped run
    ahop cv --config configs/tabular_uci.yaml --selection validation --repeats 3

**Protocol.** For every repeat ``r`` (seed = base seed + ``r``: folds, validation split, model
initialisation) and every outer fold ``k`` of the datamodule (``data.init_args.num_folds``
stratified folds, the predefined splits of a UCI set, or the one fixed test split), the fold's
model is chosen on its training data only by the selection rule (:mod:`ahop_cli.selection`,
default: the task's ``cv_selection``: ``inner_cv``, the epoch count by inner k-fold, then a
retrain on the whole training data; MIL: ``fixed``, ``max_epochs`` on it; tabular:
``validation``, the config's validation split and best checkpoint), optionally after an
Optuna search on the same inner folds (:mod:`ahop_cli.search`), and tested once on fold ``k``.
No test sample reaches a fit (checked by id in every fit).

**Outputs.** Every invocation gets its own run folder ``<output_dir>/<config>-<date>-<id>/``
(never reused, except by ``--resume``): ``run.json`` (arguments), ``folds/<key>/result.json``
(per fold: test metrics, chosen epochs, inner-validation evidence, search parameters, ids of the
test samples) and ``fit_config.yaml`` (the final fit's config, runnable by ``ahop fit``), ``logs/``
(TensorBoard of the final fits and of every search trial), and ``results.md`` (table),
``results.json`` (all folds + mean ± std over folds and over repeats), ``folds.png`` (box plot).
A progress line is printed per fold. ``--resume`` skips finished folds; several workers
(``--workers N`` or further ``ahop cv --resume <run>`` processes) split the folds of one run.

**Python API** (stable; what the benchmarks use)::

    from ahop_cli.evaluate import Protocol, evaluate
    result = evaluate(["--config", "configs/mil.yaml"], Protocol(repeats=5), threads=1)
    result.summary["test/auroc"]["mean"], result.table(), result.run_dir

This module is that API: the engine (:mod:`ahop_cli.cv.engine`) with the Optuna search
(:class:`ahop_cli.search.OptunaSearch`) wired in, and the names of :mod:`ahop_cli.cv`'s modules
a caller needs. The command line is :mod:`ahop_cli.cv.command`; its other arguments are
LightningCLI arguments of ``ahop fit`` (``--config``, ``--model.init_args.dropout 0.2`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ahop_cli.cv import engine
from ahop_cli.cv.command import main
from ahop_cli.cv.engine import FoldRunner, InnerHooks, plan_folds, prepare, probe, run_fold
from ahop_cli.cv.protocol import FoldResult, FoldSpec, Protocol
from ahop_cli.cv.report import (
    TABLE_METRICS,
    Evaluation,
    format_table,
    mean_std,
    plot_folds,
    summarize,
    write_outputs,
)
from ahop_cli.cv.runs import claim, new_run_dir
from ahop_cli.search import OptunaSearch
from tasks.quiet import quiet_lightning as quiet

__all__ = [
    "TABLE_METRICS",
    "Evaluation",
    "FoldResult",
    "FoldRunner",
    "FoldSpec",
    "InnerHooks",
    "Protocol",
    "claim",
    "evaluate",
    "format_table",
    "main",
    "mean_std",
    "new_run_dir",
    "plan_folds",
    "plot_folds",
    "prepare",
    "probe",
    "quiet",
    "run_fold",
    "start_run",
    "summarize",
    "write_outputs",
]


def evaluate(
    args: Sequence[str],
    protocol: Protocol | None = None,
    *,
    output_dir: str | Path = "runs/cv",
    resume: str | Path | None = None,
    threads: int | None = None,
    storage: str | None = None,
    max_folds: int | None = None,
    log: Callable[[str], None] | None = print,
) -> Evaluation:
    """:func:`ahop_cli.cv.engine.evaluate` with the Optuna search for ``protocol.search`` (see
    there for the arguments)."""
    return engine.evaluate(
        args,
        protocol,
        output_dir=output_dir,
        resume=resume,
        threads=threads,
        storage=storage,
        max_folds=max_folds,
        log=log,
        search=OptunaSearch(),
    )


def start_run(args: Sequence[str], protocol: Protocol, output_dir: str | Path = "runs/cv") -> Path:
    """:func:`ahop_cli.cv.engine.start_run` with the Optuna search: a run folder for ``args`` /
    ``protocol`` without running a fold (``evaluate(..., resume=<it>)`` runs it)."""
    return engine.start_run(args, protocol, output_dir, OptunaSearch())
