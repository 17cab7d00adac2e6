"""Compression methods by name, discovered through the ``vs_plugin.methods`` entry-point group.

A package adds methods in its ``pyproject.toml``::

    [project.entry-points."vs_plugin.methods"]
    my_method = "my_package.methods:MyMethod"

The value names a class (instantiated without arguments) or a zero-argument factory returning an
object with ``plan`` and ``run`` (:class:`vs_plugin.compare.method.CompressionMethod`). Names
are loaded only when used, so listing them imports nothing. Two different objects under one
name are an error naming both, never a silent override.
"""

from __future__ import annotations

from importlib import metadata
from typing import Callable

from ..errors import ConfigError, UnknownNameError
from .method import CompressionMethod

ENTRY_POINT_GROUP = "vs_plugin.methods"
MethodFactory = Callable[[], CompressionMethod]

_registered: dict[str, tuple[MethodFactory, str]] = {}


def _entry_points() -> dict[str, tuple[metadata.EntryPoint, str]]:
    """Name -> (entry point, providing distribution), raising on conflicting duplicates."""
    found: dict[str, tuple[metadata.EntryPoint, str]] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist.name if entry_point.dist is not None else "an unknown package"
        previous = found.get(entry_point.name)
        if previous is not None and previous[0].value != entry_point.value:
            raise ConfigError(
                f"two compression methods are registered as {entry_point.name!r}: {previous[0].value} "
                f"(from {previous[1]}) and {entry_point.value} (from {dist}); uninstall one of them"
            )
        found[entry_point.name] = (entry_point, dist)
    return found


def register_method(name: str, factory: MethodFactory, source: str = "register_method") -> None:
    """Register a method in this process (tests, notebooks); loud when ``name`` is taken."""
    if name in _registered:
        raise ConfigError(f"compression method {name!r} is already registered (by {_registered[name][1]})")
    entry_points = _entry_points()
    if name in entry_points:
        raise ConfigError(f"compression method {name!r} is already provided by {entry_points[name][1]}")
    _registered[name] = (factory, source)


def unregister_method(name: str) -> None:
    """Undo :func:`register_method` (entry-point methods cannot be removed)."""
    _registered.pop(name, None)


def method_names() -> tuple[str, ...]:
    """Every known method name, sorted (imports no method)."""
    return tuple(sorted(set(_entry_points()) | set(_registered)))


def _instantiate(name: str, factory: object, source: str) -> CompressionMethod:
    method = factory() if callable(factory) else factory
    if not isinstance(method, CompressionMethod):
        raise ConfigError(f"compression method {name!r} from {source} has no plan()/run(); it cannot be used")
    return method


def get_method(name: str) -> CompressionMethod:
    """The method registered as ``name``; an unknown name is an error listing the known ones."""
    if name in _registered:
        factory, source = _registered[name]
        return _instantiate(name, factory, source)
    entry_points = _entry_points()
    if name not in entry_points:
        raise UnknownNameError(
            "compression method", name, method_names(),
            hint=f"methods come from the {ENTRY_POINT_GROUP!r} entry-point group; reinstall vs-plugin if one is missing",
        )
    entry_point, dist = entry_points[name]
    try:
        factory = entry_point.load()
    except ImportError as error:
        raise ConfigError(f"compression method {name!r} (from {dist}) cannot be loaded: {error}") from None
    return _instantiate(name, factory, dist)


__all__ = ["ENTRY_POINT_GROUP", "register_method", "unregister_method", "method_names", "get_method", "MethodFactory"]
