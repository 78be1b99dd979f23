"""Argument checks shared by the modules of :mod:`ahop`, with the error messages users see."""

from __future__ import annotations


def check_int(value: object, name: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= ``minimum`` (``True`` / ``False``
    are not integers here, although Python's ``bool`` subclasses ``int``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_positive_ints(**values: object) -> None:
    """Raise ``ValueError`` naming the first argument that is not an integer >= 1 (bools
    rejected)."""
    for name, value in values.items():
        check_int(value, name)
