"""Name -> plug-in registries, filled by the plug-ins where they are defined.

A method, positive generator or compat method registers itself in its own file; its package's
``__init__`` imports every module of the package (:func:`import_submodules`), so adding a plug-in
is adding one file. The recipe loader looks plug-ins up by name and gets a one-line error with the
closest valid name for a typo.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from ..errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names (and aliases) to plug-ins of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, item: T, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key in self._items or key in self._aliases:
                raise RuntimeError(f"{self.kind} '{key}' is registered twice")
        self._items[name] = item
        for a in aliases:
            self._aliases[a] = name
        return item

    def canonical(self, name: str) -> str:
        return self._aliases.get(name, name)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __getitem__(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items) + list(self._aliases)

    def items(self):
        return self._items.items()

    def lookup(self, name: object, where: str) -> T:
        """The plug-in called ``name``, or :class:`ConfigError` naming ``where`` and the closest name."""
        if isinstance(name, str) and name in self:
            return self[name]
        valid = self.names()
        match = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{match[0]}'?" if match else f"; valid: {', '.join(sorted(valid))}"
        raise ConfigError(f"{where}: unknown {self.kind} '{name}'{hint}")


def import_submodules(package: str, path) -> None:
    """Import every module of ``package`` (whose ``__path__`` is ``path``) so each registers itself."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
