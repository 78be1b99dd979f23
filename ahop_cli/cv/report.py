"""What an evaluation run reports: mean ± std over folds and repeats, the Markdown table (with a
row per baseline of ``--baselines``), the box plot, ``results.md`` / ``results.json`` /
``folds.png`` of the run folder, and the progress line printed per fold."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from ahop_cli.cv.protocol import FoldResult, Protocol
from ahop_cli.cv.runs import write_json
from ahop_cli.selection import get_rule
from tasks.reports import format_mean_std, format_number, markdown_table, mean_std

#: test metrics shown in tables and plots, in this order (others are kept in the JSON)
TABLE_METRICS = ("test/auroc", "test/acc", "test/f1")


@dataclass
class Evaluation:
    """The results of an evaluation run."""

    run_dir: Path
    folds: list[FoldResult]
    protocol: Protocol
    args: list[str]

    @property
    def summary(self) -> dict[str, dict[str, float]]:
        """:func:`summarize` of the folds."""
        return summarize(self.folds)

    @property
    def baselines(self) -> dict[str, list[FoldResult]]:
        """:func:`baseline_folds` of the folds."""
        return baseline_folds(self.folds)

    def table(self) -> str:
        """:func:`format_table` of the folds."""
        return format_table(self.folds, self.protocol)


def baseline_folds(results: Sequence[FoldResult]) -> dict[str, list[FoldResult]]:
    """Baseline -> its results as folds (metrics, fit seconds; no epochs), one per fold of
    ``results`` that has it (:attr:`FoldResult.baselines`)."""
    names = dict.fromkeys(name for r in results for name in r.baselines)
    return {
        name: [
            FoldResult(
                r.repeat,
                r.fold,
                r.seed,
                {k: v for k, v in r.baselines[name].items() if k != "seconds"},
                None,
                {},
                r.baselines[name].get("seconds", 0.0),
                test_ids=r.test_ids,
            )
            for r in results
            if name in r.baselines
        ]
        for name in names
    }


def summarize(results: Sequence[FoldResult]) -> dict[str, dict[str, float]]:
    """Per test metric: ``mean`` / ``std`` over all folds, ``n`` folds, and ``repeat_mean`` /
    ``repeat_std``: over the per-repeat means (the published convention for repeated CV; the
    std is 0 with one repeat). Standard deviations are sample ones (ddof 1)."""
    names = sorted({name for r in results for name in r.metrics})
    repeats = sorted({r.repeat for r in results})
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        values = [r.metrics[name] for r in results if name in r.metrics]
        mean, std = mean_std(values)
        per_repeat = [
            mean_std([r.metrics[name] for r in results if r.repeat == rep and name in r.metrics])[0]
            for rep in repeats
        ]
        repeat_mean, repeat_std = mean_std(per_repeat)
        summary[name] = {
            "mean": mean,
            "std": std,
            "n": len(values),
            "repeat_mean": repeat_mean,
            "repeat_std": repeat_std,
            "repeats": len(repeats),
        }
    return summary


def format_table(results: Sequence[FoldResult], protocol: Protocol | None = None) -> str:
    """Markdown: one row per fold, then mean ± std over folds and over repeats."""
    metrics = [m for m in TABLE_METRICS if any(m in r.metrics for r in results)]
    evidence = sorted({k for r in results for k in r.selection.get("evidence", {})})
    monitor = next(
        (r.selection.get("monitor") for r in results if r.selection.get("monitor")), None
    )
    inner = [monitor] if monitor in evidence else []
    titles = ["repeat", "fold", "epochs", *[f"inner {m}" for m in inner], *metrics, "s"]
    rows = []
    for r in results:
        cells = [str(r.repeat), str(r.fold), "" if r.epochs is None else str(r.epochs)]
        cells += [format_number(r.selection.get("evidence", {}).get(m)) for m in inner]
        cells += [format_number(r.metrics.get(m)) for m in metrics]
        rows.append([*cells, f"{r.seconds:.1f}"])
    summary = summarize(results)
    pad = [""] * (1 + len(inner))
    total = sum(r.seconds for r in results)
    cells = [format_mean_std(summary[m]["mean"], summary[m]["std"]) for m in metrics]
    rows.append(
        ["**mean ± std (folds)**", f"{len(results)} folds", *pad[1:], "", *cells, f"{total:.0f}"]
    )
    if len({r.repeat for r in results}) > 1:
        cells = [
            format_mean_std(summary[m]["repeat_mean"], summary[m]["repeat_std"]) for m in metrics
        ]
        rows.append(["**mean ± std (repeats)**", "", *pad[1:], "", *cells, ""])
    for name, folds in baseline_folds(results).items():  # mean ± std over the same folds
        base = summarize(folds)
        cells = [
            format_mean_std(base[m]["mean"], base[m]["std"]) if m in base else "" for m in metrics
        ]
        seconds = f"{sum(f.seconds for f in folds):.0f}"
        rows.append(
            [f"**{name}** (same folds)", f"{len(folds)} folds", *pad[1:], "", *cells, seconds]
        )
    header = ""
    if protocol is not None:
        search = (
            ""
            if not protocol.search
            else f", Optuna search ({protocol.search.get('trials', '?')} trials) per training fold"
        )
        header = (
            f"Protocol: {len({r.repeat for r in results})} repeat(s) x {len({r.fold for r in results})} "
            f"outer fold(s); selection `{protocol.selection}`"
            + (
                f" ({protocol.inner_folds} inner folds)"
                if get_rule(protocol.selection).needs_inner_folds or protocol.search
                else ""
            )
            + f"{search}; test samples never reach a fit.\n\n"
        )
    return header + markdown_table(titles, rows)


def plot_folds(results: Sequence[FoldResult], path: Path) -> Path | None:
    """Box plot of every table metric over the folds, per-repeat means as dots."""
    metrics = [m for m in TABLE_METRICS if any(m in r.metrics for r in results)]
    if not metrics:
        return None
    figure = Figure(figsize=(1.6 + 1.4 * len(metrics), 3.5))
    axis = figure.add_subplot(1, 1, 1)
    data = [[r.metrics[m] for r in results if m in r.metrics] for m in metrics]
    axis.boxplot(data, showmeans=True)
    axis.set_xticks(range(1, len(metrics) + 1), labels=metrics)
    repeats = sorted({r.repeat for r in results})
    if len(repeats) > 1:
        for i, m in enumerate(metrics, start=1):
            means = [
                mean_std([r.metrics[m] for r in results if r.repeat == rep and m in r.metrics])[0]
                for rep in repeats
            ]
            axis.scatter(
                [i + 0.25] * len(means),
                means,
                s=12,
                color="black",
                label="repeat means" if i == 1 else None,
            )
        axis.legend(fontsize=7)
    axis.set_title(f"{len(results)} folds", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def write_outputs(evaluation: Evaluation) -> None:
    """``results.md``, ``results.json`` and ``folds.png`` of the run folder."""
    run_dir = evaluation.run_dir
    (run_dir / "results.md").write_text(evaluation.table() + "\n")
    write_json(
        run_dir / "results.json",
        {
            "args": evaluation.args,
            "protocol": asdict(evaluation.protocol),
            "machine": _machine(),
            "summary": evaluation.summary,
            "baselines": {name: summarize(f) for name, f in evaluation.baselines.items()},
            "folds": [asdict(r) for r in evaluation.folds],
        },
    )
    if evaluation.folds:
        plot_folds(evaluation.folds, run_dir / "folds.png")


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def progress_line(done: int, total: int, result: FoldResult, results: Sequence[FoldResult]) -> str:
    """The progress line of fold ``result`` (the ``done``-th of ``total``), with the running mean
    over ``results``."""
    metrics = " ".join(f"{m} {result.metrics[m]:.4f}" for m in TABLE_METRICS if m in result.metrics)
    monitor = result.selection.get("monitor")
    inner = result.selection.get("evidence", {}).get(monitor)
    inner_text = f" (inner {monitor} {inner:.4f})" if inner is not None else ""
    main_metric = next((m for m in TABLE_METRICS if m in result.metrics), None)
    running = ""
    if main_metric:
        mean, _ = mean_std([r.metrics[main_metric] for r in results if main_metric in r.metrics])
        running = f" | mean {main_metric} {mean:.4f} over {len(results)}"
    return (
        f"[{done}/{total}] repeat {result.repeat} fold {result.fold}: {metrics} | epochs "
        f"{result.epochs}{inner_text} | {result.seconds:.1f} s{running}"
    )
