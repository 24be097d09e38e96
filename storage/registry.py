"""One registry for every extension point: encoder families, fusion strategies, vector backends, executors.

An entry is the object itself or a "module:attribute" string imported on first use, so naming a strategy or a
backend never loads torch, pymilvus or ray until one is built. An unknown name raises `UnknownNameError`
(a `LookupError` whose message lists the known names); `describe()` is the one shape that every `list_*`
function returns: name -> one-line description. It lives in `storage` because storage imports nothing of ours
and the vector backends register here too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from storage.errors import StorageError

T = TypeVar("T")


class UnknownNameError(StorageError, LookupError):
    """A name that no registry entry has; the message lists the ones that exist."""


class Registry(Generic[T]):
    def __init__(self, what: str) -> None:
        self.what = what  # "encoder family", "fusion strategy", ...: the error messages name it
        self._entries: dict[str, T | str] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, target: T | str, description: str = "") -> None:
        """Add (or replace) `name`: the object, or "module:attribute" to import when first asked for."""
        self._entries[name] = target
        if description or name not in self._descriptions:
            self._descriptions[name] = description

    def decorator(self, name: str, description: str = "") -> Callable[[T], T]:
        """`@REGISTRY.decorator("name", "what it is")` above a class or factory registers it."""

        def add(target: T) -> T:
            self.register(name, target, description)
            return target

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.what} {name!r}; choose from: {', '.join(self.names())}")
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = cast(T, getattr(importlib.import_module(module), attribute))
            self._entries[name] = target
        return target

    def names(self) -> list[str]:
        return list(self._entries)

    def describe(self) -> dict[str, str]:
        return {name: self._descriptions.get(name, "") for name in self._entries}

    def __contains__(self, name: object) -> bool:
        return name in self._entries
