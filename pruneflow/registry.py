"""A name -> object registry whose lookups fail with the valid choices spelled out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def check_choice(kind: str, value: object, choices: Iterable[object]) -> None:
    """Raise ``ValueError`` naming ``value`` and the valid ``choices`` unless it is one of them."""
    choices = list(choices)
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {kind} {value!r}; valid choices: {valid}")


class Registry(Generic[T]):
    """Objects registered by name, e.g. ``STRATEGIES["MP"]``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``name``."""

        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorate

    def __getitem__(self, name: str) -> T:
        check_choice(self.kind, name, self._items)
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._items)
