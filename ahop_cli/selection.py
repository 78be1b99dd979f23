"""Model-selection rules of ``ahop cv`` / ``ahop search``: how a fold's final model is chosen using
its training data only (registry :data:`SELECTION_RULES`, chosen by name in the protocol).

- ``inner_cv`` (the default of every task but MIL): train on every inner fold of the training
  data (``inner_folds``, e.g. 5) for ``max_epochs``, record the validation metrics after every
  epoch, average the curves over the inner folds and take the number of epochs where the mean
  monitored metric is best; then retrain on the **whole** training data for that many epochs and
  test those weights. Every training sample is a validation sample once, so the choice rests on
  all of them (~180 bags on the MIL sets) instead of a 10 % split (~18 bags, where early stopping
  picked epoch 0-1 in most folds), and the final model sees all training data.
- ``inner_cv_ensemble``: the same inner folds and epoch choice, but the fold's model is the mean
  prediction of the inner models at that epoch (no retrain; a k-fold bagging ensemble).
- ``validation``: train once on the datamodule's own validation split with the config's callbacks
  (early stopping, best checkpoint) and test the best checkpoint; for large data sets.
- ``fixed`` (the MIL default): train on the whole training data for ``max_epochs``, test the
  last weights (a fixed schedule, e.g. one chosen by a search, or with weight averaging from the
  config). For MIL, held-out inner folds of four bag sets scored it above ``inner_cv``.

Rules only decide *what* to train; :mod:`ahop_cli.evaluate` builds and runs the fits (so the CLI,
the search and the benchmarks share one implementation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from lightning import Callback, LightningModule, Trainer


class CurveRecorder(Callback):
    """Records every scalar ``val/*`` metric after each validation epoch (``epochs[i]`` = after
    epoch ``i``); sanity checks are skipped. ``*_best`` trackers are left out.

    ``stage="train"`` records the ``train/*`` epoch means instead, at the end of each training
    epoch (``train/loss_epoch`` as ``train/loss``; per-step values are left out).
    """

    def __init__(self, stage: str = "val") -> None:
        if stage not in ("train", "val"):
            raise ValueError(f"stage must be train or val, got {stage!r}")
        self.stage = stage
        self.epochs: list[dict[str, float]] = []

    def _record(self, trainer: Trainer) -> None:
        prefix = f"{self.stage}/"
        self.epochs.append(
            {
                name.removesuffix("_epoch"): float(value)
                for name, value in trainer.callback_metrics.items()
                if name.startswith(prefix)
                and not name.endswith(("_best", "_step"))
                and value.numel() == 1
            }
        )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # on_validation_end, not *_epoch_end: callback_metrics hold the epoch's values only here
        if self.stage == "val" and not trainer.sanity_checking:
            self._record(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.stage == "train":
            self._record(trainer)


class StateHistory(Callback):
    """Keeps a CPU copy of the module's weights after each validation epoch (``states[i]`` =
    after epoch ``i``), so a rule can take an inner model at the epoch it chooses later."""

    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.states.append(
            {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}
        )


@dataclass
class InnerCurves:
    """Validation curves of the inner folds of one training set.

    Attributes:
        folds: per inner fold, per epoch: ``{metric: value}`` (from :class:`CurveRecorder`).
        models: see below (not saved to JSON).
    """

    folds: list[list[dict[str, float]]] = field(default_factory=list)
    #: per inner fold (only when asked to keep them): the trained module and its weights per epoch
    models: list[tuple[LightningModule, list[dict[str, Any]]]] = field(
        default_factory=list, repr=False
    )

    def mean(self, metric: str) -> np.ndarray:
        """(E,) mean over inner folds of ``metric`` after each epoch, E = the shortest curve
        (a fold stopped early, e.g. by pruning, shortens it)."""
        length = min((len(c) for c in self.folds), default=0)
        if length == 0:
            return np.zeros(0)
        values = np.array(
            [[epoch.get(metric, math.nan) for epoch in curve[:length]] for curve in self.folds]
        )
        return values.mean(axis=0)

    def metrics(self) -> list[str]:
        return sorted({name for curve in self.folds for epoch in curve for name in epoch})

    def monitored(self, monitor: str) -> np.ndarray:
        """:meth:`mean` of ``monitor``; a one-line error naming the logged metrics when it was
        never recorded (a misspelt monitor would otherwise score every trial NaN)."""
        curve = self.mean(monitor)
        if len(curve) == 0 or np.isnan(curve).all():
            available = ", ".join(self.metrics()) or "none"
            raise ValueError(
                f"no validation values of {monitor!r} were recorded (metrics logged: "
                f"{available}); set the protocol's monitor to one of them"
            )
        return curve

    def choose(self, monitor: str, mode: str) -> tuple[int, dict[str, float]]:
        """Number of epochs (>= 1) with the best mean ``monitor``, and the mean of every metric
        there. Ties go to the earliest epoch."""
        curve = self.monitored(monitor)
        best = int(np.nanargmin(curve) if mode == "min" else np.nanargmax(curve))
        return best + 1, self.at_epoch(best + 1)

    def at_epoch(self, epochs: int) -> dict[str, float]:
        """The mean of every metric after ``epochs`` epochs (1-based)."""
        return {name: float(self.mean(name)[epochs - 1]) for name in self.metrics()}

    def last(self, monitor: str) -> tuple[int, dict[str, float]]:
        """Number of epochs of the (shortest) curve and the mean of every metric there."""
        epochs = len(self.monitored(monitor))
        return epochs, self.at_epoch(epochs)


class Fitter(Protocol):
    """What a rule needs from the engine (implemented by :class:`ahop_cli.evaluate.FoldRunner`)."""

    inner_folds: int
    monitor: str
    mode: str

    def inner_curves(
        self, edits: dict[str, Any], hooks: Any = None, keep_states: bool = False
    ) -> InnerCurves:
        """Train on every inner fold with the config edits ``edits``; return the curves (and,
        with ``keep_states``, the inner models and their weights per epoch)."""
        ...


@dataclass
class Selection:
    """A rule's decision for a fold's final fit.

    Attributes:
        whole_training_data: train the final model on all training samples (no validation
            split) instead of the datamodule's own train / val split.
        edits: config edits of the final fit (dotted option -> value), e.g.
            ``{"trainer.max_epochs": 23}``.
        test_checkpoint: ``"best"`` (the config's best checkpoint) or ``"last"`` (final weights).
        evidence: inner-validation numbers behind the choice (mean metrics at the chosen epoch).
        epochs: the chosen number of epochs (``None``: decided by the fit, e.g. early stopping).
        curve: the mean inner-validation curve of the monitored metric (one value per epoch).
        inner_curves: every inner fold's validation metrics per epoch.
        ensemble: models whose mean prediction is tested instead of a final fit (their weights
            at the chosen epoch); empty for the single-model rules.
    """

    whole_training_data: bool
    edits: dict[str, Any] = field(default_factory=dict)
    test_checkpoint: str = "last"
    evidence: dict[str, float] = field(default_factory=dict)
    epochs: int | None = None
    curve: list[float] = field(default_factory=list)
    inner_curves: list[list[dict[str, float]]] = field(default_factory=list)
    ensemble: list[LightningModule] = field(default_factory=list, repr=False)


class SelectionRule:
    """Base of the rules: :meth:`select` returns the :class:`Selection` of one fold."""

    name: str = ""
    #: whether the rule trains on inner folds (needs the datamodule's ``inner_folds`` option)
    needs_inner_folds: bool = False
    #: whether the rule uses the inner models themselves (a search then keeps the best trial's)
    needs_inner_models: bool = False

    def trial_score(self, curves: InnerCurves, monitor: str, mode: str) -> tuple[int, dict]:
        """How a search scores a trial's inner curves: (epochs, mean metrics there). The epoch
        rules take the best epoch, since the final model trains that many."""
        return curves.choose(monitor, mode)

    def select(
        self, fitter: Fitter, edits: dict[str, Any], curves: InnerCurves | None = None
    ) -> Selection:
        """Decide the final fit of a fold trained with config ``edits`` (e.g. a search's best
        parameters); ``curves``: inner curves already measured for these edits (by a search)."""
        raise NotImplementedError


def _epochs_selection(
    fitter: Fitter,
    edits: dict[str, Any],
    curves: InnerCurves,
    epochs: int,
    evidence: dict[str, float],
    ensemble: list[LightningModule] | None = None,
) -> Selection:
    """The selection of the inner-CV rules: ``epochs`` on all training data, with the curves."""
    return Selection(
        whole_training_data=True,
        edits={**edits, "trainer.max_epochs": epochs},
        evidence=evidence,
        epochs=epochs,
        curve=[float(v) for v in curves.mean(fitter.monitor)],
        inner_curves=curves.folds,
        ensemble=ensemble or [],
    )


class InnerCVEpochs(SelectionRule):
    name = "inner_cv"
    needs_inner_folds = True

    def select(
        self, fitter: Fitter, edits: dict[str, Any], curves: InnerCurves | None = None
    ) -> Selection:
        curves = curves if curves is not None else fitter.inner_curves(edits)
        epochs, evidence = curves.choose(fitter.monitor, fitter.mode)
        return _epochs_selection(fitter, edits, curves, epochs, evidence)


class InnerCVEnsemble(SelectionRule):
    """``inner_cv``'s epoch choice, but the fold's model is the mean of the inner models at that
    epoch (a cross-validation bagging ensemble, as in AutoGluon): no final retrain, and every
    member saw (k-1)/k of the training data."""

    name = "inner_cv_ensemble"
    needs_inner_folds = True
    needs_inner_models = True

    def select(
        self, fitter: Fitter, edits: dict[str, Any], curves: InnerCurves | None = None
    ) -> Selection:
        if curves is None or not curves.models:  # a search's curves come without the models
            curves = fitter.inner_curves(edits, keep_states=True)
        epochs, evidence = curves.choose(fitter.monitor, fitter.mode)
        members = []
        for model, states in curves.models:
            model.load_state_dict(states[epochs - 1])
            members.append(model)
        return _epochs_selection(fitter, edits, curves, epochs, evidence, ensemble=members)


class ValidationCheckpoint(SelectionRule):
    name = "validation"

    def select(
        self, fitter: Fitter, edits: dict[str, Any], curves: InnerCurves | None = None
    ) -> Selection:
        return Selection(whole_training_data=False, edits=dict(edits), test_checkpoint="best")


class FixedSchedule(SelectionRule):
    name = "fixed"

    def trial_score(self, curves: InnerCurves, monitor: str, mode: str) -> tuple[int, dict]:
        """The last epoch: the final model trains the config's whole schedule, so a search
        scores what it will deploy (search ``trainer.max_epochs`` to choose the length)."""
        return curves.last(monitor)

    def select(
        self, fitter: Fitter, edits: dict[str, Any], curves: InnerCurves | None = None
    ) -> Selection:
        return Selection(whole_training_data=True, edits=dict(edits))


SELECTION_RULES: dict[str, SelectionRule] = {
    rule.name: rule
    for rule in (InnerCVEpochs(), InnerCVEnsemble(), ValidationCheckpoint(), FixedSchedule())
}


def get_rule(name: str) -> SelectionRule:
    """The rule registered as ``name`` (one-line error naming the allowed values otherwise)."""
    if name not in SELECTION_RULES:
        raise ValueError(
            f"unknown selection rule {name!r}; allowed values: {', '.join(SELECTION_RULES)}"
        )
    return SELECTION_RULES[name]
