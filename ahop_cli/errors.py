"""One line per user error: what the CLI prints after ``error:``, and the exit it takes."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from argparse import ArgumentError
from collections.abc import Iterator

from lightning.fabric.utilities.exceptions import MisconfigurationException

from datamodules.errors import DataUnavailableError

#: errors that describe a bad config, bad data or a bad path; anything else is a bug and keeps
#: its traceback
USER_ERRORS = (
    ArgumentError,
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    DataUnavailableError,
    MisconfigurationException,
)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a :data:`USER_ERRORS` exception into ``error: <one line>`` on stderr and exit
    status 1, unless ``AHOP_DEBUG`` is set (then the traceback is kept)."""
    try:
        yield
    except USER_ERRORS as error:
        if os.environ.get("AHOP_DEBUG"):
            raise
        sys.exit(f"error: {summarize_error(error)}")


_UNION_HEADER = "Does not validate against any of the Union subtypes"
_CLASS_PATH_PROBLEM = re.compile(r"Problem with given class_path '([^']+)':\s*")


def summarize_error(error: BaseException) -> str:
    """One line for a config / data error.

    jsonargparse wraps an exception raised while it checks a ``class_path`` (a ``ValueError`` in a
    model's ``__init__``, an unknown option) in a multi-line report on every member of the
    ``Union[Module, None]`` type; keep only the reasons, which are what the user has to fix.
    """
    message = str(error)
    if _UNION_HEADER not in message:
        return " ".join(message.split())
    key = re.match(r'Parser key "([^"]+)"', message)
    reasons = []
    in_errors = False
    for line in message.splitlines():
        stripped = line.strip()
        if stripped == "Errors:":
            in_errors = True
        elif in_errors and stripped.startswith("- "):
            reasons.append(stripped[2:])
        elif in_errors and reasons and line.startswith(" " * 6):
            reasons[-1] += " " + stripped  # continuation of the previous reason
        elif in_errors:
            in_errors = False
    reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
    reasons = [_CLASS_PATH_PROBLEM.sub(r"\1: ", r) for r in reasons] or [message]
    prefix = f"{key.group(1)}: " if key else ""
    return prefix + "; ".join(" ".join(r.split()) for r in reasons)
