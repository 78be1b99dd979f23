"""datamodules.splits: stratified outer / inner splits and what they report about the data."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from datamodules.splits import kfold_split


def test_a_class_rarer_than_the_folds_is_reported_once(caplog) -> None:
    labels = np.array([0, 1] * 20 + [2, 2])
    with caplog.at_level(logging.INFO, logger="ahop.data"), pytest.warns(UserWarning):
        for fold in range(5):  # sklearn's own warning stays; ours names the class, once
            rest, held_out = kfold_split(labels, 5, fold, seed=7, what="rare-test folds")
            assert len(rest) + len(held_out) == len(labels)
    messages = [r.getMessage() for r in caplog.records if "rare-test folds" in r.getMessage()]
    assert messages == [
        "class(es) {'2': 2} (label: samples) have fewer samples than the 5 rare-test folds: "
        "some folds hold none of them, so their per-class scores are undefined there"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ahop.data"):
        kfold_split(np.array([0, 1] * 20), 5, 0, seed=7, what="common folds")
    assert not caplog.records


def test_too_few_samples_for_any_fold_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="cannot make 5 stratified folds"):
        kfold_split(np.array([0, 0, 1, 1]), 5, 0, seed=0)
