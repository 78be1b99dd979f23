"""Classes named by their import path (``class_path`` in configs and checkpoints)."""

from __future__ import annotations

import importlib


def import_class(class_path: str) -> type:
    """The class (or any attribute) named ``package.module.Name``.

    Raises:
        ValueError: it cannot be imported (no module, no such name, no dot in the path).
    """
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f"cannot import {class_path!r} (is the package that defines it installed?)"
        ) from None
