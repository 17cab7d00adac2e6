"""User-facing errors.

Every error a user can cause by bad input is a subclass of :class:`VSPluginError`; the command
line prints its message on one line and exits with status 2. Anything else is a bug.
"""

from __future__ import annotations


class VSPluginError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class ConfigError(VSPluginError, ValueError):
    """An invalid setting (value out of range, unknown choice, unknown key)."""


class UnknownNameError(ConfigError):
    """A name (model, dataset, method, ...) that no registry knows."""

    def __init__(self, kind: str, name: str, known: "list[str] | tuple[str, ...]", hint: str = "") -> None:
        listed = ", ".join(sorted(known))
        message = f"unknown {kind} {name!r}; known {kind}s: {listed}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.known = tuple(known)


class DataError(VSPluginError):
    """Missing or malformed data files, or data that does not fit the models."""


class ModelError(VSPluginError):
    """A model that cannot be built, or whose shape does not fit the data or its partner."""


class CheckpointError(VSPluginError):
    """A checkpoint file that is missing, corrupt, or does not match the model or run."""


class TrainingDiverged(VSPluginError):
    """The loss became NaN or infinite during training."""


class TrainingStalled(VSPluginError):
    """Training runs but the student's variational parameters never change (not in the optimizer)."""


class OutputError(VSPluginError):
    """An output folder that cannot be written (read-only, full disk) or is in use by another run."""


class MissingExtraError(VSPluginError, ImportError):
    """A feature needs an optional dependency (an install extra) that is not installed."""
