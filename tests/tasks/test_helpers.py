"""The shared helpers of tasks/: mean ± std, markdown tables, quiet Lightning, class paths."""

from __future__ import annotations

import logging
import math
import statistics
import warnings

import pytest

from tasks.class_paths import import_class
from tasks.quiet import quiet_lightning
from tasks.reports import format_mean_std, format_number, markdown_table, mean_std


def test_mean_std_sample_and_population() -> None:
    values = [0.5, 0.75, 1.0, math.nan]
    mean, std = mean_std(values)
    assert mean == pytest.approx(0.75) and std == pytest.approx(statistics.stdev([0.5, 0.75, 1]))
    assert mean_std(values, ddof=0)[1] == pytest.approx(statistics.pstdev([0.5, 0.75, 1.0]))
    assert mean_std([0.3]) == (0.3, 0.0) and mean_std([0.3], ddof=0) == (0.3, 0.0)
    assert all(math.isnan(v) for v in mean_std([math.nan]))


def test_formatting_of_numbers_and_mean_std() -> None:
    assert format_number(0.123456) == "0.1235" and format_number(math.nan) == ""
    assert format_number(None) == ""
    assert format_mean_std(0.8, 0.05, digits=2) == "0.80 ± 0.05"
    assert format_mean_std(0.8, math.nan, digits=1) == "0.8"
    assert format_mean_std(math.nan, 0.1) == ""


def test_missing_numbers_written_as_asked() -> None:
    # missing="nan": what an f-string prints, and always both halves (the benchmarks' cells)
    assert format_number(math.nan, 1, missing="nan") == "nan"
    assert format_number(None, missing="-") == "-"
    assert format_number(0.25, 2, missing="nan") == "0.25"
    assert format_mean_std(math.nan, math.nan, 1, missing="nan") == "nan ± nan"
    assert format_mean_std(81.25, 3.0, 2, missing="nan") == "81.25 ± 3.00"
    assert format_mean_std(0.5, math.nan, 3, missing="nan") == "0.500 ± nan"


def test_markdown_table() -> None:
    table = markdown_table(["a", "b"], [[1, 0.123456], ["x", 2.0]], float_format=".3g")
    assert table.split("\n") == ["| a | b |", "|---|---|", "| 1 | 0.123 |", "| x | 2 |"]
    assert markdown_table(["a"], [[0.5]]).split("\n")[-1] == "| 0.5 |"


def test_quiet_lightning_hides_info_and_harmless_warnings_then_restores() -> None:
    logger = logging.getLogger("lightning.pytorch")
    before = logger.level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning():
            assert logger.getEffectiveLevel() == logging.WARNING
            warnings.warn("The dataloader does not have many workers", stacklevel=1)
            warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]
    assert logger.level == before


def test_import_class() -> None:
    from tasks.image import ImageClassifier

    assert import_class("tasks.image.ImageClassifier") is ImageClassifier
    for bad in ("tasks.image.Nope", "no_such_module.X", "NoDot"):
        with pytest.raises(ValueError, match="cannot import"):
            import_class(bad)
