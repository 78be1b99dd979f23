"""What ``ahop cv`` evaluates (:class:`Protocol`) and what one outer fold is and produced
(:class:`FoldSpec`, :class:`FoldResult`): plain dataclasses, saved as JSON in the run folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ahop_cli.cv.baselines import check_names
from ahop_cli.selection import get_rule


@dataclass
class Protocol:
    """How to evaluate a config.

    Attributes:
        repeats: repeats of the whole cross-validation; repeat ``r`` uses seed ``seed + r``.
        folds: outer folds (overrides ``data.init_args.num_folds``; ``None``: the config's).
        seed: base seed (``None``: the config's ``data.init_args.seed``).
        selection: model-selection rule, a name in :data:`ahop_cli.selection.SELECTION_RULES`
            (``None``: the task's ``cv_selection``: ``fixed`` for MIL, ``validation`` for
            tabular, else ``inner_cv``; set by :func:`ahop_cli.cv.engine.prepare`).
        inner_folds: inner folds of the training data (selection ``inner_cv`` and searches).
        monitor: validation metric that selects (``None``: the model's ``monitor``, e.g.
            ``val/loss`` for MIL, ``val/acc`` for the other classifiers); mode follows the name
            (``loss`` -> min, else max) unless ``mode`` is set.
        mode: ``min`` | ``max`` | ``None`` (see ``monitor``).
        search: an Optuna search run inside every outer training fold (a dict as in the search
            YAML, see :mod:`ahop_cli.search`), or ``None``.
        baselines: names in :data:`ahop_cli.cv.baselines.BASELINES` fitted in every outer fold
            on the final fit's training samples and tested on its test samples.
    """

    repeats: int = 1
    folds: int | None = None
    seed: int | None = None
    selection: str | None = None
    inner_folds: int = 5
    monitor: str | None = None
    mode: str | None = None
    search: dict[str, Any] | None = None
    baselines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = self.baselines  # a YAML `baselines: logreg` is one name
        self.baselines = [names] if isinstance(names, str) else list(names)
        check_names(self.baselines)
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.inner_folds < 2:
            raise ValueError(f"inner_folds must be >= 2, got {self.inner_folds}")
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"mode must be min or max, got {self.mode!r}")
        if self.selection is not None:
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
        """The fold's folder name in the run, e.g. ``r0_f03``."""
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
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The fold's folder name in the run (see :attr:`FoldSpec.key`)."""
        return FoldSpec(self.repeat, self.fold, self.seed).key


def mode_of(monitor: str) -> str:
    """``min`` for a loss (by the metric's last name part), else ``max``."""
    return "min" if "loss" in monitor.rsplit("/", 1)[-1] else "max"
