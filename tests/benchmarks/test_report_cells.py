"""The benchmarks' table cells, written through tasks.reports: the same text as before the
helpers were shared (3 significant digits, percent with one or two decimals, ``nan`` for NaN)."""

from __future__ import annotations

import math

import pandas as pd

import benchmarks.common as common
import benchmarks.mil as mil
import benchmarks.retrieval as retrieval
import benchmarks.tabular as tabular


def test_benchmark_markdown_table_prints_floats_with_three_significant_digits() -> None:
    table = common.markdown_table(["a", "b", "c"], [[0.123456, 2, "x"], [1234.5, 1e-7, None]])
    assert table.split("\n") == [
        "| a | b | c |",
        "|---|---|---|",
        "| 0.123 | 2 | x |",
        "| 1.23e+03 | 1e-07 | None |",
    ]


def test_format_rows_fills_each_column_template_from_a_row() -> None:
    columns = {"name": "{name}", "s / run (n)": "{seconds:.1f} ({n})"}
    table = common.format_rows(columns, [{"name": "a", "seconds": 1.26, "n": 3, "unused": 0}])
    assert table.split("\n") == ["| name | s / run (n) |", "|---|---|", "| a | 1.3 (3) |"]


def test_save_figure_takes_a_name_under_out_or_a_path(tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    assert common.save_figure(Figure(), "x") == tmp_path / "out" / "x.png"
    assert common.save_figure(Figure(), tmp_path / "a" / "y.png").is_file()


def test_mil_percent_cells() -> None:
    entry = {"mean": 0.8, "std": 0.05, "n": 3, "repeat_mean": 0.81, "repeat_std": 0.0, "repeats": 1}
    assert mil._pm(entry) == "80.0 ± 5.0"
    assert mil._pm(entry, "repeat_") == "81.0"  # one repeat: no spread
    assert mil._pm({**entry, "n": 1}) == "80.0"
    assert mil._pm({**entry, "mean": math.nan, "std": math.nan}) == "nan ± nan"
    assert mil._pm({}) == "-"


def test_retrieval_and_tabular_mean_std_cells() -> None:
    assert retrieval.fmt([0.5, 1.0]) == "0.750 ± 0.250"  # population std
    assert retrieval.fmt([0.3]) == "0.300 ± 0.000"
    assert tabular.percent_mean_std(pd.Series([0.5, 1.0])) == "75.00 ± 25.00"
    assert tabular.percent_mean_std(pd.Series([], dtype=float)) == ""
    assert tabular.percent_mean_std(pd.Series([math.nan])) == "nan ± nan"
