"""Row sorting used by the adaptive similarity: the NumPy fast path agrees with torch.sort."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch

from ahop.sorting import PARALLEL_MIN_ROWS, sort_rows_, sort_rows_with_order


def rows_with_ties(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values with many exact ties, both zero signs, negatives and positives."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(-3, 4, shape, generator=generator).to(dtype) / 2
    values[..., 0] = -0.0
    return values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("threads", [1, 2])
def test_sorts_match_torch_sort(dtype: torch.dtype, threads: int) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # enough rows for the threaded path; ties, both zero signs and a 3-D shape
        for values in (
            rows_with_ties(2 * PARALLEL_MIN_ROWS + 3, 9, dtype=dtype),
            torch.randn(4, 5, 6).to(dtype),
        ):
            want = values.sort(dim=-1).values
            assert torch.equal(sort_rows_(values.clone()), want)
            got, order = sort_rows_with_order(values)
            assert got.dtype == values.dtype and order.dtype == torch.int64
            assert torch.equal(got, want)
            assert torch.equal(values.gather(-1, order), want)
            # a permutation of every row
            assert torch.equal(
                order.sort(dim=-1).values, torch.arange(values.shape[-1]).expand_as(order)
            )
    finally:
        torch.set_num_threads(previous)


def test_sort_keeps_distinct_close_float32_values_in_order() -> None:
    # neighbours one ulp apart: the index bits in the widened keys must not reorder them
    base = torch.tensor([1.0, -1.0, 1e-30, -1e-30, 3.0e38])
    ulp = torch.nextafter(base, torch.full_like(base, float("inf")))
    values = torch.stack([base, ulp], -1).flip(-1).reshape(1, -1).repeat(3, 1)
    got, order = sort_rows_with_order(values)
    assert torch.equal(got, values.sort(-1).values)
    assert torch.equal(values.gather(-1, order), got)


def test_wide_rows_use_enough_index_bits() -> None:
    values = torch.randn(3, 1025)  # 1025 columns need 11 index bits
    got, order = sort_rows_with_order(values)
    assert torch.equal(got, values.sort(-1).values)
    assert int(order.max()) == 1024


def test_non_contiguous_inputs() -> None:
    values = torch.randn(5, 7, 3).transpose(0, 1)
    want = values.sort(-1).values
    got, order = sort_rows_with_order(values)
    assert torch.equal(got, want) and torch.equal(values.gather(-1, order), want)
    assert sort_rows_(values) is values
    assert torch.equal(values, want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_threaded_sort_works_in_a_forked_child() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        values = torch.randn(2 * PARALLEL_MIN_ROWS, 5)
        want = values.sort(-1).values.numpy()
        sort_rows_(values.clone())  # the parent's thread pool exists now
        child_values = values.clone()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            # child: the inherited pool has no threads (a hang fails the test after 30 s); only
            # NumPy here, torch's own OpenMP pool is not fork-safe
            ok = np.array_equal(sort_rows_(child_values).numpy(), want)
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
        os.close(write)
        deadline = time.monotonic() + 30
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the threaded sort hung in a forked child")
            time.sleep(0.05)
        assert os.read(read, 1) == b"1"
    finally:
        torch.set_num_threads(previous)
