"""Smoke test of benchmarks/layer_speed.py: every case and the sort table run on tiny sizes."""

from __future__ import annotations

import pytest

from benchmarks.layer_speed import run_case, sorting_speed


@pytest.mark.parametrize("similarity", ["dot", "euclidean", "manhattan", "adaptive"])
@pytest.mark.parametrize("kind", ["ahop", "torch"])
def test_every_case_runs(kind: str, similarity: str) -> None:
    result = run_case(kind, similarity, n=20, d=8, repeats=1, queries=4)
    assert result["seconds"] > 0 and result["peak_mib"] >= 0


def test_sort_table() -> None:
    table = sorting_speed(rows=64, d=8)
    assert [row[0] for row in table] == ["values only", "values + order"]
    assert all(row[3] > 0 and row[4] > 0 for row in table)
