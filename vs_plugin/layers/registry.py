"""Which plain layer types can be made variational, and by which classes.

Keyed by the plain type's class name (the name used in configs, as in NNI's ``op_types``).
Registration is loud on collisions: registering a name twice raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..errors import UnknownNameError
from ..registry import Registry
from .base import VariationalLayer
from .channel import GatedConv1d, GatedConv2d, GatedLinear
from .weight import VariationalConv1d, VariationalConv2d, VariationalLinear

GRANULARITIES = ("weight", "channel")


@dataclass(frozen=True)
class LayerKind:
    """A plain layer type and its variational replacements, one per granularity."""

    plain: type[nn.Module]
    weight: type[VariationalLayer]
    channel: type[VariationalLayer]

    def variational_type(self, granularity: str) -> type[VariationalLayer]:
        if granularity not in GRANULARITIES:
            raise UnknownNameError("granularity", granularity, GRANULARITIES)
        return getattr(self, granularity)


LAYER_KINDS: Registry[LayerKind] = Registry("layer type")


def register_layer_kind(name: str, kind: LayerKind) -> None:
    """Make a plain layer type convertible. Raises if ``name`` is already registered."""
    LAYER_KINDS.register(name, kind, source=kind.plain.__name__)


def layer_kind(name: str) -> LayerKind:
    """The registered kind called ``name`` (e.g. ``"Conv2d"``); a clear error lists the known ones."""
    return LAYER_KINDS.get(name)


def layer_kind_names() -> tuple[str, ...]:
    return LAYER_KINDS.names()


def kind_name_of(module: nn.Module) -> str | None:
    """Registered kind name of a module whose type is exactly a registered plain type, else None.

    Exact type match on purpose: subclasses such as timm's ``Conv2dSame`` or the
    ``NonDynamicallyQuantizableLinear`` inside ``nn.MultiheadAttention`` change the forward or
    bypass it, so replacing them would change the model.
    """
    for name in LAYER_KINDS.names():
        if type(module) is LAYER_KINDS.get(name).plain:
            return name
    return None


register_layer_kind("Linear", LayerKind(nn.Linear, VariationalLinear, GatedLinear))
register_layer_kind("Conv1d", LayerKind(nn.Conv1d, VariationalConv1d, GatedConv1d))
register_layer_kind("Conv2d", LayerKind(nn.Conv2d, VariationalConv2d, GatedConv2d))
