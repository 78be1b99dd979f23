"""A tiny name -> class registry, shared by similarities, separations and variants.

Configs name parts by string (``similarity: manhattan``); the registry turns the name into an
instance, passing on only the keyword arguments that class accepts, so one set of layer options
(``beta``, ``order``, ``k`` ...) can feed whichever part the user picked.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes (or factories) of one kind of part.

    Args:
        kind: what the registry holds, used in error messages ("similarity", "separation").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a class under ``name``."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        """The class registered under ``name``; ``ValueError`` listing the allowed names otherwise."""
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed values: {', '.join(self.names())}"
            )
        return self._entries[name]

    def options(self, name: str) -> frozenset[str]:
        """The keyword arguments the constructor of ``name`` accepts."""
        return _keyword_names(self.get(name))

    def build(self, name: str, **kwargs: Any) -> T:
        """Instantiate ``name`` with the subset of ``kwargs`` its constructor names explicitly.

        ``None`` values are dropped so the class's own defaults apply.
        """
        factory = self.get(name)
        named = _keyword_names(factory)
        chosen = {k: v for k, v in kwargs.items() if v is not None and k in named}
        return factory(**chosen)


@cache
def _keyword_names(factory: Callable[..., Any]) -> frozenset[str]:
    # inspect.signature costs tens of microseconds: more than a small retrieval step itself
    return frozenset(
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
