"""Hyperparameter search with Optuna on the inner folds of a training set (never a test fold).

    ahop search --config configs/mil.yaml --search configs/search/mil.yaml
    ahop cv --config configs/mil.yaml --search configs/search/mil.yaml  # nested, per fold

**Search YAML** (``--search FILE``, or ``search:`` in an ``ahop cv --protocol`` file)::

    trials: 16                  # trials per study (finished + pruned, over all workers)
    sampler: tpe                # tpe | random  (seeded with `seed`)
    pruner: {name: median, n_startup_trials: 4, n_warmup_steps: 5}   # median | none
    n_jobs: 1                   # trials in parallel threads of this process
    seed: 0
    space:                      # any option of the config, by its dotted name
      model.init_args.network.dropout: {low: 0.0, high: 0.5}            # float
      model.init_args.optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      model.init_args.network.num_embedding_layers: {low: 1, high: 3}   # int (both bounds int)
      model.init_args.network.similarity: {choices: [dot, adaptive]}    # categorical
      trainer.max_epochs: {low: 20, high: 80, step: 20}

A trial trains the config with the sampled values on every inner fold of the training data
(``inner_folds``), records the validation curves and scores the best epoch of their mean
(:class:`ahop_cli.selection.InnerCurves`): the objective is that inner-validation value, and the
best trial's epoch count is the final model's schedule. Under the ``fixed`` rule (MIL's default)
the final model trains the whole schedule, so a trial is scored at its last epoch instead
(:meth:`ahop_cli.selection.SelectionRule.trial_score`); search ``trainer.max_epochs`` to choose
the length. Bad trials are pruned per epoch by the
pruner (a small Lightning callback, :class:`OptunaPruning`). Each trial's parameters and scores go
to TensorBoard (``<run>/logs/search/.../trial_<n>``: hparams + mean inner curves).

**Storage**: an SQLite file in the run folder by default; ``--storage`` takes any Optuna URL
(``sqlite:///path.db``, ``postgresql://...``) or ``journal:<file>`` (Optuna's journal file, the
safest choice for several processes on one machine). Workers that share a storage and a study
name share the trials, e.g. two local processes::

    ahop search --config configs/mil.yaml --search configs/search/mil.yaml \\
        --storage journal:runs/elephant.journal --study_name elephant &
    ahop search --config configs/mil.yaml --search configs/search/mil.yaml \\
        --storage journal:runs/elephant.journal --study_name elephant

Both stop when the study holds ``trials`` finished trials; each writes ``best_config.yaml``,
which ``ahop fit --config best_config.yaml`` runs as is (the training data of the config's fold,
all of it, for the chosen number of epochs).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from lightning import Callback, LightningModule, Trainer
from optuna.storages.journal import JournalFileBackend
from torch.utils.tensorboard import SummaryWriter

from ahop_cli.config_edit import get_option, has_option, to_yaml, unknown_option_message
from ahop_cli.cv.engine import FoldRunner, InnerHooks, apply_task_defaults, probe
from ahop_cli.cv.protocol import FoldSpec, Protocol
from ahop_cli.cv.runs import new_run_dir, run_name
from ahop_cli.selection import InnerCurves, SelectionRule, get_rule
from tasks.quiet import quiet_lightning

#: step offset between inner folds in the pruner's reports (step = fold * stride + epoch)
STEP_STRIDE = 10_000


# --------------------------------------------------------------------------- search space


@dataclass
class ParamSpec:
    """One searched option.

    Attributes:
        name: dotted config option, e.g. ``model.init_args.dropout``.
        kind: ``float`` | ``int`` | ``categorical``.
        low, high: bounds (inclusive) of numeric options; ``log``: sample on a log scale;
            ``step``: grid step; ``choices``: the values of a categorical option.
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    @classmethod
    def from_dict(cls, name: str, spec: Any) -> ParamSpec:
        """Parse and check one ``space`` entry (one-line errors naming the option)."""
        where = f"search space {name!r}"
        if isinstance(spec, list):
            spec = {"choices": spec}
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: expected {{low, high}} or {{choices: [...]}}, got {spec!r}")
        unknown = sorted(set(spec) - {"low", "high", "log", "step", "choices", "type"})
        if unknown:
            raise ValueError(
                f"{where}: unknown keys {unknown}; allowed: low, high, log, step, choices, type"
            )
        kind = spec.get("type")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{where}: choices must be a non-empty list")
            if kind not in (None, "categorical"):
                raise ValueError(f"{where}: choices go with type categorical, not {kind!r}")
            return cls(name, "categorical", choices=list(choices))
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{where}: needs low and high (or choices)")
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ValueError(f"{where}: low and high must be numbers, got {low!r}, {high!r}")
        if kind is None:
            kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        if kind not in ("int", "float"):
            raise ValueError(f"{where}: type must be int, float or categorical, got {kind!r}")
        if not low < high:
            raise ValueError(f"{where}: empty range, low={low} must be < high={high}")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise ValueError(f"{where}: a log range needs low > 0, got {low}")
        step = spec.get("step")
        if step is not None and (not isinstance(step, (int, float)) or step <= 0 or log):
            raise ValueError(f"{where}: step must be a positive number and cannot go with log")
        return cls(name, kind, low=low, high=high, log=log, step=step)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def _median(options: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(options.get("n_startup_trials", 4)),
        n_warmup_steps=int(options.get("n_warmup_steps", 5)),
    )


#: pruners by name (``pruner: {name: ..., <options>}`` or just the name)
PRUNERS: dict[str, Callable[[Mapping[str, Any]], optuna.pruners.BasePruner]] = {
    "median": _median,
    "none": lambda options: optuna.pruners.NopPruner(),
}
#: samplers by name, built with the search's seed
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


@dataclass
class SearchConfig:
    """A parsed search YAML (see the module doc)."""

    space: dict[str, ParamSpec]
    trials: int = 16
    sampler: str = "tpe"
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    n_jobs: int = 1
    seed: int = 0
    timeout: float | None = None

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> SearchConfig:
        """Parse and check a search mapping; with ``config`` (a dumped LightningCLI config) every
        searched option must exist in it."""
        allowed = {"space", "trials", "sampler", "pruner", "n_jobs", "seed", "timeout"}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"search: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        space_values = values.get("space")
        if not isinstance(space_values, Mapping) or not space_values:
            raise ValueError("search: 'space' must map at least one config option to its range")
        space = {name: ParamSpec.from_dict(name, spec) for name, spec in space_values.items()}
        if config is not None:
            for name in space:
                if not has_option(config, name) or isinstance(get_option(config, name), Mapping):
                    raise ValueError(f"search space: {unknown_option_message(config, name)}")
        trials = values.get("trials", 16)
        if not isinstance(trials, int) or trials < 1:
            raise ValueError(f"search: trials must be an integer >= 1, got {trials!r}")
        sampler = values.get("sampler", "tpe")
        if sampler not in SAMPLERS:
            raise ValueError(f"search: unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
        pruner = values.get("pruner", "median")
        pruner = {"name": pruner} if isinstance(pruner, str) else dict(pruner or {"name": "none"})
        if pruner.get("name") not in PRUNERS:
            raise ValueError(
                f"search: unknown pruner {pruner.get('name')!r}; allowed: {', '.join(PRUNERS)}"
            )
        n_jobs = values.get("n_jobs", 1)
        if not isinstance(n_jobs, int) or n_jobs < 1:
            raise ValueError(f"search: n_jobs must be an integer >= 1, got {n_jobs!r}")
        return cls(
            space=space,
            trials=trials,
            sampler=sampler,
            pruner=pruner,
            n_jobs=n_jobs,
            seed=int(values.get("seed", 0)),
            timeout=values.get("timeout"),
        )

    def make_pruner(self) -> optuna.pruners.BasePruner:
        options = {k: v for k, v in self.pruner.items() if k != "name"}
        return PRUNERS[self.pruner["name"]](options)


def load_search_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a search YAML (checked later against the config)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search file {path} not found")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, Mapping):
        raise ValueError(f"search file {path}: expected a mapping with 'space' (and trials, ...)")
    return dict(values)


def make_storage(url: str) -> optuna.storages.BaseStorage | str:
    """An Optuna storage from a URL; ``journal:<file>`` is Optuna's journal file storage."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # several local processes on one SQLite file wait for its lock instead of failing
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return url


# --------------------------------------------------------------------------- pruning


class OptunaPruning(Callback):
    """Reports the monitored validation value after every epoch to an Optuna trial and stops the
    fit when the pruner says so (the caller raises ``TrialPruned`` afterwards).

    optuna-integration's ``PyTorchLightningPruningCallback`` reports ``step = epoch``; a trial here
    trains several inner folds, whose epochs would repeat the steps (Optuna ignores a repeated
    step), so this callback adds ``step_offset`` (``inner fold * STEP_STRIDE``).
    """

    def __init__(self, trial: optuna.Trial, monitor: str, step_offset: int = 0) -> None:
        self.trial, self.monitor, self.step_offset = trial, monitor, step_offset
        self.pruned = False

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return
        self.trial.report(value, self.step_offset + trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


# --------------------------------------------------------------------------- running a study


@dataclass
class SearchOutcome:
    """The best trial of a study."""

    params: dict[str, Any]
    value: float
    epochs: int
    curves: InnerCurves
    trials: dict[str, int]
    seconds: float
    study_name: str

    def summary(self) -> dict[str, Any]:
        return {
            "best_value": self.value,
            "best_epochs": self.epochs,
            "best_params": self.params,
            "trials": self.trials,
            "study": self.study_name,
        }


def _log_trial(
    logs_dir: Path | None,
    trial: optuna.Trial | optuna.trial.FrozenTrial,
    params: Mapping[str, Any],
    scores: Mapping[str, float],
    curves: InnerCurves,
    state: str,
) -> None:
    if logs_dir is None:
        return
    writer = SummaryWriter(str(logs_dir / f"trial_{trial.number:03d}"))
    try:
        hparams = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()
        }
        hparams["state"] = state
        metrics = {f"inner/{k}": v for k, v in scores.items() if math.isfinite(v)}
        for name in curves.metrics():
            for epoch, value in enumerate(curves.mean(name)):
                if math.isfinite(value):
                    writer.add_scalar(f"inner_mean/{name}", value, epoch)
        writer.add_hparams(hparams, metrics or {"inner/none": math.nan}, run_name=".")
    finally:
        writer.close()


def run_search(
    runner: FoldRunner,
    config: SearchConfig,
    storage: str,
    study_name: str,
    logs_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    keep_models: bool = False,
    rule: SelectionRule | None = None,
) -> SearchOutcome:
    """Run (or continue) the study ``study_name`` on the inner folds of ``runner``'s fold.

    Args:
        runner: a :class:`ahop_cli.cv.engine.FoldRunner` (its ``inner_curves`` does the fits).
        config: the search.
        storage: Optuna storage URL (see :func:`make_storage`).
        study_name: the study; an existing one is continued up to ``config.trials`` trials.
        logs_dir: TensorBoard folder of the trials (``None``: none).
        log: receives one line per finished trial.
        keep_models: keep the inner models of this process's best trial in memory (for a rule
            that uses them; trials of other workers come without and are refitted by the rule).
        rule: the selection rule that follows; its ``trial_score`` scores a trial (``None``:
            ``inner_cv``'s best epoch; ``fixed`` scores the last epoch, the one it deploys).
    """
    start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if runner.mode == "min" else "maximize"
    study = optuna.create_study(
        storage=make_storage(storage),
        study_name=study_name,
        direction=direction,
        sampler=SAMPLERS[config.sampler](config.seed),
        pruner=config.make_pruner(),
        load_if_exists=True,
    )
    monitor = runner.monitor
    rule = rule or get_rule("inner_cv")
    kept: dict[str, Any] = {}  # best trial of this process: number, value, curves with models
    better = (lambda a, b: a < b) if direction == "minimize" else (lambda a, b: a > b)

    def objective(trial: optuna.Trial) -> float:
        params = {name: spec.suggest(trial) for name, spec in config.space.items()}
        pruners: list[OptunaPruning] = []

        def callbacks(inner_fold: int) -> list[Callback]:
            pruners.append(OptunaPruning(trial, monitor, inner_fold * STEP_STRIDE))
            return [pruners[-1]]

        def after_fold(inner_fold: int, curves: InnerCurves) -> None:
            if pruners and pruners[-1].pruned:
                _log_trial(logs_dir, trial, params, {}, curves, "pruned")
                if log:
                    log(f"  trial {trial.number}: pruned in inner fold {inner_fold} {params}")
                raise optuna.TrialPruned(f"pruned in inner fold {inner_fold}")

        curves = runner.inner_curves(
            params, InnerHooks(callbacks, after_fold), keep_states=keep_models
        )
        epochs, evidence = rule.trial_score(curves, monitor, runner.mode)
        if keep_models and ("value" not in kept or better(evidence[monitor], kept["value"])):
            kept.update(number=trial.number, value=evidence[monitor], curves=curves)
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("evidence", evidence)
        trial.set_user_attr("curves", curves.folds)
        _log_trial(logs_dir, trial, params, evidence, curves, "complete")
        if log:
            log(
                f"  trial {trial.number}: {monitor} {evidence[monitor]:.4f} at {epochs} epochs {params}"
            )
        return evidence[monitor]

    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished_states))
    if done < config.trials:
        study.optimize(
            objective,
            n_trials=config.trials - done,
            timeout=config.timeout,
            n_jobs=config.n_jobs,
            catch=(ValueError, FloatingPointError),  # a bad combination fails its trial only
            callbacks=[optuna.study.MaxTrialsCallback(config.trials, states=finished_states)],
        )
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {s.name.lower(): states.count(s) for s in set(states)}
    try:
        best = study.best_trial
    except ValueError:
        raise ValueError(
            f"search {study_name}: no trial finished ({counts}); widen the space or check the "
            "failed trials' errors (run with AHOP_DEBUG=1)"
        ) from None
    if kept.get("number") == best.number:
        curves = kept["curves"]
    else:
        curves = InnerCurves(folds=best.user_attrs["curves"])
    return SearchOutcome(
        params=dict(best.params),
        value=float(best.value),
        epochs=int(best.user_attrs["epochs"]),
        curves=curves,
        trials=counts,
        seconds=time.perf_counter() - start,
        study_name=study_name,
    )


class OptunaSearch:
    """The search of ``ahop cv --search`` as the engine calls it (an
    :class:`ahop_cli.cv.engine.InnerSearch`): a search mapping -> :func:`run_search`."""

    def check(self, values: Mapping[str, Any], base: Mapping[str, Any]) -> None:
        """Parse ``values`` against config ``base`` (one-line errors for a bad space)."""
        SearchConfig.from_dict(values, base)

    def __call__(
        self,
        runner: FoldRunner,
        values: Mapping[str, Any],
        *,
        storage: str,
        study_name: str,
        logs_dir: Path | None,
        keep_models: bool,
        rule: SelectionRule | None = None,
    ) -> SearchOutcome:
        """Run the study ``study_name`` of ``values`` on ``runner``'s inner folds."""
        return run_search(
            runner,
            SearchConfig.from_dict(values, runner.base),
            storage=storage,
            study_name=study_name,
            logs_dir=logs_dir,
            keep_models=keep_models,
            rule=rule,
        )


# --------------------------------------------------------------------------- command line

#: the rules whose decision is one config that ``ahop fit`` runs (not the inner-model ensemble)
CONFIG_RULES = ("inner_cv", "fixed", "validation")
#: what the best config trains, by ``Selection.whole_training_data``
WHAT_FIT_TRAINS = {
    True: "trains on all training data of the fold",
    False: "trains on the fold's training split, early-stopped on its validation split",
}


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The ``ahop search`` options of ``argv`` and the remaining (``ahop fit``) arguments."""
    parser = argparse.ArgumentParser(
        prog="ahop search",
        description="Optuna search on the inner folds of a config's training data; writes "
        "best_config.yaml for `ahop fit`. Other arguments are those of `ahop fit`.",
        allow_abbrev=False,
    )
    parser.add_argument("--search", required=True, help="search YAML (space, trials, ...)")
    parser.add_argument("--trials", type=int, help="trials of the study (overrides the YAML)")
    parser.add_argument(
        "--storage", help="Optuna storage URL or journal:<file> (default: sqlite in the run folder)"
    )
    parser.add_argument(
        "--study_name", help="study to create or join (default: the run folder's name)"
    )
    parser.add_argument(
        "--inner_folds", type=int, default=5, help="inner folds of the training data"
    )
    parser.add_argument(
        "--selection",
        choices=CONFIG_RULES,
        help="rule of the final config: " + " | ".join(CONFIG_RULES) + " (default: the task's: "
        "fixed for MIL, validation for tabular, else inner_cv)",
    )
    parser.add_argument("--monitor", help="validation metric (default: the model's monitor)")
    parser.add_argument("--mode", choices=["min", "max"])
    parser.add_argument("--output_dir", default="runs/search", help="parent of the run folder")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    return parser.parse_known_args(list(argv))


def main(argv: Sequence[str] | None = None) -> Path:
    """``ahop search``: run the study, write ``best_config.yaml``; returns its path."""
    options, rest = parse_args(sys.argv[1:] if argv is None else argv)
    if not rest:
        raise ValueError("ahop search needs a config (--config FILE)")
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    values = load_search_file(options.search)
    if options.trials is not None:
        values["trials"] = options.trials
    protocol = Protocol(
        selection=options.selection,
        inner_folds=options.inner_folds,
        monitor=options.monitor,
        mode=options.mode,
        search=values,
    )
    with quiet_lightning():
        cli, base = probe(rest, protocol)
        monitor = apply_task_defaults(protocol, cli.model)
        if protocol.selection not in CONFIG_RULES:
            raise ValueError(
                f"the task's selection rule {protocol.selection!r} cannot follow a search; "
                "pass --selection " + " or ".join(CONFIG_RULES)
            )
        config = SearchConfig.from_dict(values, base)
        fold = int(get_option(base, "data.init_args.fold", 0) or 0)
        seed = int(
            get_option(base, "data.init_args.seed", get_option(base, "seed_everything", 0)) or 0
        )
        run_dir = new_run_dir(options.output_dir, run_name(rest))
        runner = FoldRunner(
            base, FoldSpec(0, fold, seed), protocol, run_dir, run_dir / "logs", monitor
        )
        study_name = options.study_name or run_dir.name
        rule = get_rule(protocol.selection)
        outcome = run_search(
            runner,
            config,
            storage=options.storage or f"sqlite:///{run_dir / 'search.db'}",
            study_name=study_name,
            logs_dir=run_dir / "logs" / "search",
            log=print,
            rule=rule,
        )
        selection = rule.select(runner, outcome.params, outcome.curves)
        best = run_dir / "best_config.yaml"
        best.write_text(
            f"# best trial of study {study_name!r}: inner-validation {monitor} {outcome.value:.4f} "
            f"({options.inner_folds} inner folds), {outcome.epochs} epochs; trials {outcome.trials}\n"
            f"# params: {outcome.params}\n"
            f"# {WHAT_FIT_TRAINS[selection.whole_training_data]}; "
            "`ahop fit --config <this file>` runs it\n" + to_yaml(runner.final_config(selection))
        )
    print(f"best {monitor} {outcome.value:.4f} at {outcome.epochs} epochs: {outcome.params}")
    print(f"best config: {best}  (ahop fit --config {best})")
    return best
