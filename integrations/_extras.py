"""The optional dependencies of the integrations, and the one-line error naming the extra to install.

``nni`` and ``torch-pruning`` are extras (``pip install 'vs-plugin[nni]'``, ``'vs-plugin[torch-pruning]'``,
or ``'vs-plugin[all]'``); the core (``vs_plugin``) never imports them.
"""

from __future__ import annotations

import importlib

from vs_plugin.errors import MissingExtraError

#: import name -> (what needs it, the extra that installs it)
EXTRAS = {"nni": ("the NNI integration", "nni"), "torch_pruning": ("the torch-pruning integration", "torch-pruning")}


def require(module: str) -> None:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that installs it."""
    feature, extra = EXTRAS[module]
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{feature} needs the {extra!r} package, which is not installed: pip install 'vs-plugin[{extra}]'"
        ) from None


__all__ = ["EXTRAS", "require"]
