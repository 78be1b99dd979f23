"""``python train.py {fit,validate,test,predict,export} --config configs/X.yaml``.

The same entry point as the installed ``ahop`` console script; the code lives in
:mod:`ahop_cli.cli` (this file only keeps the command working from a checkout).
"""

from ahop_cli.cli import AhopCLI, main, run_cli
from ahop_cli.errors import USER_ERRORS, summarize_error

__all__ = ["USER_ERRORS", "AhopCLI", "main", "run_cli", "summarize_error"]

if __name__ == "__main__":
    run_cli()
