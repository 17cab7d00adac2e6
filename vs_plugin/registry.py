"""The one registry type: models, datasets, compression methods and study metrics by name.

A :class:`Registry` maps a name to an object (a builder, a loader, a method factory, a metric)
plus a one-line usage text. Registering a taken name is an error naming both sources, never a
silent override. A registry may also read a Python entry-point group, so that other packages add
names from their ``pyproject.toml``::

    [project.entry-points."vs_plugin.methods"]
    my_method = "my_package.methods:MyMethod"

Entry points are loaded only when their name is asked for, so listing names imports nothing.
"""

from __future__ import annotations

from importlib import metadata
from typing import Generic, Iterator, Optional, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects of one kind, loud on collisions, optionally fed by an entry-point group.

    Args:
        kind: what the names are ("model family", "dataset", "compression method", ...), used
            in every error message.
        entry_point_group: a ``importlib.metadata`` entry-point group read lazily, or None.
        hint: appended to the unknown-name error (where more names come from).
    """

    def __init__(self, kind: str, entry_point_group: Optional[str] = None, hint: str = "") -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.hint = hint
        self._entries: dict[str, tuple[T, str, str]] = {}

    def register(self, name: str, value: T, usage: str = "", source: str = "register") -> None:
        """Add ``name``; an error when it is already registered here or by an entry point."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is already registered (by {self._entries[name][2]})")
        provided = self._entry_points().get(name)
        if provided is not None:
            raise ConfigError(f"{self.kind} {name!r} is already provided by {provided[1]}")
        self._entries[name] = (value, usage or name, source)

    def unregister(self, name: str) -> None:
        """Undo :meth:`register` (entry-point names cannot be removed)."""
        self._entries.pop(name, None)

    def _entry_points(self) -> dict[str, tuple[metadata.EntryPoint, str]]:
        """Name -> (entry point, providing distribution); conflicting duplicates are an error."""
        if self.entry_point_group is None:
            return {}
        found: dict[str, tuple[metadata.EntryPoint, str]] = {}
        for entry_point in metadata.entry_points(group=self.entry_point_group):
            dist = entry_point.dist.name if entry_point.dist is not None else "an unknown package"
            previous = found.get(entry_point.name)
            if previous is not None and previous[0].value != entry_point.value:
                raise ConfigError(
                    f"two {self.kind}s are registered as {entry_point.name!r}: {previous[0].value} "
                    f"(from {previous[1]}) and {entry_point.value} (from {dist}); uninstall one of them"
                )
            found[entry_point.name] = (entry_point, dist)
        return found

    def names(self) -> tuple[str, ...]:
        """Every known name, sorted (imports nothing)."""
        return tuple(sorted(set(self._entries) | set(self._entry_points())))

    def usages(self) -> dict[str, str]:
        """Name -> usage text of the names registered in this process (entry points: their target)."""
        usages = {name: f"{name} ({ep.value})" for name, (ep, _) in self._entry_points().items()}
        usages.update({name: usage for name, (_, usage, _) in self._entries.items()})
        return usages

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, known: Optional[list[str]] = None) -> T:
        """The object registered as ``name``; an unknown name is an error listing the known ones."""
        if name in self._entries:
            return self._entries[name][0]
        entry_points = self._entry_points()
        if name not in entry_points:
            raise UnknownNameError(self.kind, name, known if known is not None else self.names(), hint=self.hint)
        entry_point, dist = entry_points[name]
        try:
            return entry_point.load()
        except ImportError as error:
            raise ConfigError(f"{self.kind} {name!r} (from {dist}) cannot be loaded: {error}") from None

    def source(self, name: str) -> str:
        """Who registered ``name`` (the distribution for entry points)."""
        if name in self._entries:
            return self._entries[name][2]
        entry_points = self._entry_points()
        return entry_points[name][1] if name in entry_points else "nobody"


__all__ = ["Registry"]
