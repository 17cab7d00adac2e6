"""Compression methods by name: the one :class:`vs_plugin.registry.Registry` type, fed by the
``vs_plugin.methods`` entry-point group.

A package adds methods in its ``pyproject.toml``::

    [project.entry-points."vs_plugin.methods"]
    my_method = "my_package.methods:MyMethod"

The value names a class (instantiated without arguments) or a zero-argument factory returning an
object with ``plan`` and ``run`` (:class:`vs_plugin.compare.method.CompressionMethod`). Names
are loaded only when used, so listing them imports nothing. Two different objects under one
name are an error naming both, never a silent override.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from ..registry import Registry
from .method import CompressionMethod

ENTRY_POINT_GROUP = "vs_plugin.methods"
MethodFactory = Callable[[], CompressionMethod]

METHODS: Registry[MethodFactory] = Registry(
    "compression method", ENTRY_POINT_GROUP,
    hint=f"methods come from the {ENTRY_POINT_GROUP!r} entry-point group; reinstall vs-plugin if one is missing",
)


def register_method(name: str, factory: MethodFactory, source: str = "register_method") -> None:
    """Register a method in this process (tests, notebooks); loud when ``name`` is taken."""
    METHODS.register(name, factory, source=source)


def unregister_method(name: str) -> None:
    """Undo :func:`register_method` (entry-point methods cannot be removed)."""
    METHODS.unregister(name)


def method_names() -> tuple[str, ...]:
    """Every known method name, sorted (imports no method)."""
    return METHODS.names()


def get_method(name: str) -> CompressionMethod:
    """The method registered as ``name``; an unknown name is an error listing the known ones."""
    factory = METHODS.get(name)
    method = factory() if callable(factory) else factory
    if not isinstance(method, CompressionMethod):
        raise ConfigError(f"compression method {name!r} from {METHODS.source(name)} has no plan()/run(); it cannot be used")
    return method


__all__ = ["ENTRY_POINT_GROUP", "METHODS", "register_method", "unregister_method", "method_names", "get_method", "MethodFactory"]
