"""Errors the datamodules raise for data a user has to provide or fix (the CLI prints them as one
line); anything else escaping a datamodule is a bug."""

from __future__ import annotations


class DataUnavailableError(RuntimeError):
    """The data is neither available locally nor downloadable (e.g. offline without a cache)."""
