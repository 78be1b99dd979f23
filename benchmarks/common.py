"""Helpers shared by the benchmarks: timing, peak memory, markdown tables, PNG plots, JSON
results."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from tasks import reports

OUT = Path(__file__).resolve().parent / "out"


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class EpochTimer(Callback):
    """Wall time of every training epoch in ``times`` (the memory refresh and training batches;
    validation excluded)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.times.append(time.perf_counter() - self.start)


class PeakMemory:
    """Peak resident memory (MiB) added while the ``with`` block runs: Linux's ``VmHWM`` after
    resetting it to the current size (``clear_refs``), so earlier peaks (imports, other cases)
    do not hide this one; ``nan`` where the kernel does not allow the reset."""

    def __enter__(self) -> PeakMemory:
        self.peak_mib = float("nan")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.supported = True
        except OSError:
            self.supported = False
        self.base = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.supported:
            self.peak_mib = (_status_kib("VmHWM") - self.base) / 1024


def _status_kib(key: str) -> float:
    """A ``/proc/self/status`` field in KiB (``nan`` if absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (torch CPU threads, default 1) of a benchmark's command line."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: these small models run fastest on one thread, and on a "
        "shared machine 2 threads can be many times slower)",
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table (:func:`tasks.reports.markdown_table`); floats are printed with 3
    significant digits."""
    return reports.markdown_table(headers, rows, float_format=".3g")


def format_rows(columns: Mapping[str, str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A markdown table with a column per ``columns`` item: its header and a
    :meth:`str.format_map` template of a row's fields, e.g. ``{"s / fold": "{seconds:.1f}"}``."""
    cells = [[template.format_map(row) for template in columns.values()] for row in rows]
    return reports.markdown_table(list(columns), cells)


def machine() -> str:
    """The processor (or machine type) this runs on."""
    return platform.processor() or platform.machine()


def save_figure(figure, name: str | Path, **options: Any) -> Path:
    """Save a matplotlib figure as ``benchmarks/out/<name>.png`` (a ``Path``: there) at 120 dpi,
    cropped to its content unless ``options`` say otherwise; return the path."""
    path = name if isinstance(name, Path) else OUT / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, **{"dpi": 120, "bbox_inches": "tight", **options})
    return path


def save_json(name: str, payload: Any, indent: int = 1) -> Path:
    """Write ``payload`` as ``benchmarks/out/<name>.json`` and return the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(payload, indent=indent, default=str))
    return path
