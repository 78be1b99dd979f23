"""A LightningCLI config as a plain dict: read / change options by dotted name, write it as YAML.
The evaluation engine and the search change configs this way (types stay those of YAML, and what
runs is exactly what is written to the run folders). Only dicts here: going from a built CLI to a
dict and back is :func:`ahop_cli.lightning_cli.dump_config` / :func:`~ahop_cli.lightning_cli.build_cli`."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from tasks.class_paths import import_class

MISSING = object()


def to_yaml(config: Mapping[str, Any]) -> str:
    """``config`` as a YAML document (keys in their order)."""
    return yaml.safe_dump(dict(config), sort_keys=False)


def instantiate(entry: Mapping[str, Any]) -> Any:
    """``class_path(**init_args)`` of a config entry whose arguments are plain values (a
    datamodule: cheaper than building the whole CLI)."""
    try:
        cls = import_class(entry["class_path"])
    except ValueError:
        raise ValueError(f"cannot import {entry['class_path']!r}") from None
    return cls(**dict(entry.get("init_args") or {}))


def option_names(config: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every dotted option name of ``config`` (leaves and the dicts above them)."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, Mapping):
            yield from option_names(value, f"{name}.")


def get_option(config: Mapping[str, Any], name: str, default: Any = MISSING) -> Any:
    """The value of dotted option ``name`` (``default`` if absent; an error without one)."""
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not MISSING:
                return default
            raise ValueError(unknown_option_message(config, name))
        node = node[part]
    return node


_ABSENT = object()


def has_option(config: Mapping[str, Any], name: str) -> bool:
    return get_option(config, name, _ABSENT) is not _ABSENT


def unknown_option_message(config: Mapping[str, Any], name: str) -> str:
    names = [n for n in option_names(config) if "." in n]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    section = name.rsplit(".", 1)[0]
    siblings = get_option(config, section, None) if "." in name else None
    if isinstance(siblings, Mapping) and not close:
        hint = f"; options of {section}: {', '.join(siblings)}"
    return f"unknown option {name!r} in this config{hint}"


def set_option(config: dict[str, Any], name: str, value: Any) -> None:
    """Set dotted option ``name`` (it must exist: a typo is an error, not a new key)."""
    *parents, leaf = name.split(".")
    node = get_option(config, ".".join(parents)) if parents else config
    if not isinstance(node, dict) or leaf not in node:
        raise ValueError(unknown_option_message(config, name))
    node[leaf] = value


def with_edits(config: Mapping[str, Any], edits: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with the dotted ``edits`` applied in order."""
    edited = copy.deepcopy(dict(config))
    for name, value in edits.items():
        set_option(edited, name, value)
    return edited


def callback_entries(config: Mapping[str, Any]) -> list[Any]:
    """The ``trainer.callbacks`` entries as a list (a config may give one dict)."""
    callbacks = get_option(config, "trainer.callbacks", None)
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, list) else [callbacks]


def without_callbacks(config: Mapping[str, Any], kinds: tuple[type, ...]) -> list[Any]:
    """``trainer.callbacks`` without the entries whose class is a subclass of ``kinds``."""
    kept = []
    for entry in callback_entries(config):
        try:
            cls = import_class(entry.get("class_path", "")) if isinstance(entry, Mapping) else None
        except ValueError:  # a class this process cannot import is kept as it is
            cls = None
        if cls is None or not issubclass(cls, kinds):
            kept.append(entry)
    return kept
