"""Row-wise sorting for the adaptive similarity, with a fast CPU path.

The adaptive similarity sorts the ``d`` per-dimension values of every (query, memory) pair, so it
lives or dies by the speed of sorting many short rows. ``torch.sort`` on CPU is a generic
comparison sort; NumPy sorts float32 / float64 rows with SIMD sorting networks (x86-simd-sort:
AVX-512 since NumPy 1.25, AVX2 since 2.0). On this project's development machine, rows of 784
float32 values sort 12.7x faster (values only) and 4.7x faster (values and order) than with
``torch.sort`` (``python benchmarks/layer_speed.py --sorts-only``). CPU float32 / float64 tensors take the NumPy path,
sorting row blocks in parallel threads (NumPy releases the GIL while sorting); other devices and
dtypes use ``torch.sort``.

Everything here sorts ascending along the last dimension and stays outside autograd (callers
write their own backward passes).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor

#: Below this many rows a sort runs in the calling thread.
PARALLEL_MIN_ROWS = 4096

_NUMPY_SORTABLE = (torch.float32, torch.float64)


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="ahop-sort")


# a forked child (DataLoader workers, ddp_fork) inherits the pool object but not its threads
os.register_at_fork(after_in_child=_pool.cache_clear)


def _sort_inplace(rows: np.ndarray) -> None:
    """Sort a 2-D array's rows in place, in as many threads as torch uses."""
    threads = min(torch.get_num_threads(), max(1, rows.shape[0] // PARALLEL_MIN_ROWS))
    if threads == 1:
        rows.sort(axis=-1)
        return
    bounds = np.linspace(0, rows.shape[0], threads + 1).astype(int)
    chunks = [rows[start:stop] for start, stop in pairwise(bounds)]
    list(_pool(threads).map(lambda chunk: chunk.sort(axis=-1), chunks))


def _numpy_path(values: Tensor) -> bool:
    return values.device.type == "cpu" and values.dtype in _NUMPY_SORTABLE


def sort_rows_(values: Tensor) -> Tensor:
    """Sort ``values`` ascending along the last dimension, in place; returns ``values``.

    Meant for a buffer the caller owns and no longer needs unsorted; a non-contiguous one is
    sorted through a contiguous copy.
    """
    if not _numpy_path(values):
        return values.copy_(values.sort(dim=-1).values)
    if not values.is_contiguous():
        return values.copy_(sort_rows_(values.contiguous()))
    _sort_inplace(values.detach().view(-1, values.shape[-1]).numpy())
    return values


def sort_rows_with_order(values: Tensor) -> tuple[Tensor, Tensor]:
    """``(sorted values, int64 order)`` with ``sorted = values.gather(-1, order)``, ascending.

    ``order`` is a permutation of each row (ties in some fixed order). For float32 on CPU, each
    value is widened to float64 exactly and its column index written into the low mantissa bits,
    which float32 never uses: one SIMD sort of these keys orders the values (a perturbation far
    below a float32 ulp cannot reorder distinct values), its low bits are the order, and rounding
    back to float32 restores the sorted values. ``np.argsort`` plus a gather costs about twice as
    much. (An infinite value would turn into NaN and sort last; its scores are infinite anyway.)
    """
    if not _numpy_path(values):
        result = values.sort(dim=-1)
        return result.values, result.indices
    dim = values.shape[-1]
    if values.dtype == torch.float64 or dim >= 2**29:
        order = np.argsort(values.detach().reshape(-1, dim).numpy(), axis=-1)
        order = torch.from_numpy(order).reshape(values.shape)
        return values.gather(-1, order), order
    keys = values.detach().to(torch.float64, memory_format=torch.contiguous_format)
    bits = keys.view(torch.int64)
    bits.bitwise_or_(torch.arange(dim))
    _sort_inplace(keys.view(-1, dim).numpy())
    sorted_values = keys.to(torch.float32)
    low_bits = (1 << max(1, (dim - 1).bit_length())) - 1
    return sorted_values, bits.bitwise_and_(low_bits)
