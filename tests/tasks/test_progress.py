"""The progress bar of long fits: rows / s, the epoch's ETA and the tabular memory refresh."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from datamodules.tabular import TabularDataModule
from tasks.links import data_sizes
from tasks.progress import RowsProgressBar, format_seconds, progress_bar_for
from tasks.tabular import TabularClassifier


def test_format_seconds() -> None:
    assert format_seconds(0) == "0:00"
    assert format_seconds(75.2) == "1:15"
    assert format_seconds(3725) == "1:02:05"


def test_rate_metrics_give_rows_per_second_and_the_epochs_eta() -> None:
    bar = RowsProgressBar()
    bar._epoch_start -= 2.0  # two seconds into the epoch
    bar._rows = 1000
    metrics = bar.rate_metrics(done_batches=10, total_batches=30)
    assert 400 < float(metrics["rows/s"]) <= 500
    assert metrics["eta"] in ("0:04", "0:05")  # 20 batches left at 10 per ~2 s
    assert "eta" not in bar.rate_metrics(done_batches=10, total_batches=float("inf"))


def test_only_lightnings_default_bar_is_replaced() -> None:
    assert progress_bar_for(None) == []
    assert progress_bar_for(L.Trainer(enable_progress_bar=False, logger=False)) == []

    class OwnBar(TQDMProgressBar):
        pass

    own = L.Trainer(callbacks=[OwnBar()], logger=False)
    assert progress_bar_for(own) == []  # a run's own bar is kept
    bars = progress_bar_for(L.Trainer(callbacks=[TQDMProgressBar(refresh_rate=3)], logger=False))
    assert len(bars) == 1 and isinstance(bars[0], RowsProgressBar) and bars[0].refresh_rate == 3


@pytest.mark.parametrize("patience", [4, None])
def test_a_tabular_fit_shows_rows_eta_and_the_refresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], patience: int | None
) -> None:
    data = TabularDataModule(name="breast_cancer", batch_size=64)
    model = TabularClassifier(**data_sizes(data), embedding_dim=8, early_stopping_patience=patience)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=data)
    assert isinstance(trainer.progress_bar_callback, RowsProgressBar)
    assert sum(isinstance(c, TQDMProgressBar) for c in trainer.callbacks) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "rows/s=" in text and "eta=" in text and "refresh=1x" in text
    assert model.progress_metrics()["refresh"].startswith("1x ")
