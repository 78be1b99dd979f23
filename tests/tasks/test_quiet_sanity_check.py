"""The sanity check's discarded metrics do not warn about a class missing from its batches."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ahop_cli.cli import main

ROOT = Path(__file__).resolve().parents[2]
MISSING_CLASS = "samples in targets"  # torchmetrics: "No positive / negative samples in targets"


def sorted_csv(tmp_path: Path) -> Path:
    """400 rows sorted by class: the first validation batches hold one class only."""
    rng = np.random.default_rng(0)
    label = np.repeat([0, 1], 200)
    frame = pd.DataFrame({"a": rng.normal(size=400) + label, "b": rng.normal(size=400)})
    path = tmp_path / "sorted.csv"
    frame.assign(label=label).to_csv(path, index=False)
    return path


def fit(tmp_path: Path, epochs: int, batch_size: int) -> list[str]:
    args = ["fit", "--config", str(ROOT / "configs" / "tabular.yaml"), "--trainer.logger", "false"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.max_epochs", str(epochs)]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.num_sanity_val_steps", "1"]
    args += [
        "--data.init_args.source",
        "csv",
        "--data.init_args.csv_path",
        str(sorted_csv(tmp_path)),
    ]
    args += ["--data.init_args.target", "label", "--data.init_args.batch_size", str(batch_size)]
    args += ["--data.init_args.val_size", "0.5", "--data.init_args.test_size", "0.1"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        main(args)
    return [str(w.message) for w in seen if MISSING_CLASS in str(w.message)]


def test_sanity_check_is_quiet_and_the_filter_does_not_leak(tmp_path: Path) -> None:
    before = list(warnings.filters)
    assert fit(tmp_path, epochs=1, batch_size=8) == []  # a sanity batch of 8 rows: one class
    assert warnings.filters == before


def test_without_the_filter_this_data_warns(tmp_path: Path, monkeypatch) -> None:
    """The check above can fail: with no patterns to ignore, the same fit warns."""
    from tasks import quiet

    monkeypatch.setattr(quiet, "SANITY_CHECK_WARNINGS", ())  # the sanity check warns as well
    assert fit(tmp_path, epochs=1, batch_size=8) != []
