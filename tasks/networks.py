"""A task's network options as one mapping, checked against the network's own signature.

A task that wraps a network of :mod:`ahop` takes its options as ``network: {option: value}``
(in a config: ``model.init_args.network``) instead of re-declaring each of them: the network's
constructor is the one place that names an option, gives its default and documents it, so
adding an option is one edit there. :func:`options_type` turns that signature into the
``TypedDict`` the task annotates ``network`` with, so LightningCLI type-checks every option,
rejects unknown ones and accepts ``--model.init_args.network.<option> VALUE`` on the command
line; :func:`network_options` does the same check for tasks built in Python.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict


def accepted_options(network: Callable[..., Any]) -> list[str]:
    """The keyword arguments ``network`` (a class or function) takes, in signature order."""
    return [
        p.name
        for p in inspect.signature(network).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def options_type(network: type, set_by_task: Iterable[str] = ()) -> type:
    """A ``TypedDict`` (every key optional) of ``network``'s constructor options and their type
    hints, less ``set_by_task``; named ``<Network>Options``."""
    hints = typing.get_type_hints(network.__init__)
    reserved = set(set_by_task)
    fields = {
        name: hints.get(name, Any) for name in accepted_options(network) if name not in reserved
    }
    return TypedDict(f"{network.__name__}Options", fields, total=False)  # type: ignore[operator]


def network_options(
    network: Callable[..., Any],
    options: Mapping[str, Any] | None,
    set_by_task: Iterable[str] = (),
) -> dict[str, Any]:
    """A copy of ``options`` after checking that ``network`` takes every one of them.

    Args:
        network: the network class whose constructor receives the options.
        options: ``{option: value}`` (``None``: no options, every default).
        set_by_task: options the task passes itself (sizes read from the data): naming one
            is an error too.

    Raises:
        ValueError: naming the unknown options and listing the allowed ones.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(
            f"network options must be a mapping {{option: value}}, got {type(options).__name__}"
        )
    reserved = set(set_by_task)
    allowed = [name for name in accepted_options(network) if name not in reserved]
    unknown = [name for name in options if name not in allowed]
    if unknown:
        name = getattr(network, "__name__", str(network))
        taken = [n for n in unknown if n in reserved]
        note = f" ({', '.join(taken)}: set by the task from the data)" if taken else ""
        raise ValueError(
            f"{name} has no option(s) {', '.join(map(str, unknown))}{note}; allowed: "
            f"{', '.join(allowed)}"
        )
    return dict(options)
