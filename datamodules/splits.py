"""Stratified split helpers shared by the datamodules (outer k-fold, inner validation / inner k-fold).

The evaluation engine (:mod:`ahop_cli.cv.engine`) addresses every datamodule through the same init
options, which these helpers implement:

- ``num_folds`` / ``fold`` / ``seed``: the **outer** split; ``fold`` selects the test fold of a
  shuffled :class:`~sklearn.model_selection.StratifiedKFold`;
- ``inner_folds`` / ``inner_fold``: an **inner** stratified k-fold over the non-test samples;
  ``inner_fold`` is the validation part (model selection and searches read only these);
- ``val_fraction`` (without ``inner_folds``): a stratified held-out share of the non-test samples;
  ``0`` trains on all of them (no validation split).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import Tensor

from datamodules.image_sources import stratified_split
from datamodules.logs import warn_once


def _as_numpy(labels: Tensor | np.ndarray) -> np.ndarray:
    return labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)


def check_split_options(
    num_folds: int | None,
    fold: int,
    inner_folds: int | None,
    inner_fold: int,
    val_fraction: float,
) -> None:
    """Raise ``ValueError`` (one line, naming the option) for inconsistent split options."""
    if num_folds is not None and num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    if num_folds is not None and not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    if inner_folds is not None and inner_folds < 2:
        raise ValueError(f"inner_folds must be >= 2 (or null), got {inner_folds}")
    if inner_folds is not None and not 0 <= inner_fold < inner_folds:
        raise ValueError(f"inner_fold must be in [0, {inner_folds}), got {inner_fold}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def kfold_split(
    labels: Tensor | np.ndarray, num_folds: int, fold: int, seed: int, what: str = "folds"
) -> tuple[Tensor, Tensor]:
    """(rest, held-out) sorted long index tensors: fold ``fold`` of a shuffled stratified k-fold.

    Args:
        labels: (n,) class labels.
        num_folds: folds k >= 2; the held-out parts of folds 0..k-1 partition ``range(n)``.
        fold: which fold is held out.
        seed: shuffle seed.
        what: name used in the error message (e.g. ``"inner folds"``).
    """
    y = _as_numpy(labels)
    classes, counts = np.unique(y, return_counts=True)
    rare = {str(c): int(n) for c, n in zip(classes, counts, strict=True) if n < num_folds}
    if rare and len(classes) > len(rare):  # a single class fails below, with its own message
        warn_once(
            f"class(es) {rare} (label: samples) have fewer samples than the {num_folds} {what}: "
            "some folds hold none of them, so their per-class scores are undefined there"
        )
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    try:
        rest, held_out = list(splitter.split(np.zeros(len(y)), y))[fold]
    except ValueError as err:
        raise ValueError(f"cannot make {num_folds} stratified {what}: {err}") from None
    return torch.as_tensor(np.sort(rest)), torch.as_tensor(np.sort(held_out))


def validation_split(
    labels: Tensor | np.ndarray,
    seed: int,
    val_fraction: float,
    inner_folds: int | None = None,
    inner_fold: int = 0,
) -> tuple[Tensor, Tensor]:
    """(train, val) positions within the non-test samples whose labels are ``labels``.

    ``inner_folds`` set: val = inner fold ``inner_fold`` of a stratified k-fold (seed ``seed``);
    else a stratified ``val_fraction`` share; ``val_fraction == 0``: every sample trains and the
    validation part is empty.
    """
    y = _as_numpy(labels)
    if inner_folds is not None:
        return kfold_split(y, inner_folds, inner_fold, seed, what="inner folds")
    if val_fraction == 0:
        return torch.arange(len(y)), torch.zeros(0, dtype=torch.long)
    try:
        return stratified_split(torch.as_tensor(y), val_fraction, seed)
    except ValueError as err:
        raise ValueError(f"cannot carve a stratified validation split: {err}") from None
