"""The command line: ``ahop {fit,validate,test,predict,export,cv,search} ...`` (= ``python train.py
...``).

``fit`` / ``validate`` / ``test`` / ``predict`` are LightningCLI's subcommands
(:mod:`ahop_cli.lightning_cli`, re-exported here: :class:`AhopCLI`, :func:`main`); the others are
dispatched by :data:`EXTRA_COMMANDS` to their module's ``main(argv)`` before LightningCLI parses
anything, so they share one error handling (:func:`run_cli`, the console entry point).

This module is the top of the package's import graph: it imports the commands, and none of them
imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ahop_cli import export, search
from ahop_cli.cv import command as cv_command
from ahop_cli.errors import one_line_errors
from ahop_cli.lightning_cli import (
    DATA_CLASSES,
    TASK_CLASSES,
    TRAINER_DEFAULTS,
    AhopCLI,
    check_output_folders,
    check_trainer_options,
    class_options_help,
    extended_help,
    main,
    resolve_config_args,
)

__all__ = [
    "DATA_CLASSES",
    "EXTRA_COMMANDS",
    "TASK_CLASSES",
    "TRAINER_DEFAULTS",
    "AhopCLI",
    "check_output_folders",
    "check_trainer_options",
    "class_options_help",
    "extended_help",
    "main",
    "resolve_config_args",
    "run_cli",
]

#: subcommands that are not LightningCLI's: name -> runner of the remaining arguments
EXTRA_COMMANDS: dict[str, Callable[[list[str]], object]] = {
    "export": export.main,
    "cv": cv_command.main,
    "search": search.main,
}

_LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_cli(argv: list[str] | None = None) -> None:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); configuration, data and path errors
    end with a one-line ``error: ...`` message and exit status 1, not a traceback (set
    ``AHOP_DEBUG=1`` to see it)."""
    args = sys.argv[1:] if argv is None else list(argv)
    with one_line_errors():
        if args and args[0] in EXTRA_COMMANDS:
            EXTRA_COMMANDS[args[0]](args[1:])
            return
        wants_help = (
            bool(args) and args[0] in _LIGHTNING_SUBCOMMANDS and bool({"-h", "--help"} & set(args))
        )
        try:
            main(None if argv is None else args, exit_on_error=False)
        except SystemExit as done:
            if wants_help and not done.code:
                print(extended_help(resolve_config_args(args)))
            raise


if __name__ == "__main__":
    run_cli()
