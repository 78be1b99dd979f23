"""The evaluation engine of ``ahop cv``: the fits of one outer fold (:class:`FoldRunner`) and the
loop over the folds of a protocol (:func:`evaluate`).

For every repeat ``r`` (seed = base seed + ``r``: folds, validation split, model initialisation)
and every outer fold ``k`` of the datamodule, the fold's model is chosen on its training data only
by the selection rule (:mod:`ahop_cli.selection`), optionally after a search on the same inner
folds (an :class:`InnerSearch` passed in by the caller, e.g. :class:`ahop_cli.search.OptunaSearch`:
the engine does not know how searches work), and tested once on fold ``k``. No test sample
reaches a fit (checked by id in every fit, :class:`LeakGuard`).
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from ahop_cli.checkpoints import read_checkpoint
from ahop_cli.config_edit import (
    get_option,
    has_option,
    instantiate,
    to_yaml,
    with_edits,
    without_callbacks,
)
from ahop_cli.cv.baselines import check_baselines, fold_baselines
from ahop_cli.cv.protocol import FoldResult, FoldSpec, Protocol, mode_of
from ahop_cli.cv.report import Evaluation, progress_line, write_outputs
from ahop_cli.cv.runs import (
    check_resume,
    claim,
    load_result,
    new_run,
    result_path,
    write_json,
)
from ahop_cli.lightning_cli import AhopCLI, build_cli, dump_config, main
from ahop_cli.selection import (
    CurveRecorder,
    InnerCurves,
    Selection,
    SelectionRule,
    StateHistory,
    get_rule,
)
from datamodules.cv import require_cross_validatable
from tasks.class_paths import import_class
from tasks.ensemble import EnsembleTask
from tasks.quiet import quiet_lightning

# --------------------------------------------------------------------------- datamodule adapters


def split_ids(datamodule: object, split: str) -> list[Any]:
    """Ids of the samples of ``split`` in a set-up datamodule
    (:meth:`datamodules.cv.CrossValidatable.split_ids`)."""
    return list(require_cross_validatable(datamodule).split_ids(split))


def fold_count(datamodule: object) -> int:
    """Outer folds of a datamodule (:attr:`datamodules.cv.CrossValidatable.fold_count`)."""
    return int(require_cross_validatable(datamodule).fold_count)


def validation_option(config: Mapping[str, Any]) -> str:
    """The dotted option of the validation share of ``config``'s datamodule (its
    :attr:`~datamodules.cv.CrossValidatable.validation_option`)."""
    name = getattr(import_class(get_option(config, "data.class_path")), "validation_option", None)
    if name is None or not has_option(config, f"data.init_args.{name}"):
        raise ValueError(
            f"{get_option(config, 'data.class_path')} has no validation-share option, so a final "
            "fit on the whole training data is not possible; use --selection validation"
        )
    return f"data.init_args.{name}"


# --------------------------------------------------------------------------- searches


class SearchResult(typing.Protocol):
    """What an :class:`InnerSearch` returns: the best parameters and their inner curves."""

    params: dict[str, Any]
    curves: InnerCurves

    def summary(self) -> dict[str, Any]:
        """JSON-able facts of the search (best value, trials, ...) for the fold's result."""
        ...


class InnerSearch(typing.Protocol):
    """A hyperparameter search on the inner folds of one outer fold, given to the engine by its
    caller (:class:`ahop_cli.search.OptunaSearch`)."""

    def check(self, values: Mapping[str, Any], base: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for a search mapping ``values`` that cannot run on config
        ``base`` (before any run folder or fit)."""
        ...

    def __call__(
        self,
        runner: FoldRunner,
        values: Mapping[str, Any],
        *,
        storage: str,
        study_name: str,
        logs_dir: Path | None,
        keep_models: bool,
        rule: SelectionRule,
    ) -> SearchResult:
        """Search on ``runner``'s inner folds (:meth:`FoldRunner.inner_curves` does the fits)."""
        ...


def require_search(search: InnerSearch | None) -> InnerSearch:
    """``search``, or a one-line error for a protocol with a search but no search to run it."""
    if search is None:
        raise ValueError(
            "this protocol has a search, but no search runner was given (search=...); "
            "ahop_cli.evaluate.evaluate and `ahop cv` pass the Optuna search"
        )
    return search


# --------------------------------------------------------------------------- fits of one fold


class LeakGuard(Callback):
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


QUIET = {
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
        self.mode = protocol.mode or mode_of(monitor)
        self._test_ids: set[Any] | None = None
        #: the final fit's set-up datamodule (after :meth:`final_fit`)
        self.final_datamodule: Any = None

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
        edits: dict[str, Any] = {validation_option(config): 0.0}
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
            **QUIET,
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
        edits: dict[str, Any] = {**QUIET, "trainer.default_root_dir": str(self.fold_dir)}
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
        guard = LeakGuard(self.test_ids())
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
        cli.trainer.callbacks.append(LeakGuard(self.test_ids()))
        trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
        ckpt_path = None
        if selection.ensemble:  # the inner models are the fold's model: nothing to train
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
                trainer.save_checkpoint(self.fold_dir / "final.ckpt", weights_only=False)
        tested = trainer.test(
            model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
        )
        test_ids = split_ids(datamodule, "test")
        if set(test_ids) != self.test_ids():
            raise RuntimeError("the final fit tested other samples than the fold's test split")
        sizes = {s: len(split_ids(datamodule, s)) for s in ("train", "val", "test")}
        self.final_datamodule = datamodule  # set up: the baselines read the same samples
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


# --------------------------------------------------------------------------- the fold loop


def plan_folds(datamodule: Any, protocol: Protocol, base_seed: int) -> list[FoldSpec]:
    """The (repeat, fold, seed) list of a protocol, repeat-major."""
    count = fold_count(datamodule)
    plan = [
        FoldSpec(repeat, fold, base_seed + repeat)
        for repeat in range(protocol.repeats)
        for fold in range(count)
    ]
    return plan


def probe(args: Sequence[str], protocol: Protocol) -> tuple[AhopCLI, dict[str, Any]]:
    """The CLI built from ``args`` (not run) and its complete config, with ``protocol.folds``
    applied."""
    cli = main(list(args), run=False, exit_on_error=False)
    base = dump_config(cli)
    if protocol.folds is not None:
        if not has_option(base, "data.init_args.num_folds"):
            raise ValueError(f"--folds: {type(cli.datamodule).__name__} has no num_folds option")
        base = with_edits(base, {"data.init_args.num_folds": protocol.folds})
        cli = build_cli(base)
    return cli, base


def apply_task_defaults(protocol: Protocol, model: Any) -> str:
    """Give a protocol without a selection rule the task's ``cv_selection`` (``inner_cv`` when the
    task names none); return the monitored metric: the protocol's, else the task's ``monitor``."""
    if protocol.selection is None:  # recorded in run.json as if chosen
        protocol.selection = str(getattr(model, "cv_selection", None) or "inner_cv")
        get_rule(protocol.selection)
    return protocol.monitor or getattr(model, "monitor", None) or "val/loss"


def prepare(
    args: Sequence[str], protocol: Protocol, search: InnerSearch | None = None
) -> tuple[dict[str, Any], list[FoldSpec], str]:
    """The base config, the fold plan and the monitored metric of ``args`` under ``protocol``
    (a protocol with a search is checked by ``search`` here, before any run folder or fit; a
    protocol without a selection rule gets the task's ``cv_selection``)."""
    cli, base = probe(args, protocol)
    monitor = apply_task_defaults(protocol, cli.model)
    if protocol.search:
        require_search(search).check(protocol.search, base)
    check_baselines(protocol.baselines, cli.datamodule)
    base_seed = protocol.seed
    if base_seed is None:
        fallback = get_option(base, "seed_everything", 0)
        base_seed = int(get_option(base, "data.init_args.seed", fallback) or 0)
    return base, plan_folds(cli.datamodule, protocol, base_seed), monitor


def run_fold(
    base: Mapping[str, Any],
    spec: FoldSpec,
    protocol: Protocol,
    run_dir: Path,
    monitor: str,
    storage: str | None = None,
    search: InnerSearch | None = None,
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
        outcome = require_search(search)(
            runner,
            protocol.search,
            storage=storage or f"sqlite:///{run_dir / 'search.db'}",
            study_name=spec.key,
            logs_dir=run_dir / "logs" / "search" / spec.key,
            keep_models=rule.needs_inner_models,
            rule=rule,
        )
        edits, curves = dict(outcome.params), outcome.curves
        search_info = outcome.summary()
    search_seconds = time.perf_counter() - start
    selection = rule.select(runner, edits, curves)
    metrics, details = runner.final_fit(selection)
    seconds = time.perf_counter() - start
    baselines = {}
    if protocol.baselines:  # on the final fit's training samples, the fold's test samples
        baselines = fold_baselines(
            protocol.baselines, runner.final_datamodule, spec.seed, runner.test_ids(), split_ids
        )
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
        seconds=seconds,
        sizes=details["sizes"],
        params=edits,
        search={**search_info, "seconds": search_seconds} if search_info else {},
        test_ids=details["test_ids"],
        baselines=baselines,
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
    search: InnerSearch | None = None,
) -> Evaluation:
    """Evaluate the ``ahop fit`` arguments ``args`` under ``protocol``.

    Args:
        args: LightningCLI arguments without subcommand, e.g. ``["--config", "configs/mil.yaml",
            "--model.init_args.network.similarity", "dot"]``.
        protocol: see :class:`Protocol` (default: 1 repeat, the config's folds, ``inner_cv``).
        output_dir: parent of the new run folder.
        resume: continue this run folder, skipping its finished folds; ``args`` / ``protocol``
            may be empty / ``None`` (taken from its ``run.json``), else they must match it.
        threads: torch CPU threads (``None``: leave as is).
        storage: Optuna storage URL of the searches (default: SQLite file in the run folder).
        max_folds: run at most this many of the plan's folds in this call (smoke runs; a later
            ``resume`` continues).
        log: receives one progress line per fold (``None``: silent).
        search: runs the protocol's search in each outer fold (needed when ``protocol.search``
            is set; :mod:`ahop_cli.evaluate` passes :class:`ahop_cli.search.OptunaSearch`).

    Returns:
        an :class:`Evaluation` with every finished fold (also those of other workers).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    if max_folds is not None and max_folds < 1:
        raise ValueError(f"max_folds must be >= 1, got {max_folds}")
    with quiet_lightning():
        if resume is not None:
            run_dir = Path(resume)
            args, protocol = check_resume(run_dir, args, protocol)
        protocol = protocol or Protocol()
        base, plan, monitor = prepare(args, protocol, search)
        if resume is None:
            run_dir = new_run(args, protocol, plan, output_dir)
        results: dict[str, FoldResult] = {}
        for index, spec in enumerate(plan[:max_folds], start=1):
            path = result_path(run_dir, spec)
            if path.is_file():
                results[spec.key] = load_result(path)
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
                result = run_fold(base, spec, protocol, run_dir, monitor, storage, search)
                write_json(path, asdict(result))
            results[spec.key] = result
            if log:
                log(progress_line(index, len(plan), result, list(results.values())))
            write_outputs(collect(run_dir, plan, results, protocol, args))
        evaluation = collect(run_dir, plan, results, protocol, args)
        write_outputs(evaluation)
    return evaluation


def collect(
    run_dir: Path,
    plan: Sequence[FoldSpec],
    results: Mapping[str, FoldResult],
    protocol: Protocol,
    args: Sequence[str],
) -> Evaluation:
    """Every finished fold in plan order (including folds other workers finished meanwhile)."""
    folds = []
    for spec in plan:
        path = result_path(run_dir, spec)
        if spec.key in results:
            folds.append(results[spec.key])
        elif path.is_file():
            folds.append(load_result(path))
    return Evaluation(run_dir, folds, protocol, list(args))


def start_run(
    args: Sequence[str],
    protocol: Protocol,
    output_dir: str | Path = "runs/cv",
    search: InnerSearch | None = None,
) -> Path:
    """Create a run folder for ``args`` / ``protocol`` without running a fold; ``evaluate(...,
    resume=<it>)`` (or ``ahop cv --resume``, in any number of processes) then runs it."""
    with quiet_lightning():
        plan = prepare(args, protocol, search)[1]
    return new_run(args, protocol, plan, output_dir)
