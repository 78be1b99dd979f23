"""Smoke test of benchmarks/layer_speed.py: every case and the sort table run on tiny sizes, and
what they report is a measurement (positive, finite), not a placeholder."""

from __future__ import annotations

import math

import pytest

from benchmarks.layer_speed import in_subprocess, run_case, sorting_speed


@pytest.mark.parametrize("similarity", ["dot", "euclidean", "manhattan", "adaptive"])
@pytest.mark.parametrize("kind", ["ahop", "torch"])
def test_every_case_runs(kind: str, similarity: str) -> None:
    result = run_case(kind, similarity, n=20, d=8, repeats=1, queries=4)
    assert 0 < result["seconds"] < 10 and math.isfinite(result["peak_mib"])


def test_adaptive_costs_more_than_dot() -> None:
    """The table's ratios: finite and positive; the sorting similarity is the slower one."""
    dot = run_case("ahop", "dot", n=200, d=32, repeats=3, queries=16)["seconds"]
    adaptive = run_case("ahop", "adaptive", n=200, d=32, repeats=3, queries=16)["seconds"]
    ratio = adaptive / dot
    assert math.isfinite(ratio) and ratio > 1


def test_peak_memory_is_measured_in_a_fresh_process() -> None:
    """(Q, N) = 256 x 20000 float scores are 20 MiB, their softmax and gradients more: far above
    the peak the subprocess reaches by importing torch (a smaller case can hide below it)."""
    result = in_subprocess("torch", "euclidean", n=20000, d=16, repeats=1, queries=256)
    assert result["peak_mib"] > 10 and result["seconds"] > 0


def test_sort_table() -> None:
    table = sorting_speed(rows=64, d=8)
    assert [row[0] for row in table] == ["values only", "values + order"]
    assert all(row[3] > 0 and row[4] > 0 for row in table)
