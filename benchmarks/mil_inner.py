"""How the MIL defaults were chosen: model variants compared on inner validation folds only.

For each data set and variant, the training bags of the first ``--outer-folds`` outer folds
(repeat 0 of the 10-fold split) are split into ``--inner-folds`` stratified inner folds; the model
is trained on each inner training part and its validation curves are averaged (exactly what
``ahop cv --selection inner_cv`` does before its final fit). No test fold is trained on, tested
or looked at. Reported per variant: the mean inner-validation AUROC / accuracy at the epoch count
that the mean validation loss selects, the best mean AUROC over epochs, and the time.

    python benchmarks/mil_inner.py --datasets elephant ucsb_breast_cancer --variants base bs32
    python benchmarks/mil_inner.py --datasets elephant --variants bs32 --rules inner_cv inner_cv_ensemble

``--rules`` instead compares selection rules end to end on a *development set*: the training bags
of outer fold 0 (written to ``benchmarks/out/mil_dev/<name>_dev.csv``), cross-validated 5-fold
with ``ahop cv``; its test folds are training bags of the real protocol, never its test bags.

Prints a markdown table per data set; appends every (data set, variant) result to
``benchmarks/out/mil_inner.json`` as soon as it is measured (a rerun skips measured ones).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ahop_cli.evaluate import FoldRunner, Protocol, prepare, quiet  # noqa: E402
from benchmarks.common import OUT, markdown_table  # noqa: E402
from benchmarks.mil import SHARED, _config_args  # noqa: E402

EMA = {
    "class_path": "lightning.pytorch.callbacks.EMAWeightAveraging",
    "init_args": {"decay": 0.9},
}
#: variant name -> config edits (dotted option -> value) on top of the data set's config
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "bs32": {"data.init_args.batch_size": 32},
    "bs32_dot": {"data.init_args.batch_size": 32, "model.init_args.similarity": "dot"},
    "bs32_idrop": {"data.init_args.batch_size": 32, "model.init_args.instance_dropout": 0.3},
    "bs32_ema": {"data.init_args.batch_size": 32, "trainer.callbacks": [EMA]},
    "bs32_reg": {
        "data.init_args.batch_size": 32,
        "model.init_args.dropout": 0.3,
        "model.init_args.optimizer.init_args.weight_decay": 0.1,
    },
    "bs32_lr3e-4": {
        "data.init_args.batch_size": 32,
        "model.init_args.optimizer.init_args.lr": 3e-4,
    },
}
RESULTS = OUT / "mil_inner.json"
RULES = OUT / "mil_dev_rules.json"


def measure(dataset: str, variant: str, options: argparse.Namespace) -> dict[str, Any]:
    args = [*_config_args(dataset), "--data.init_args.data_dir", str(options.data_dir)]
    args += ["--trainer.max_epochs", str(options.max_epochs)]
    protocol = Protocol(inner_folds=options.inner_folds)
    start = time.perf_counter()
    with quiet(), tempfile.TemporaryDirectory() as tmp:
        base, plan, monitor = prepare(args, protocol)
        per_fold = []
        for spec in plan[: options.outer_folds]:
            runner = FoldRunner(base, spec, protocol, Path(tmp) / spec.key, None, monitor)
            curves = runner.inner_curves(VARIANTS[variant])
            epochs, evidence = curves.choose("val/loss", "min")
            auroc = curves.mean("val/auroc")
            per_fold.append(
                {
                    "epochs": epochs,
                    "auroc_at_loss_epoch": evidence["val/auroc"],
                    "acc_at_loss_epoch": evidence["val/acc"],
                    "loss_min": evidence["val/loss"],
                    "best_auroc": float(np.nanmax(auroc)),
                    "best_auroc_epoch": int(np.nanargmax(auroc)) + 1,
                    "auroc_last": float(auroc[-1]),
                    "mean_auroc_curve": [float(v) for v in auroc],
                }
            )
    seconds = time.perf_counter() - start
    summary = {
        key: float(np.mean([f[key] for f in per_fold]))
        for key in per_fold[0]
        if key != "mean_auroc_curve"
    }
    return {
        "dataset": dataset,
        "variant": variant,
        "folds": per_fold,
        "seconds": seconds,
        **summary,
    }


def dev_dataset(dataset: str, data_dir: Path, folder: Path) -> Path:
    """The training bags of outer fold 0 (repeat 0, the config's seed and folds) as a CSV: a
    development set whose own cross-validation never touches that outer test fold."""
    from ahop_cli.config_edit import get_option, instantiate

    with quiet():
        base, _, _ = prepare(
            [*_config_args(dataset), "--data.init_args.data_dir", str(data_dir)], Protocol()
        )
    datamodule = instantiate(get_option(base, "data"))
    pool = datamodule.load()
    rest, _ = datamodule.split_indices()
    bags = pool.subset(rest)
    rows = []
    for i in range(len(bags)):
        label, bag_id = int(bags.labels[i]), bags.bag_ids[i]
        rows += [
            f"{label},{bag_id}," + ",".join(f"{v:.7g}" for v in row) for row in bags.bag(i).tolist()
        ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset}_dev.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def compare_rules(options: argparse.Namespace) -> list[dict[str, Any]]:
    """Selection rules (and variants) evaluated by a 5-fold CV of each development set."""
    from ahop_cli.evaluate import evaluate

    rows = []
    for dataset in options.datasets:
        path = dev_dataset(dataset, options.data_dir, OUT / "mil_dev")
        for variant in options.variants:
            for rule in options.rules:
                args = [*_config_args(dataset), "--data.init_args.dataset", "csv"]
                args += ["--data.init_args.path", str(path), "--data.init_args.num_folds", "5"]
                args += ["--trainer.max_epochs", str(options.max_epochs)]
                args += [
                    arg
                    for name, value in VARIANTS[variant].items()
                    for arg in (f"--{name}", json.dumps(value))
                ]
                name, _, monitor = rule.partition(":")  # e.g. inner_cv:val/auroc
                protocol = Protocol(
                    selection=name, inner_folds=options.inner_folds, monitor=monitor or None
                )
                result = evaluate(
                    args, protocol, output_dir=options.output_dir, threads=options.threads, log=None
                )
                summary = result.summary
                row = {
                    "dataset": dataset,
                    "variant": variant,
                    "rule": rule,
                    "auroc": summary["test/auroc"]["mean"],
                    "auroc_std": summary["test/auroc"]["std"],
                    "acc": summary["test/acc"]["mean"],
                    "epochs": sum(f.epochs or 0 for f in result.folds) / len(result.folds),
                    "seconds": sum(f.seconds for f in result.folds),
                    "run_dir": str(result.run_dir),
                }
                rows.append(row)
                print(
                    f"| {dataset} | {variant} | {rule} | {100 * row['auroc']:.1f} ± {100 * row['auroc_std']:.1f} | "
                    f"{100 * row['acc']:.1f} | {row['epochs']:.1f} | {row['seconds']:.0f} |",
                    flush=True,
                )
                done = json.loads(RULES.read_text()) if RULES.is_file() else []
                RULES.write_text(json.dumps([*done, row], indent=2))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["data set", "variant", "inner AUROC @ loss epoch", "inner acc @ loss epoch"]
    headers += ["loss epochs", "best mean AUROC (epoch)", "AUROC last epoch", "s / outer fold"]
    body = [
        [
            r["dataset"],
            r["variant"],
            f"{100 * r['auroc_at_loss_epoch']:.1f}",
            f"{100 * r['acc_at_loss_epoch']:.1f}",
            f"{r['epochs']:.1f}",
            f"{100 * r['best_auroc']:.1f} ({r['best_auroc_epoch']:.0f})",
            f"{100 * r['auroc_last']:.1f}",
            f"{r['seconds'] / len(r['folds']):.0f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["elephant", "ucsb_breast_cancer"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--outer-folds", type=int, default=2)
    parser.add_argument("--inner-folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rules",
        nargs="*",
        default=None,
        help="instead: compare these selection rules by a 5-fold CV of each development set "
        "(the training bags of outer fold 0 only)",
    )
    parser.add_argument("--output-dir", default="runs/benchmarks/mil_dev")
    options = parser.parse_args(argv)
    torch.set_num_threads(options.threads)
    if options.rules:
        return compare_rules(options)
    done = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    settings = {k: getattr(options, k) for k in ("outer_folds", "inner_folds", "max_epochs")}
    for dataset in options.datasets:
        for variant in options.variants:
            key = {"dataset": dataset, "variant": variant, **settings}
            if any(all(r.get(k) == v for k, v in key.items()) for r in done):
                continue
            row = {**measure(dataset, variant, options), **settings}
            done.append(row)
            OUT.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(done, indent=2))
            print(table([row]).splitlines()[-1], flush=True)
    chosen = [
        r
        for r in done
        if r["dataset"] in options.datasets
        and r["variant"] in options.variants
        and all(r.get(k) == v for k, v in settings.items())
    ]
    print(
        f"\ninner validation only ({options.outer_folds} outer training folds x "
        f"{options.inner_folds} inner folds, {options.max_epochs} epochs), x100"
    )
    print(table(chosen))
    return chosen


if __name__ == "__main__":
    main()
