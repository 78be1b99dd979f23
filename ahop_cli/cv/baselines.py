"""Non-neural baselines of ``ahop cv --baselines``: fitted in every outer fold on exactly the
samples the fold's final model trains on, and tested on the same test samples (checked by id),
so that a results table compares the model with them on the same folds.

Baselines (:data:`BASELINES`), all with their packages' default settings and one thread:

- on the rows of a tabular datamodule (its preprocessed tensors, ``tensors(split)``):
  ``logreg`` (scikit-learn's logistic regression), ``hist-gb`` (scikit-learn's
  HistGradientBoosting), ``lightgbm``, ``xgboost``, ``catboost`` (the last three need the
  ``bench`` extra: ``pip install 'ahop[bench]'``);
- on the bags of a multiple-instance datamodule (``num_bags``; ``train_set`` / ``test_set``):
  ``mean-pool-logreg`` / ``max-pool-logreg``, the mean or the maximum of each bag's
  (standardised) instances, standardised again on the training bags, then logistic regression.

Each reports ``test/acc`` (and ``val/acc`` when the final fit has a validation split), plus
``test/auroc`` and ``test/f1`` (``val/...``) for two classes, and its fit ``seconds``; the seed
of a fold is the fold's seed.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _lightgbm(seed: int) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1)


def _xgboost(seed: int) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(random_state=seed, n_jobs=1)


def _catboost(seed: int) -> Any:
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        random_seed=seed, thread_count=1, verbose=0, allow_writing_files=False
    )


def _pooled_logreg(seed: int) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


@dataclass(frozen=True)
class Baseline:
    """A baseline: the features it reads (``rows``, or bags pooled by ``mean`` / ``max``), the
    package it needs and a factory of its estimator from a seed."""

    features: str
    package: str
    make: Callable[[int], Any]


BASELINES: dict[str, Baseline] = {
    "logreg": Baseline("rows", "sklearn", lambda seed: LogisticRegression(max_iter=2000)),
    "hist-gb": Baseline(
        "rows", "sklearn", lambda seed: HistGradientBoostingClassifier(random_state=seed)
    ),
    "lightgbm": Baseline("rows", "lightgbm", _lightgbm),
    "xgboost": Baseline("rows", "xgboost", _xgboost),
    "catboost": Baseline("rows", "catboost", _catboost),
    "mean-pool-logreg": Baseline("mean", "sklearn", _pooled_logreg),
    "max-pool-logreg": Baseline("max", "sklearn", _pooled_logreg),
}


def check_names(names: Sequence[str]) -> None:
    """A one-line error for a name not in :data:`BASELINES`."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; allowed values: {', '.join(BASELINES)}")


def installed(name: str) -> bool:
    """Whether the package of baseline ``name`` is installed."""
    return importlib.util.find_spec(BASELINES[name].package) is not None


def check_baselines(names: Sequence[str], datamodule: object) -> None:
    """One-line errors, before any fit, for a baseline whose package is missing or whose
    features ``datamodule`` (not set up) has no way to give."""
    check_names(names)
    for name in names:
        if not installed(name):
            raise ValueError(
                f"baseline {name!r} needs the {BASELINES[name].package} package: "
                "pip install 'ahop[bench]'"
            )
        needs = "tensors" if BASELINES[name].features == "rows" else "num_bags"
        if not hasattr(type(datamodule), needs):  # the class: a property may need setup
            kind = (
                "rows (a tabular datamodule)" if needs == "tensors" else "bags (a MIL datamodule)"
            )
            raise ValueError(
                f"baseline {name!r} reads {kind}; {type(datamodule).__name__} has no {needs!r}"
            )


def features(datamodule: Any, split: str, how: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of ``split`` of a set-up datamodule: its rows (``how="rows"``), or one vector
    per bag, the ``mean`` or ``max`` of its instances."""
    if how == "rows":
        x, y = datamodule.tensors(split)
        return x.numpy(), y.numpy()
    bags = getattr(datamodule, f"{split}_set")
    reduce = {"mean": lambda b: b.mean(dim=0), "max": lambda b: b.amax(dim=0)}[how]
    pooled = np.stack([reduce(bags.bag(i)).numpy() for i in range(len(bags))])
    return pooled, bags.labels.numpy().astype(np.int64)


def _scores(model: Any, x: np.ndarray, y: np.ndarray, split: str) -> dict[str, float]:
    scores = {f"{split}/acc": float(np.mean(np.asarray(model.predict(x)).reshape(-1) == y))}
    if len(model.classes_) == 2 and len(np.unique(y)) == 2:
        scores[f"{split}/auroc"] = float(roc_auc_score(y, model.predict_proba(x)[:, 1]))
        scores[f"{split}/f1"] = float(f1_score(y, np.asarray(model.predict(x)).reshape(-1)))
    return scores


def fit_baselines(
    names: Sequence[str], datamodule: Any, seed: int, splits: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Fit every baseline of ``names`` on the ``train`` split of a set-up ``datamodule`` and
    score it on ``splits`` (each with samples); baseline -> its metrics and fit ``seconds``."""
    results: dict[str, dict[str, float]] = {}
    cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def data(split: str, how: str) -> tuple[np.ndarray, np.ndarray]:
        if (split, how) not in cache:
            cache[split, how] = features(datamodule, split, how)
        return cache[split, how]

    for name in names:
        how = BASELINES[name].features
        model, (x, y) = BASELINES[name].make(seed), data("train", how)
        start = time.perf_counter()
        model.fit(x, y)
        results[name] = {"seconds": time.perf_counter() - start}
        for split in splits:
            results[name].update(_scores(model, *data(split, how), split))
    return results


def fold_baselines(
    names: Sequence[str],
    datamodule: Any,
    seed: int,
    test_ids: set[Any],
    split_ids: Callable[[Any, str], list[Any]],
) -> dict[str, dict[str, float]]:
    """:func:`fit_baselines` on the final fit's datamodule of one fold (set up if it is not),
    scored on its validation samples (if any) and its test samples, which must be the fold's
    ``test_ids``."""
    datamodule.setup("fit")
    if set(split_ids(datamodule, "test")) != test_ids:
        raise RuntimeError("the baselines' datamodule has other test samples than the fold")
    scored = [split for split in ("val", "test") if split_ids(datamodule, split)]
    return fit_baselines(names, datamodule, seed, scored)
