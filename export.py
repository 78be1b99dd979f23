"""``python export.py --ckpt_path ... --out ...``: the same as ``ahop export ...``.

The code lives in :mod:`ahop_cli.export`; this file keeps the command working from a checkout.
"""

from ahop_cli.export import (
    FORMATS,
    ProbabilityModel,
    export,
    load_datamodule_state,
    load_task,
    main,
)

__all__ = ["FORMATS", "ProbabilityModel", "export", "load_datamodule_state", "load_task", "main"]

if __name__ == "__main__":
    main()
