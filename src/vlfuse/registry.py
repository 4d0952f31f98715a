"""Flat, one-level registries: a design registers itself with a decorator in its own file.

Example:
    >>> CONNECTORS = Registry("connector")
    >>> @CONNECTORS.register("linear", LinearConfig)
    ... class LinearConnector(nn.Module): ...
    >>> CONNECTORS.get("linear").cls
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered design: the class that builds it and the dataclass that configures it."""

    name: str
    cls: type[T]
    config_cls: type | None


class Registry(Generic[T]):
    """Maps a short name (used in YAML as ``kind:``) to a class and its config dataclass."""

    def __init__(self, slot: str) -> None:
        self.slot = slot
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config_cls: type | None = None) -> Callable[[type[T]], type[T]]:
        """Class decorator that adds ``cls`` under ``name``; a name can be registered once."""

        def deco(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.slot} {name!r} is registered twice ({self._entries[name].cls} and {cls})")
            self._entries[name] = Entry(name, cls, config_cls)
            return cls

        return deco

    def get(self, name: str) -> Entry[T]:
        """The entry for ``name``; an unknown name raises with the list of choices."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.slot} kind {name!r}; choices are: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def build(self, config: Any, *args: Any, **kwargs: Any) -> T:
        """Instantiate the design named by ``config.kind`` with ``(config, *args, **kwargs)``."""
        return self.get(config.kind).cls(config, *args, **kwargs)


ENCODERS: Registry = Registry("encoder")
CONNECTORS: Registry = Registry("connector")
INJECTIONS: Registry = Registry("injection")
MODELS: Registry = Registry("model")  # model kinds (vlfuse.kinds): the decoder VLM, the dual encoder, ...
