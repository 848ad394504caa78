"""A tiny timm-style registry: filled by a decorator, duplicates refused, glob-listable."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from benchmark.errors import choices_error

T = TypeVar("T")


class DuplicateName(ValueError):
    """A name registered twice (a ValueError, as before: a programming error, unless a
    user's plugin caused it, where benchmark.run.plugins turns it into a UserError)."""


def source_of(obj: object) -> str:
    """Where a registered object comes from: its module, and the module's file if known."""
    module = getattr(obj, "__module__", None) or "?"
    path = getattr(sys.modules.get(module), "__file__", None)
    return f"{module} ({path})" if path else module


class Registry(Generic[T]):
    """Maps names to objects (classes or factories) for one extension point."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``. Refuses a name registered twice."""

        def wrap(obj: T) -> T:
            if not isinstance(name, str) or not name or not name.isprintable():  # names become rows and paths
                raise ValueError(
                    f"{self.kind} name {name!r} from {source_of(obj)} is empty or holds a control character"
                )
            if name in self._items:
                raise DuplicateName(
                    f"{self.kind} {name!r} is already registered by {source_of(self._items[name])}; "
                    f"refused from {source_of(obj)}: rename one of them"
                )
            self._items[name] = obj
            return obj

        return wrap

    def unregister(self, name: str) -> None:
        """Remove a name (used by tests that register toy entries)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """Look a name up; an unknown name is a UserError naming the valid choices."""
        try:
            return self._items[name]
        except KeyError:
            raise choices_error(self.kind, name, self._items) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a glob, like ``timm.list_models('*vit*')``."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
