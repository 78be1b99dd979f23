"""The ``ahop`` command line: LightningCLI's fit / validate / test / predict, plus ``export``.

``ahop <subcommand> ...`` (the installed console script) and ``python train.py <subcommand> ...``
run the same code (:func:`ahop_cli.cli.run_cli`). This package wires the library (``ahop``), the
datamodules and the tasks together; unlike ``ahop`` it needs Lightning.
"""
