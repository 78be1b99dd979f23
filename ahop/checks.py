"""Argument checks shared by the modules of :mod:`ahop`, with the error messages users see."""

from __future__ import annotations


def check_positive_ints(**values: object) -> None:
    """Raise ``ValueError`` naming the first argument that is not an integer >= 1."""
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
