"""``ahop cv``: one evaluation protocol for every classification config (tabular, MIL, image).

    ahop cv --config configs/mil_elephant.yaml --repeats 5              # 5 x 10-fold CV
    ahop cv --config configs/mil_elephant.yaml --search configs/search/mil.yaml
    ahop cv --resume runs/cv/mil_elephant-20261201-101500-3f2a          # continue a stopped run
    ahop cv --config configs/tabular_uci.yaml --selection validation --repeats 3

**Protocol.** For every repeat ``r`` (seed = base seed + ``r``: folds, validation split, model
initialisation) and every outer fold ``k`` of the datamodule (``data.init_args.num_folds``
stratified folds, the predefined splits of a UCI set, or the one fixed test split), the fold's
model is chosen on its training data only by the selection rule (:mod:`ahop_cli.selection`,
default ``inner_cv``: the epoch count by inner k-fold, then a retrain on the whole training
data), optionally after an Optuna search on the same inner folds (:mod:`ahop_cli.search`), and
tested once on fold ``k``. No test sample reaches a fit (checked by id in every fit).

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

Arguments other than the options below are LightningCLI arguments of ``ahop fit`` (``--config``,
``--model.init_args.dropout 0.2`` ...).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import math
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from ahop_cli.checkpoints import read_checkpoint
from ahop_cli.config_edit import (
    build_cli,
    dump_config,
    get_option,
    has_option,
    instantiate,
    to_yaml,
    with_edits,
    without_callbacks,
)
from ahop_cli.selection import CurveRecorder, InnerCurves, Selection, StateHistory, get_rule

#: test metrics shown in tables and plots, in this order (others are kept in the JSON)
TABLE_METRICS = ("test/auroc", "test/acc", "test/f1")
#: options of the protocol that change results (``run.json`` must match them on ``--resume``)
_LOG = logging.getLogger("ahop.cv")


# --------------------------------------------------------------------------- protocol / results


@dataclass
class Protocol:
    """How to evaluate a config.

    Attributes:
        repeats: repeats of the whole cross-validation; repeat ``r`` uses seed ``seed + r``.
        folds: outer folds (overrides ``data.init_args.num_folds``; ``None``: the config's).
        seed: base seed (``None``: the config's ``data.init_args.seed``).
        selection: model-selection rule, a name in :data:`ahop_cli.selection.SELECTION_RULES`.
        inner_folds: inner folds of the training data (selection ``inner_cv`` and searches).
        monitor: validation metric that selects (``None``: the model's ``monitor``, e.g.
            ``val/loss`` for MIL, ``val/acc`` for the other classifiers); mode follows the name
            (``loss`` -> min, else max) unless ``mode`` is set.
        mode: ``min`` | ``max`` | ``None`` (see ``monitor``).
        search: an Optuna search run inside every outer training fold (a dict as in the search
            YAML, see :mod:`ahop_cli.search`), or ``None``.
    """

    repeats: int = 1
    folds: int | None = None
    seed: int | None = None
    selection: str = "inner_cv"
    inner_folds: int = 5
    monitor: str | None = None
    mode: str | None = None
    search: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.inner_folds < 2:
            raise ValueError(f"inner_folds must be >= 2, got {self.inner_folds}")
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"mode must be min or max, got {self.mode!r}")
        get_rule(self.selection)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Protocol:
        """A protocol from a YAML mapping (unknown keys are a one-line error)."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"unknown protocol keys {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**dict(values))


@dataclass
class FoldSpec:
    """One outer fold of one repeat."""

    repeat: int
    fold: int
    seed: int

    @property
    def key(self) -> str:
        return f"r{self.repeat}_f{self.fold:02d}"


@dataclass
class FoldResult:
    """What one outer fold produced (``result.json`` of the fold)."""

    repeat: int
    fold: int
    seed: int
    metrics: dict[str, float]
    epochs: int | None
    selection: dict[str, Any]
    seconds: float
    sizes: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    test_ids: list[Any] = field(default_factory=list)

    @property
    def key(self) -> str:
        return FoldSpec(self.repeat, self.fold, self.seed).key


@dataclass
class Evaluation:
    """The results of an evaluation run."""

    run_dir: Path
    folds: list[FoldResult]
    protocol: Protocol
    args: list[str]

    @property
    def summary(self) -> dict[str, dict[str, float]]:
        return summarize(self.folds)

    def table(self) -> str:
        return format_table(self.folds, self.protocol)


# --------------------------------------------------------------------------- datamodule adapters


def split_ids(datamodule: Any, split: str) -> list[Any]:
    """Ids of the samples of ``split`` in a set-up datamodule: its ``split_ids(split)`` (MIL bag
    ids, image numbers) or its ``split_indices[split]`` rows (tabular)."""
    if hasattr(datamodule, "split_ids"):
        return list(datamodule.split_ids(split))
    indices = getattr(datamodule, "split_indices", None)
    if isinstance(indices, Mapping):
        return [int(i) for i in indices.get(split, [])]
    raise ValueError(
        f"{type(datamodule).__name__} exposes neither split_ids(split) nor split_indices, so the "
        "evaluation cannot check that test samples stay out of training"
    )


def _tabular_fold_count(datamodule: Any) -> int:
    hp = datamodule.hparams
    if hp.get("num_folds"):
        return int(hp.num_folds)
    if hp.get("source") == "uci":
        from datamodules.tabular_sources import load_table

        splits = load_table(hp.source, datamodule.spec).splits
        return len(splits) if splits else 1
    return 1  # one stratified random split per seed (repeats draw new ones)


#: fold counts of datamodules without a ``fold_count`` attribute, by class name
FOLD_COUNTS: dict[str, Callable[[Any], int]] = {"TabularDataModule": _tabular_fold_count}


def fold_count(datamodule: Any) -> int:
    """Outer folds of a datamodule: its ``fold_count``, a :data:`FOLD_COUNTS` entry, or
    ``num_folds`` (1 when it has no folds: a fixed test split)."""
    count = getattr(datamodule, "fold_count", None)
    if count is not None:
        return int(count)
    counter = FOLD_COUNTS.get(type(datamodule).__name__)
    if counter is not None:
        return counter(datamodule)
    return int(datamodule.hparams.get("num_folds") or 1)


def _val_option(config: Mapping[str, Any]) -> str:
    for name in ("val_fraction", "val_size"):
        if has_option(config, f"data.init_args.{name}"):
            return f"data.init_args.{name}"
    raise ValueError(
        "the datamodule has no val_fraction / val_size option, so a final fit on the whole "
        "training data is not possible; use --selection validation"
    )


def _mode_of(monitor: str) -> str:
    return "min" if "loss" in monitor.rsplit("/", 1)[-1] else "max"


# --------------------------------------------------------------------------- fits of one fold


class _TestIdGuard(Callback):
    """Stops a fit whose training or validation samples include a test sample of the fold."""

    def __init__(self, test_ids: set[Any]) -> None:
        self.test_ids = test_ids

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        for split in ("train", "val"):
            leaked = self.test_ids.intersection(split_ids(datamodule, split))
            if leaked:  # a bug in a datamodule's split options, never a user error
                raise RuntimeError(
                    f"{len(leaked)} test samples of this fold are in the {split} split "
                    f"(ids {sorted(leaked, key=str)[:5]}); the evaluation would be invalid"
                )


@dataclass
class InnerHooks:
    """Extra callbacks for the inner fits and a check after each (used by the search to prune).

    Attributes:
        callbacks: inner fold -> callbacks added to that fit.
        after_fold: called with (inner fold, curves so far); may raise to stop the trial.
    """

    callbacks: Callable[[int], list[Callback]] = lambda inner_fold: []
    after_fold: Callable[[int, InnerCurves], None] = lambda inner_fold, curves: None


_QUIET = {
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
}


class FoldRunner:
    """Builds and runs the fits of one outer fold from the base config dict.

    Args:
        base: the complete config (:func:`ahop_cli.config_edit.dump_config`).
        spec: the outer fold.
        protocol: the evaluation protocol.
        fold_dir: folder of this fold's files.
        logs_dir: TensorBoard root of the run (``None``: no loggers).
    """

    def __init__(
        self,
        base: Mapping[str, Any],
        spec: FoldSpec,
        protocol: Protocol,
        fold_dir: Path,
        logs_dir: Path | None,
        monitor: str,
    ) -> None:
        self.base, self.spec, self.protocol = base, spec, protocol
        self.fold_dir, self.logs_dir = fold_dir, logs_dir
        self.inner_folds = protocol.inner_folds
        self.monitor = monitor
        self.mode = protocol.mode or _mode_of(monitor)
        self._test_ids: set[Any] | None = None

    # -- configs ---------------------------------------------------------------------------
    def fold_edits(self) -> dict[str, Any]:
        """Edits that select this fold: seeds, fold index, number of folds."""
        edits: dict[str, Any] = {"seed_everything": self.spec.seed}
        if has_option(self.base, "data.init_args.seed"):
            edits["data.init_args.seed"] = self.spec.seed
        if has_option(self.base, "data.init_args.fold"):
            edits["data.init_args.fold"] = self.spec.fold
        if self.protocol.folds is not None:
            edits["data.init_args.num_folds"] = self.protocol.folds
        return edits

    def _whole_training_data(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Edits that train on every training sample of ``config`` (no validation split)."""
        edits: dict[str, Any] = {_val_option(config): 0.0}
        if has_option(config, "data.init_args.inner_folds"):
            edits["data.init_args.inner_folds"] = None
        edits["trainer.limit_val_batches"] = 0
        edits["trainer.num_sanity_val_steps"] = 0
        edits["trainer.callbacks"] = without_callbacks(config, (EarlyStopping, ModelCheckpoint))
        if has_option(config, "best_k"):  # no validation metric to rank checkpoints by
            edits["best_k"] = 0
        return edits

    def inner_config(self, edits: Mapping[str, Any], inner_fold: int) -> dict[str, Any]:
        if not has_option(self.base, "data.init_args.inner_folds"):
            raise ValueError(
                f"{get_option(self.base, 'data.class_path')} has no inner_folds option, which "
                "selection 'inner_cv' and searches need; use --selection validation or fixed"
            )
        config = with_edits(self.base, {**self.fold_edits(), **edits})
        role = {
            "data.init_args.inner_folds": self.inner_folds,
            "data.init_args.inner_fold": inner_fold,
            "trainer.callbacks": without_callbacks(config, (EarlyStopping, ModelCheckpoint)),
            "trainer.logger": False,
            "trainer.enable_checkpointing": False,
            "trainer.num_sanity_val_steps": 0,
            "trainer.default_root_dir": str(self.fold_dir / "inner"),
            **_QUIET,
        }
        return with_edits(config, role)

    def final_config(self, selection: Selection) -> dict[str, Any]:
        """The final fit's config as ``ahop fit`` would run it (written to ``fit_config.yaml``)."""
        config = with_edits(self.base, {**self.fold_edits(), **selection.edits})
        if selection.whole_training_data:
            config = with_edits(config, self._whole_training_data(config))
        return config

    def _run_edits(self, config: Mapping[str, Any], selection: Selection) -> dict[str, Any]:
        """What the engine changes on top of the final config: quiet, own folders."""
        edits: dict[str, Any] = {**_QUIET, "trainer.default_root_dir": str(self.fold_dir)}
        logger = get_option(config, "trainer.logger", None)
        if isinstance(logger, Mapping) and self.logs_dir is not None:
            for option, value in (("save_dir", str(self.logs_dir)), ("name", "folds")):
                if option in logger.get("init_args", {}):
                    edits[f"trainer.logger.init_args.{option}"] = value
            if "version" in logger.get("init_args", {}):
                edits["trainer.logger.init_args.version"] = self.spec.key
        elif self.logs_dir is None:
            edits["trainer.logger"] = False
        if selection.whole_training_data:
            edits["trainer.enable_checkpointing"] = False  # the engine saves final.ckpt itself
        return edits

    # -- fits --------------------------------------------------------------------------------
    def test_ids(self) -> set[Any]:
        """Ids of the outer fold's test samples (built once from the fold's datamodule)."""
        if self._test_ids is None:
            datamodule = instantiate(get_option(with_edits(self.base, self.fold_edits()), "data"))
            datamodule.setup("fit")
            self._test_ids = set(split_ids(datamodule, "test"))
        return self._test_ids

    def inner_curves(
        self,
        edits: Mapping[str, Any],
        hooks: InnerHooks | None = None,
        keep_states: bool = False,
    ) -> InnerCurves:
        """Train on every inner fold with config ``edits`` for ``max_epochs``; the curves (with
        ``keep_states``: also the inner models and their weights after every epoch)."""
        hooks = hooks or InnerHooks()
        curves = InnerCurves()
        guard = _TestIdGuard(self.test_ids())
        for inner_fold in range(self.inner_folds):
            cli = build_cli(self.inner_config(edits, inner_fold))
            recorder, history = CurveRecorder(), StateHistory()
            extra = [guard, recorder, *([history] if keep_states else [])]
            cli.trainer.callbacks.extend([*extra, *hooks.callbacks(inner_fold)])
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            curves.folds.append(recorder.epochs)
            if keep_states:
                curves.models.append((cli.model, history.states))
            hooks.after_fold(inner_fold, curves)
        return curves

    def final_fit(self, selection: Selection) -> tuple[dict[str, float], dict[str, Any]]:
        """Train the fold's final model, test it; (test metrics, details)."""
        config = self.final_config(selection)
        self.fold_dir.mkdir(parents=True, exist_ok=True)
        header = "# the final fit of this fold; `ahop fit --config <this file>` runs it as is\n"
        if selection.ensemble:
            header = (
                "# this fold tested the mean of its inner models (ensemble.pt); this file trains\n"
                "# the single-model equivalent on all training data (`ahop fit --config <it>`)\n"
            )
        (self.fold_dir / "fit_config.yaml").write_text(header + to_yaml(config))
        cli = build_cli(with_edits(config, self._run_edits(config, selection)))
        cli.trainer.callbacks.append(_TestIdGuard(self.test_ids()))
        trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
        ckpt_path = None
        if selection.ensemble:  # the inner models are the fold's model: nothing to train
            from tasks.ensemble import EnsembleTask

            model = EnsembleTask(selection.ensemble)
            torch.save(
                [member.state_dict() for member in selection.ensemble],
                self.fold_dir / "ensemble.pt",
            )
        else:
            trainer.fit(model, datamodule=datamodule)
            if selection.test_checkpoint == "best":
                best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
                ckpt_path = best or None  # fast_dev_run / no checkpointing: the last weights
            else:
                trainer.save_checkpoint(self.fold_dir / "final.ckpt")
        tested = trainer.test(
            model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
        )
        test_ids = split_ids(datamodule, "test")
        if set(test_ids) != self.test_ids():
            raise RuntimeError("the final fit tested other samples than the fold's test split")
        sizes = {s: len(split_ids(datamodule, s)) for s in ("train", "val", "test")}
        saved = "ensemble.pt" if selection.ensemble else "final.ckpt"
        details = {
            "epochs": trainer.current_epoch if ckpt_path is None else _ckpt_epoch(trainer),
            "sizes": sizes,
            "test_ids": test_ids,
            "checkpoint": ckpt_path or str(self.fold_dir / saved),
        }
        return {k: float(v) for k, v in tested[0].items()}, details


def _ckpt_epoch(trainer: Trainer) -> int | None:
    path = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not path:
        return trainer.current_epoch
    return int(read_checkpoint(path).get("epoch", -1)) + 1


# --------------------------------------------------------------------------- run folders


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh folder ``<output_dir>/<name>-<date>-<time>-<random>``; never an existing one."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    while True:
        path = root / f"{name}-{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # same second and same random suffix: draw again
            continue


def _write_json(path: Path, payload: Any) -> None:
    """Write atomically, so an interrupted run never leaves half a result behind."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def claim(fold_dir: Path) -> Iterator[bool]:
    """Claim a fold for this process (a ``claim`` file; stale claims of dead local processes are
    taken over). Yields False when another live worker holds it."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    path = fold_dir / "claim"
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            alive = holder.get("host") != me["host"] or _pid_alive(int(holder.get("pid", -1)))
            if alive and holder:
                yield False
                return
            path.unlink(missing_ok=True)  # a crashed worker's claim
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


# --------------------------------------------------------------------------- summary / outputs


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; NaN for none)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(results: Sequence[FoldResult]) -> dict[str, dict[str, float]]:
    """Per test metric: ``mean`` / ``std`` over all folds, ``n`` folds, and ``repeat_mean`` /
    ``repeat_std``: over the per-repeat means (the published convention for repeated CV; the
    std is 0 with one repeat). Standard deviations are sample ones (ddof 1)."""
    names = sorted({name for r in results for name in r.metrics})
    repeats = sorted({r.repeat for r in results})
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        values = [r.metrics[name] for r in results if name in r.metrics]
        mean, std = mean_std(values)
        per_repeat = [
            mean_std([r.metrics[name] for r in results if r.repeat == rep and name in r.metrics])[0]
            for rep in repeats
        ]
        repeat_mean, repeat_std = mean_std(per_repeat)
        summary[name] = {
            "mean": mean,
            "std": std,
            "n": len(values),
            "repeat_mean": repeat_mean,
            "repeat_std": repeat_std,
            "repeats": len(repeats),
        }
    return summary


def _fmt(value: float | None, digits: int = 4) -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def format_table(results: Sequence[FoldResult], protocol: Protocol | None = None) -> str:
    """Markdown: one row per fold, then mean ± std over folds and over repeats."""
    metrics = [m for m in TABLE_METRICS if any(m in r.metrics for r in results)]
    evidence = sorted({k for r in results for k in r.selection.get("evidence", {})})
    monitor = next(
        (r.selection.get("monitor") for r in results if r.selection.get("monitor")), None
    )
    inner = [monitor] if monitor in evidence else []
    titles = ["repeat", "fold", "epochs", *[f"inner {m}" for m in inner], *metrics, "s"]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for r in results:
        cells = [str(r.repeat), str(r.fold), "" if r.epochs is None else str(r.epochs)]
        cells += [_fmt(r.selection.get("evidence", {}).get(m)) for m in inner]
        cells += [_fmt(r.metrics.get(m)) for m in metrics]
        lines.append("| " + " | ".join([*cells, f"{r.seconds:.1f}"]) + " |")
    summary = summarize(results)
    pad = [""] * (1 + len(inner))
    total = sum(r.seconds for r in results)
    cells = [f"{_fmt(summary[m]['mean'])} ± {_fmt(summary[m]['std'])}" for m in metrics]
    lines.append(
        "| **mean ± std (folds)** | "
        + " | ".join([f"{len(results)} folds", *pad[1:], "", *cells, f"{total:.0f}"])
        + " |"
    )
    if len({r.repeat for r in results}) > 1:
        cells = [
            f"{_fmt(summary[m]['repeat_mean'])} ± {_fmt(summary[m]['repeat_std'])}" for m in metrics
        ]
        lines.append(
            "| **mean ± std (repeats)** | " + " | ".join(["", *pad[1:], "", *cells, ""]) + " |"
        )
    header = ""
    if protocol is not None:
        search = (
            ""
            if not protocol.search
            else f", Optuna search ({protocol.search.get('trials', '?')} trials) per training fold"
        )
        header = (
            f"Protocol: {len({r.repeat for r in results})} repeat(s) x {len({r.fold for r in results})} "
            f"outer fold(s); selection `{protocol.selection}`"
            + (
                f" ({protocol.inner_folds} inner folds)"
                if get_rule(protocol.selection).needs_inner_folds or protocol.search
                else ""
            )
            + f"{search}; test samples never reach a fit.\n\n"
        )
    return header + "\n".join(lines)


def plot_folds(results: Sequence[FoldResult], path: Path) -> Path | None:
    """Box plot of every table metric over the folds, per-repeat means as dots."""
    from matplotlib.figure import Figure

    metrics = [m for m in TABLE_METRICS if any(m in r.metrics for r in results)]
    if not metrics:
        return None
    figure = Figure(figsize=(1.6 + 1.4 * len(metrics), 3.5))
    axis = figure.add_subplot(1, 1, 1)
    data = [[r.metrics[m] for r in results if m in r.metrics] for m in metrics]
    axis.boxplot(data, showmeans=True)
    axis.set_xticks(range(1, len(metrics) + 1), labels=metrics)
    repeats = sorted({r.repeat for r in results})
    if len(repeats) > 1:
        for i, m in enumerate(metrics, start=1):
            means = [
                mean_std([r.metrics[m] for r in results if r.repeat == rep and m in r.metrics])[0]
                for rep in repeats
            ]
            axis.scatter(
                [i + 0.25] * len(means),
                means,
                s=12,
                color="black",
                label="repeat means" if i == 1 else None,
            )
        axis.legend(fontsize=7)
    axis.set_title(f"{len(results)} folds", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def write_outputs(evaluation: Evaluation) -> None:
    """``results.md``, ``results.json`` and ``folds.png`` of the run folder."""
    run_dir = evaluation.run_dir
    (run_dir / "results.md").write_text(evaluation.table() + "\n")
    _write_json(
        run_dir / "results.json",
        {
            "args": evaluation.args,
            "protocol": asdict(evaluation.protocol),
            "machine": _machine(),
            "summary": evaluation.summary,
            "folds": [asdict(r) for r in evaluation.folds],
        },
    )
    if evaluation.folds:
        plot_folds(evaluation.folds, run_dir / "folds.png")


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- the engine


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Lightning's per-Trainer info lines and known-harmless warnings during a run."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            ".*does not have many workers.*",
            ".*could not find the monitored key.*",
            ".*Total length of .* across ranks is zero.*",
            ".*smaller than the logging interval.*",
            ".*You called `self.log.*",
            ".*litlogger.*",
            "LightningCLI's args parameter.*",
            ".*treespec.*",
            ".*The dirpath has changed.*",
            ".*WeightAveraging callback with a model that overrides the configure_model.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def plan_folds(datamodule: Any, protocol: Protocol, base_seed: int) -> list[FoldSpec]:
    """The (repeat, fold, seed) list of a protocol, repeat-major."""
    count = fold_count(datamodule)
    plan = [
        FoldSpec(repeat, fold, base_seed + repeat)
        for repeat in range(protocol.repeats)
        for fold in range(count)
    ]
    return plan


def _probe(args: Sequence[str], protocol: Protocol) -> tuple[Any, dict[str, Any]]:
    from ahop_cli.cli import main

    cli = main(list(args), run=False, exit_on_error=False)
    base = dump_config(cli)
    if protocol.folds is not None:
        if not has_option(base, "data.init_args.num_folds"):
            raise ValueError(f"--folds: {type(cli.datamodule).__name__} has no num_folds option")
        base = with_edits(base, {"data.init_args.num_folds": protocol.folds})
        cli = build_cli(base)
    return cli, base


def _prepare(args: Sequence[str], protocol: Protocol) -> tuple[dict[str, Any], list[FoldSpec], str]:
    """The base config, the fold plan and the monitored metric of ``args`` under ``protocol``."""
    cli, base = _probe(args, protocol)
    if protocol.search:  # a bad space fails here, before any run folder or fit
        from ahop_cli.search import SearchConfig

        SearchConfig.from_dict(protocol.search, base)
    monitor = protocol.monitor or getattr(cli.model, "monitor", None) or "val/loss"
    base_seed = protocol.seed
    if base_seed is None:
        fallback = get_option(base, "seed_everything", 0)
        base_seed = int(get_option(base, "data.init_args.seed", fallback) or 0)
    return base, plan_folds(cli.datamodule, protocol, base_seed), monitor


def _run_name(args: Sequence[str]) -> str:
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    configs += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    return Path(configs[-1]).stem if configs else "cv"


def run_fold(
    base: Mapping[str, Any],
    spec: FoldSpec,
    protocol: Protocol,
    run_dir: Path,
    monitor: str,
    storage: str | None = None,
) -> FoldResult:
    """Select (optionally search), train and test one outer fold."""
    start = time.perf_counter()
    fold_dir = run_dir / "folds" / spec.key
    runner = FoldRunner(base, spec, protocol, fold_dir, run_dir / "logs", monitor)
    rule = get_rule(protocol.selection)
    edits: dict[str, Any] = {}
    curves = None
    search_info: dict[str, Any] = {}
    if protocol.search:
        from ahop_cli.search import SearchConfig, run_search

        config = SearchConfig.from_dict(protocol.search, base)
        outcome = run_search(
            runner,
            config,
            storage=storage or f"sqlite:///{run_dir / 'search.db'}",
            study_name=spec.key,
            logs_dir=run_dir / "logs" / "search" / spec.key,
            keep_models=rule.needs_inner_models,
        )
        edits, curves = dict(outcome.params), outcome.curves
        search_info = outcome.summary()
    search_seconds = time.perf_counter() - start
    selection = rule.select(runner, edits, curves)
    metrics, details = runner.final_fit(selection)
    return FoldResult(
        repeat=spec.repeat,
        fold=spec.fold,
        seed=spec.seed,
        metrics=metrics,
        epochs=selection.epochs if selection.epochs is not None else details["epochs"],
        selection={
            "rule": rule.name,
            "monitor": monitor,
            "evidence": selection.evidence,
            "curve": selection.curve,
            "inner_curves": selection.inner_curves,
            "checkpoint": details["checkpoint"],
        },
        seconds=time.perf_counter() - start,
        sizes=details["sizes"],
        params=edits,
        search={**search_info, "seconds": search_seconds} if search_info else {},
        test_ids=details["test_ids"],
    )


def _load_result(path: Path) -> FoldResult:
    return FoldResult(**json.loads(path.read_text()))


def _progress(done: int, total: int, result: FoldResult, results: Sequence[FoldResult]) -> str:
    metrics = " ".join(f"{m} {result.metrics[m]:.4f}" for m in TABLE_METRICS if m in result.metrics)
    monitor = result.selection.get("monitor")
    inner = result.selection.get("evidence", {}).get(monitor)
    inner_text = f" (inner {monitor} {inner:.4f})" if inner is not None else ""
    main_metric = next((m for m in TABLE_METRICS if m in result.metrics), None)
    running = ""
    if main_metric:
        mean, _ = mean_std([r.metrics[main_metric] for r in results if main_metric in r.metrics])
        running = f" | mean {main_metric} {mean:.4f} over {len(results)}"
    return (
        f"[{done}/{total}] repeat {result.repeat} fold {result.fold}: {metrics} | epochs "
        f"{result.epochs}{inner_text} | {result.seconds:.1f} s{running}"
    )


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
    """Evaluate the ``ahop fit`` arguments ``args`` under ``protocol``.

    Args:
        args: LightningCLI arguments without subcommand, e.g. ``["--config", "configs/mil.yaml",
            "--model.init_args.similarity", "dot"]``.
        protocol: see :class:`Protocol` (default: 1 repeat, the config's folds, ``inner_cv``).
        output_dir: parent of the new run folder.
        resume: continue this run folder, skipping its finished folds; ``args`` / ``protocol``
            may be empty / ``None`` (taken from its ``run.json``), else they must match it.
        threads: torch CPU threads (``None``: leave as is).
        storage: Optuna storage URL of the searches (default: SQLite file in the run folder).
        max_folds: run at most this many of the plan's folds in this call (smoke runs; a later
            ``resume`` continues).
        log: receives one progress line per fold (``None``: silent).

    Returns:
        an :class:`Evaluation` with every finished fold (also those of other workers).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    if max_folds is not None and max_folds < 1:
        raise ValueError(f"max_folds must be >= 1, got {max_folds}")
    with _quiet():
        if resume is not None:
            run_dir = Path(resume)
            args, protocol = _check_resume(run_dir, args, protocol)
        protocol = protocol or Protocol()
        base, plan, monitor = _prepare(args, protocol)
        if resume is None:
            run_dir = _new_run(args, protocol, plan, output_dir)
        results: dict[str, FoldResult] = {}
        for index, spec in enumerate(plan[:max_folds], start=1):
            path = run_dir / "folds" / spec.key / "result.json"
            if path.is_file():
                results[spec.key] = _load_result(path)
                if log:
                    log(
                        f"[{index}/{len(plan)}] repeat {spec.repeat} fold {spec.fold}: finished before, skipped"
                    )
                continue
            with claim(path.parent) as mine:
                if not mine:
                    if log:
                        log(
                            f"[{index}/{len(plan)}] repeat {spec.repeat} fold {spec.fold}: another worker has it"
                        )
                    continue
                result = run_fold(base, spec, protocol, run_dir, monitor, storage)
                _write_json(path, asdict(result))
            results[spec.key] = result
            if log:
                log(_progress(index, len(plan), result, list(results.values())))
            write_outputs(_evaluation(run_dir, plan, results, protocol, args))
        evaluation = _evaluation(run_dir, plan, results, protocol, args)
        write_outputs(evaluation)
    return evaluation


def _evaluation(
    run_dir: Path,
    plan: Sequence[FoldSpec],
    results: Mapping[str, FoldResult],
    protocol: Protocol,
    args: Sequence[str],
) -> Evaluation:
    """Every finished fold in plan order (including folds other workers finished meanwhile)."""
    folds = []
    for spec in plan:
        path = run_dir / "folds" / spec.key / "result.json"
        if spec.key in results:
            folds.append(results[spec.key])
        elif path.is_file():
            folds.append(_load_result(path))
    return Evaluation(run_dir, folds, protocol, list(args))


def _check_resume(
    run_dir: Path, args: Sequence[str], protocol: Protocol | None
) -> tuple[list[str], Protocol]:
    path = run_dir / "run.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume {run_dir}: no run.json there (not an ahop cv run folder)"
        )
    saved = json.loads(path.read_text())
    saved_protocol = Protocol(**saved["protocol"])
    if args and list(args) != saved["args"]:
        raise ValueError(
            f"--resume {run_dir}: it was started with other arguments {saved['args']}; "
            "resume without arguments, or start a new run"
        )
    if protocol is not None and protocol != saved_protocol:
        raise ValueError(
            f"--resume {run_dir}: it was started with another protocol {saved['protocol']}"
        )
    return list(saved["args"]), saved_protocol


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="ahop cv",
        description="Repeated cross-validation (optionally with an Optuna search) of an ahop "
        "config; other arguments are those of `ahop fit` (--config, --model.init_args.*, ...).",
        allow_abbrev=False,
    )
    parser.add_argument("--protocol", help="YAML with the protocol keys below (flags override)")
    parser.add_argument("--repeats", type=int, help="repeats of the cross-validation (default 1)")
    parser.add_argument("--folds", type=int, help="outer folds (default: data.init_args.num_folds)")
    parser.add_argument("--seed", type=int, help="base seed (default: data.init_args.seed)")
    parser.add_argument("--selection", help="inner_cv (default) | validation | fixed")
    parser.add_argument("--inner_folds", type=int, help="inner folds of the training data (5)")
    parser.add_argument("--monitor", help="validation metric that selects (default: the model's)")
    parser.add_argument("--mode", choices=["min", "max"], help="of the monitor (default: by name)")
    parser.add_argument("--search", help="search YAML (space, trials, ...; see ahop_cli.search)")
    parser.add_argument("--trials", type=int, help="trials per search (overrides the YAML)")
    parser.add_argument("--max_folds", type=int, help="run at most this many folds now")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite file in the run)")
    parser.add_argument("--output_dir", default="runs/cv", help="parent of the run folder")
    parser.add_argument("--resume", help="continue this run folder (skips finished folds)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the folds")
    return parser.parse_known_args(list(argv))


_PROTOCOL_FLAGS = ("repeats", "folds", "seed", "selection", "inner_folds", "monitor", "mode")


def protocol_from_options(options: argparse.Namespace) -> Protocol | None:
    """The protocol of the command line: the ``--protocol`` YAML, then the flags (``None`` for a
    ``--resume`` without protocol options: the run's own)."""
    given = [n for n in (*_PROTOCOL_FLAGS, "protocol", "search", "trials") if getattr(options, n)]
    if options.resume and not given:
        return None
    values: dict[str, Any] = {}
    if options.protocol:
        loaded = yaml.safe_load(Path(options.protocol).read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"--protocol {options.protocol}: expected a mapping of protocol keys")
        values.update(loaded)
    for name in _PROTOCOL_FLAGS:
        if getattr(options, name) is not None:
            values[name] = getattr(options, name)
    if options.search:
        from ahop_cli.search import load_search_file

        values["search"] = load_search_file(options.search)
    if options.trials is not None:
        if not values.get("search"):
            raise ValueError("--trials needs a search (--search FILE or search: in --protocol)")
        values["search"] = {**values["search"], "trials": options.trials}
    return Protocol.from_dict(values)


def main(argv: Sequence[str] | None = None) -> Evaluation:
    """``ahop cv``: run the evaluation of the command line and print its table."""
    options, rest = parse_args(sys.argv[1:] if argv is None else argv)
    protocol = protocol_from_options(options)
    if protocol is None and options.resume is None:
        protocol = Protocol()
    if options.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {options.workers}")
    if options.resume is None and not rest:
        raise ValueError("ahop cv needs a config (--config FILE) or --resume RUN_FOLDER")
    helpers: list[subprocess.Popen] = []
    run_dir = options.resume
    if options.workers > 1:
        if run_dir is None:  # create the run folder first, so the helpers can join it
            run_dir = str(start_run(rest, protocol, options.output_dir))
        command = [sys.executable, "-m", "ahop_cli.cli", "cv", "--resume", str(run_dir)]
        if options.max_folds is not None:
            command += ["--max_folds", str(options.max_folds)]
        if options.threads is not None:
            command += ["--threads", str(options.threads)]
        if options.storage:
            command += ["--storage", options.storage]
        helpers = [subprocess.Popen(command) for _ in range(options.workers - 1)]
    try:
        evaluation = evaluate(
            rest,
            protocol,
            output_dir=options.output_dir,
            resume=run_dir,
            threads=options.threads,
            storage=options.storage,
            max_folds=options.max_folds,
        )
    finally:
        for helper in helpers:
            helper.wait()
    if helpers:  # the helpers' folds too
        evaluation = evaluate([], None, resume=run_dir, max_folds=options.max_folds, log=None)
    print(evaluation.table())
    print(f"run folder: {evaluation.run_dir}")
    return evaluation


def start_run(args: Sequence[str], protocol: Protocol, output_dir: str | Path = "runs/cv") -> Path:
    """Create a run folder for ``args`` / ``protocol`` without running a fold; ``evaluate(...,
    resume=<it>)`` (or ``ahop cv --resume``, in any number of processes) then runs it."""
    with _quiet():
        plan = _prepare(args, protocol)[1]
    return _new_run(args, protocol, plan, output_dir)


def _new_run(
    args: Sequence[str], protocol: Protocol, plan: Sequence[FoldSpec], output_dir: str | Path
) -> Path:
    run_dir = new_run_dir(output_dir, _run_name(args))
    payload = {"args": list(args), "protocol": asdict(protocol), "folds": [s.key for s in plan]}
    _write_json(run_dir / "run.json", payload)
    return run_dir
