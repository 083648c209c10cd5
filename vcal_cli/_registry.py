"""One generic registry for every open set of choices (data sources, heads, corruptions, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from vcal_cli.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, with a description for listings and an error that lists the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, tuple[T, str]] = {}

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = (obj, description)
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name][0]
        except KeyError:
            raise UsageError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self, name: str) -> str:
        return self._items[name][1]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
