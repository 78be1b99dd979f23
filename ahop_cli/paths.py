"""Files and folders the command line reads or writes, checked up front so that a bad path is a
one-line error naming the option, before any data is loaded or any epoch runs."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

CONFIG_SUFFIXES = (".yaml", ".yml")


def config_folders() -> list[Path]:
    """Where ``--config NAME.yaml`` is looked for after the path itself: ``./configs``, then the
    configs that ship with the package (``ahop_cli/configs`` in a wheel, ``configs/`` of a
    checkout)."""
    package = Path(str(resources.files("ahop_cli")))
    shipped = package / "configs"  # in a wheel (pyproject maps configs/ there)
    return [Path("configs"), shipped if shipped.is_dir() else package.parent / "configs"]


def resolve_config(value: str) -> str:
    """The config file ``value`` names: the path itself, else ``configs/<value>``, else the
    packaged ``<value>`` (``.yaml`` may be left out). Inline YAML (text with a line break, which
    LightningCLI's ``--config`` also takes; the evaluation engine builds its fits that way) is
    returned as it is.

    Raises:
        FileNotFoundError: none of them exists (all candidates listed).
    """
    if "\n" in value:
        return value
    path = Path(value)
    if path.is_file():
        return value
    names = [path] if path.suffix in CONFIG_SUFFIXES else [path, path.with_suffix(".yaml")]
    candidates = [*names[1:]] + [folder / name for folder in config_folders() for name in names]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    tried = ", ".join(dict.fromkeys(str(c) for c in [path, *candidates]))
    shipped = sorted(
        p.name for folder in config_folders() if folder.is_dir() for p in folder.glob("*.yaml")
    )
    raise FileNotFoundError(
        f"--config {value}: no such config file (tried {tried}); shipped configs: "
        f"{', '.join(dict.fromkeys(shipped)) or 'none found'}"
    )


def _explain(error: OSError) -> str:
    return error.strerror or type(error).__name__


def check_writable_dir(folder: str | Path, option: str) -> None:
    """Create ``folder`` if needed and check a file can be written in it.

    Raises:
        ValueError: it is a file, lies under a file, or cannot be created / written (named with
            the option that set it).
    """
    folder = Path(folder)
    blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(
            f"{option} {folder}: {blocker} is a file, not a folder; choose another folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ahop-write-test-"):
            pass
    except OSError as error:
        raise ValueError(
            f"{option} {folder}: cannot write there ({_explain(error)}); choose a writable folder"
        ) from None


def check_writable_file(path: str | Path, option: str) -> None:
    """Check that ``path`` can be (over)written: not a folder, in a writable folder.

    Raises:
        ValueError: as :func:`check_writable_dir`, or ``path`` is a folder / a read-only file.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    check_writable_dir(path.parent if str(path.parent) else Path("."), option)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{option} {path}: the file exists and is read-only")
