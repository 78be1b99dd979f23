"""What cross-validation (``ahop cv``, :mod:`ahop_cli.cv.engine`) needs from a datamodule: a small
runtime-checkable protocol that every datamodule of this package implements, so that a new
datamodule needs no change in the engine.

Besides the members below, the engine addresses a datamodule through its init options (see
:mod:`datamodules.splits`): ``seed`` and ``fold`` (the outer split), ``num_folds`` (``--folds``),
``inner_folds`` / ``inner_fold`` (selection ``inner_cv`` and searches) and the validation share
named by :attr:`CrossValidatable.validation_option`. An option the datamodule does not have is
left alone (or, where the protocol needs it, is a one-line error).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Protocol, runtime_checkable

#: the splits of a set-up datamodule that :meth:`CrossValidatable.split_ids` answers for
SPLITS = ("train", "val", "test")


@runtime_checkable
class CrossValidatable(Protocol):
    """A datamodule that ``ahop cv`` can evaluate.

    Attributes:
        validation_option: name of the init option with the validation share of the non-test
            samples (``0`` trains on all of them: the final fit of ``inner_cv``); ``None`` when
            the datamodule has no such option (then only ``--selection validation`` / ``fixed``
            without a whole-data fit apply).
    """

    validation_option: ClassVar[str | None]

    @property
    def fold_count(self) -> int:
        """Outer folds to iterate (1: a fixed test split; may read the data, not set it up)."""
        ...

    def split_ids(self, split: str) -> list[Any]:
        """Ids of the samples of ``split`` (``train`` | ``val`` | ``test``) after ``setup``:
        the same sample has the same id in every fold, so the engine can check by id that no
        test sample reaches a fit."""
        ...


def require_cross_validatable(datamodule: object) -> CrossValidatable:
    """``datamodule`` itself, checked to implement :class:`CrossValidatable` (one-line error
    naming the missing members otherwise). The members are looked up without calling them (a
    ``fold_count`` property may read the data), unlike ``isinstance`` on Python 3.11."""
    missing = [
        name
        for name in ("validation_option", "fold_count", "split_ids")
        if _missing(datamodule, name)
    ]
    if not missing:
        return datamodule  # type: ignore[return-value]
    raise ValueError(
        f"{type(datamodule).__name__} cannot be cross-validated: it lacks "
        f"{', '.join(missing)} of datamodules.cv.CrossValidatable"
    )


def _missing(obj: object, name: str) -> bool:
    try:
        inspect.getattr_static(obj, name)
    except AttributeError:
        return True
    return False


def check_split(split: str) -> None:
    """A one-line error for a split name other than ``train`` / ``val`` / ``test``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
