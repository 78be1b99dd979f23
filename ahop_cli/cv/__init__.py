"""The cross-validation engine of ``ahop cv``, one module per job.

- :mod:`~ahop_cli.cv.protocol`: what to evaluate and what a fold produced (dataclasses);
- :mod:`~ahop_cli.cv.engine`: the fits of a fold and the fold loop (:func:`~ahop_cli.cv.engine.evaluate`);
- :mod:`~ahop_cli.cv.runs`: run folders, fold claims of several workers, ``--resume``;
- :mod:`~ahop_cli.cv.report`: statistics, the Markdown table, the box plot, ``results.json``;
- :mod:`~ahop_cli.cv.command`: the ``ahop cv`` argument parser.

:mod:`ahop_cli.evaluate` is the stable Python API over these (the engine with the Optuna search
wired in).
"""
