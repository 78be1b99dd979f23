"""How the default tabular model's cost grows with the rows: seconds per epoch, seconds per
training row and peak memory at 5k ... 100k synthetic rows, beside LightGBM / HistGB fit times,
and (``--fit``) one whole default fit (early stopping on) at one size.

Every Hopfield fit is ``ahop fit --config configs/tabular.yaml`` on a synthetic CSV through the
CLI, epochs fixed (``--epochs``, early stopping off); the epoch time counts the training batches
and the memory refresh, not validation. Baselines fit the same training tensors, 1 thread. Prints
a markdown table and saves a PNG and a CSV (``--out``). Commands and results:
docs/results_tabular.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/tabular_speed.py` from anywhere

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ahop_cli import cli as ahop_cli  # noqa: E402
from ahop_cli.cv.baselines import BASELINES, installed  # noqa: E402
from benchmarks.common import EpochTimer, PeakMemory, format_rows, machine, save_figure  # noqa: E402
from benchmarks.tabular import OUT_DIR, csv_data, quiet  # noqa: E402

CONFIG = ROOT / "configs" / "tabular.yaml"
COLUMNS = {"rows (train)": "{rows:.0f} ({train_rows:.0f})", "batch": "{batch_size:.0f}"}
COLUMNS |= {"epochs": "{epochs:.0f}", "s / epoch": "{epoch_s:.2f}", "µs / row": "{us_per_row:.0f}"}
COLUMNS |= {"peak MiB": "{peak_mib:.0f}", "fit s": "{fit_s:.1f}"}


def synthetic_table(
    rows: int, numeric: int = 10, categorical: int = 5, seed: int = 0
) -> pd.DataFrame:
    """``rows`` rows of ``numeric`` Gaussian and ``categorical`` text columns (4..12 categories)
    and a binary ``label`` that depends non-linearly on both (about 10 % label noise)."""
    if numeric < 4 or categorical < 0:
        raise ValueError(f"need >= 4 numeric and >= 0 text columns, got {numeric}, {categorical}")
    generator = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {f"x{i}": generator.normal(size=rows).astype(np.float32) for i in range(numeric)}
    )
    score = np.sin(frame["x0"] * 2) + frame["x1"] * frame["x2"] - 0.5 * frame["x3"].abs()
    for j in range(categorical):
        codes = generator.integers(0, 4 + 2 * j, size=rows)
        frame[f"c{j}"] = np.char.add(f"c{j}_", codes.astype(str))
        score = score + 0.3 * np.cos(codes)
    noisy = score + 0.3 * generator.normal(size=rows)
    frame["label"] = np.where(noisy > np.median(noisy), "yes", "no")
    return frame


def time_fit(csv: Path, extra: Sequence[str]) -> dict[str, Any]:
    """One ``ahop fit`` of the default config on ``csv`` (65 / 15 / 20 % split): epoch times,
    whole fit seconds, peak memory, and the baselines' fit seconds on the same training tensors."""
    with tempfile.TemporaryDirectory(prefix="ahop-speed-") as root:
        quiet_trainer = ("logger", "enable_progress_bar", "enable_model_summary")
        args = [*csv_data(csv, "label"), *(f"--trainer.{o}=false" for o in quiet_trainer)]
        args = ["--config", str(CONFIG), *args, f"--trainer.default_root_dir={root}", *extra]
        cli, timer = ahop_cli.main(args, run=False), EpochTimer()
        cli.trainer.callbacks.append(timer)
        start = time.perf_counter()
        with PeakMemory() as memory:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        fit_s = time.perf_counter() - start
        val_acc = float(cli.trainer.callback_metrics.get("val/acc", float("nan")))
        x, y = cli.datamodule.tensors("train")
    epoch_s = float(np.median(timer.times[1:] or timer.times))
    result = {"train_rows": len(y), "columns": x.shape[1], "epochs": len(timer.times)}
    result |= {"epoch_s": epoch_s, "fit_s": fit_s, "peak_mib": memory.peak_mib}
    result |= {"last_val_acc": val_acc, "batch_size": cli.datamodule.batch_size_for(len(y))}
    result["us_per_row"] = 1e6 * epoch_s / len(y)
    for name in (n for n in ("hist-gb", "lightgbm") if installed(n)):  # ahop cv's, 1 thread
        model, begin = BASELINES[name].make(0), time.perf_counter()
        model.fit(x.numpy(), y.numpy())
        result[f"{name}_fit_s"] = time.perf_counter() - begin
    return result


def baseline_columns(frame: pd.DataFrame) -> list[str]:
    """The ``<baseline>_fit_s`` columns of :func:`time_fit` results."""
    return [c for c in frame.columns if c.endswith("_fit_s")]


def table(frame: pd.DataFrame) -> str:
    """The markdown table of :func:`time_fit` results."""
    extra = {c.removesuffix("_fit_s") + " fit s": f"{{{c}:.2f}}" for c in baseline_columns(frame)}
    return format_rows(COLUMNS | extra, frame.to_dict("records"))


def plot(frame: pd.DataFrame, path: Path) -> None:
    """PNG: seconds per epoch and µs per training row against rows (log x)."""
    fig = Figure(figsize=(10, 3.6))
    axes, rows = fig.subplots(1, 2), frame["train_rows"]
    axes[0].plot(rows, frame["epoch_s"], "o-", label="retrieval (default), epoch")
    for column in baseline_columns(frame):
        label = f"{column.removesuffix('_fit_s')}, whole fit"
        axes[0].plot(rows, frame[column], "s--", label=label)
    axes[0].set_ylabel("seconds")
    axes[1].plot(rows, frame["us_per_row"], "o-")
    axes[1].set_ylabel("µs per training row per epoch")
    axes[1].set_ylim(bottom=0)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(list(rows), [f"{int(r):,}" for r in rows])
        ax.minorticks_off()
        ax.set_xlabel("training rows")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("default tabular model: cost per epoch vs rows (1 torch thread)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, bbox_inches=None)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[5000, 20000, 50000, 100000])
    parser.add_argument("--epochs", type=int, default=3, help="fixed epochs per size")
    parser.add_argument("--fit", action="store_true", help="whole default fit (early stopping)")
    parser.add_argument("--columns", type=int, nargs=2, default=[10, 5], help="numeric, text")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--override", nargs="*", default=[], help="CLI overrides of every fit")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "tabular_speed.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extra = [f"--{o.removeprefix('--')}" for o in args.override]
    if not args.fit:
        extra += [f"--trainer.max_epochs={args.epochs}"]
        extra += ["--model.init_args.early_stopping_patience=null"]
    print(
        f"# {machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); load average {os.getloadavg()[0]:.2f}; "
        f"{'whole fits' if args.fit else f'{args.epochs} epochs'}",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="ahop-speed-data-") as folder, quiet():
        for rows in args.rows:
            csv = Path(folder) / f"synthetic_{rows}.csv"
            synthetic_table(rows, *args.columns).to_csv(csv, index=False)
            results.append(r := {"rows": rows, **time_fit(csv, extra)})
            print(
                f"{rows:>7} rows: {r['epoch_s']:.2f} s/epoch, {r['us_per_row']:.0f} µs/row, "
                f"{r['epochs']} epochs, fit {r['fit_s']:.1f} s, peak +{r['peak_mib']:.0f} MiB",
                flush=True,
            )
    frame = pd.DataFrame(results)
    print("\n" + table(frame) + f"\n\nload average {os.getloadavg()[0]:.2f}")
    plot(frame, args.out)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    print(f"plot: {args.out}; table: {args.out.with_suffix('.csv')}")
    return frame


if __name__ == "__main__":
    main()
