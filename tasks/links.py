"""The data's sizes, given to the task: LightningCLI links and their Python equivalent.

A task needs sizes only its datamodule knows (``num_features``, ``num_classes``, ``image_shape``
...). On the command line, :func:`link_data_sizes` links each datamodule attribute of
:data:`DATA_SIZES` to the task's init argument of the same name
(``link_arguments(..., apply_on="instantiate")``): the datamodule is built first, and the task
receives its sizes as init arguments (saved in ``hparams`` and checkpoints). A link whose
datamodule has no such attribute, or whose task has no such argument, is skipped; the linked
value replaces one set in the config. In Python, ``Task(**data_sizes(datamodule), ...)`` does
the same.
"""

from __future__ import annotations

from typing import Any

#: datamodule attributes that are also task init arguments (same name)
DATA_SIZES = (
    "num_features",
    "num_classes",
    "num_numeric",
    "categorical_cardinalities",
    "image_shape",
    "dim",
    "num_memories",
    "num_training_rows",
)


def link_data_sizes(parser: Any) -> None:
    """Link ``data.<size>`` to ``model.init_args.<size>`` for every name of :data:`DATA_SIZES`
    (``parser``: the ``LightningArgumentParser`` of ``LightningCLI.add_arguments_to_parser``)."""
    for name in DATA_SIZES:
        parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")


def data_sizes(datamodule: Any) -> dict[str, Any]:
    """The sizes of :data:`DATA_SIZES` that ``datamodule`` has, by name (reading one may load the
    data): the init arguments :func:`link_data_sizes` gives the task."""
    return {name: getattr(datamodule, name) for name in DATA_SIZES if hasattr(datamodule, name)}
