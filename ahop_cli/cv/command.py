"""``ahop cv``: one evaluation protocol for every classification config (tabular, MIL, image).

    ahop cv --config configs/mil.yaml --data.init_args.dataset elephant --repeats 5   # 5 x 10-fold CV
    ahop cv --config configs/mil.yaml --search configs/search/mil.yaml
    ahop cv --resume runs/cv/mil-20261201-101500-3f2a          # continue a stopped run
    ahop cv --config configs/tabular_uci.yaml --selection validation --repeats 3
    ahop cv --config configs/tabular.yaml --selection validation --baselines logreg hist-gb

The command line of :func:`ahop_cli.cv.engine.evaluate` (see :mod:`ahop_cli.evaluate` for the
protocol and the run folder); searches are :class:`ahop_cli.search.OptunaSearch`. Arguments other
than the options below are LightningCLI arguments of ``ahop fit`` (``--config``,
``--model.init_args.dropout 0.2`` ...).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ahop_cli.cv.baselines import BASELINES
from ahop_cli.cv.engine import evaluate, start_run
from ahop_cli.cv.protocol import Protocol
from ahop_cli.cv.report import Evaluation
from ahop_cli.search import OptunaSearch, load_search_file
from ahop_cli.selection import SELECTION_RULES

#: the search that ``--search`` / ``search:`` in a protocol file runs
OPTUNA = OptunaSearch()


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The ``ahop cv`` options of ``argv`` and the remaining (``ahop fit``) arguments."""
    parser = argparse.ArgumentParser(
        prog="ahop cv",
        description="Repeated cross-validation (optionally with an Optuna search) of an ahop "
        "config; other arguments are those of `ahop fit` (--config, --model.init_args.*, ...).",
        allow_abbrev=False,
    )
    parser.add_argument("--protocol", help="YAML with the protocol keys below (flags override)")
    parser.add_argument("--repeats", type=int, help="repeats of the cross-validation (default 1)")
    parser.add_argument("--folds", type=int, help="outer folds (default: data.init_args.num_folds)")
    parser.add_argument("--seed", type=int, help="base seed (default: data.init_args.seed)")
    parser.add_argument(
        "--selection",
        help="model-selection rule (default: the task's: fixed for MIL, validation for tabular, else inner_cv): "
        + " | ".join(SELECTION_RULES),
    )
    parser.add_argument("--inner_folds", type=int, help="inner folds of the training data (5)")
    parser.add_argument("--monitor", help="validation metric that selects (default: the model's)")
    parser.add_argument("--mode", choices=["min", "max"], help="of the monitor (default: by name)")
    parser.add_argument("--search", help="search YAML (space, trials, ...; see ahop_cli.search)")
    parser.add_argument("--trials", type=int, help="trials per search (overrides the YAML)")
    parser.add_argument(
        "--baselines",
        nargs="+",
        metavar="NAME",
        help="also fit these on each fold's training samples, test them on its test samples and "
        "add them to the table: " + " | ".join(BASELINES) + " (lightgbm / xgboost / catboost: "
        "pip install 'ahop[bench]')",
    )
    parser.add_argument("--max_folds", type=int, help="run at most this many folds now")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite file in the run)")
    parser.add_argument("--output_dir", default="runs/cv", help="parent of the run folder")
    parser.add_argument("--resume", help="continue this run folder (skips finished folds)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the folds")
    return parser.parse_known_args(list(argv))


_PROTOCOL_FLAGS = (
    "repeats",
    "folds",
    "seed",
    "selection",
    "inner_folds",
    "monitor",
    "mode",
    "baselines",
)


def protocol_from_options(options: argparse.Namespace) -> Protocol | None:
    """The protocol of the command line: the ``--protocol`` YAML, then the flags (``None`` for a
    ``--resume`` without protocol options: the run's own)."""
    given = [n for n in (*_PROTOCOL_FLAGS, "protocol", "search", "trials") if getattr(options, n)]
    if options.resume and not given:
        return None
    values: dict[str, Any] = {}
    if options.protocol:
        loaded = yaml.safe_load(Path(options.protocol).read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"--protocol {options.protocol}: expected a mapping of protocol keys")
        values.update(loaded)
    for name in _PROTOCOL_FLAGS:
        if getattr(options, name) is not None:
            values[name] = getattr(options, name)
    if options.search:
        values["search"] = load_search_file(options.search)
    if options.trials is not None:
        if not values.get("search"):
            raise ValueError("--trials needs a search (--search FILE or search: in --protocol)")
        values["search"] = {**values["search"], "trials": options.trials}
    return Protocol.from_dict(values)


def main(argv: Sequence[str] | None = None) -> Evaluation:
    """``ahop cv``: run the evaluation of the command line and print its table."""
    options, rest = parse_args(sys.argv[1:] if argv is None else argv)
    protocol = protocol_from_options(options)
    if protocol is None and options.resume is None:
        protocol = Protocol()
    if options.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {options.workers}")
    if options.resume is None and not rest:
        raise ValueError("ahop cv needs a config (--config FILE) or --resume RUN_FOLDER")
    helpers: list[subprocess.Popen] = []
    run_dir = options.resume
    if options.workers > 1:
        if run_dir is None:  # create the run folder first, so the helpers can join it
            run_dir = str(start_run(rest, protocol, options.output_dir, OPTUNA))
        command = [sys.executable, "-m", "ahop_cli.cli", "cv", "--resume", str(run_dir)]
        if options.max_folds is not None:
            command += ["--max_folds", str(options.max_folds)]
        if options.threads is not None:
            command += ["--threads", str(options.threads)]
        if options.storage:
            command += ["--storage", options.storage]
        helpers = [subprocess.Popen(command) for _ in range(options.workers - 1)]
    try:
        evaluation = evaluate(
            rest,
            protocol,
            output_dir=options.output_dir,
            resume=run_dir,
            threads=options.threads,
            storage=options.storage,
            max_folds=options.max_folds,
            search=OPTUNA,
        )
    finally:
        for helper in helpers:
            helper.wait()
    if helpers:  # the helpers' folds too
        evaluation = evaluate(
            [], None, resume=run_dir, max_folds=options.max_folds, log=None, search=OPTUNA
        )
    print(evaluation.table())
    print(f"run folder: {evaluation.run_dir}")
    return evaluation
