"""Capture intermediate features of a model without changing it (for the locality-preserving loss).

The default feature is the penultimate one: the input of the classifier head (for timm models
that is ``forward_head(x, pre_logits=True)``; for torchvision and plain models the input of the
last ``nn.Linear``). A named layer's output can be taken instead.
"""

from __future__ import annotations

from typing import Optional

import torch.nn as nn
from torch import Tensor

from .errors import ConfigError
from .variationalize import head_name


class FeatureTap:
    """Records the feature of every forward pass of ``model``; :meth:`take` hands it over once.

    Args:
        model: the network to tap.
        layer: module name whose *output* is the feature; None for the input of the head.

    Use as a context manager (or call :meth:`remove`) to take the hook off again.
    """

    def __init__(self, model: nn.Module, layer: Optional[str] = None) -> None:
        modules = dict(model.named_modules())
        if layer is None:
            name = head_name(model)
            if name is None:
                raise ConfigError(f"{type(model).__name__} has no Linear head to take penultimate features from; name a layer")
            self._handle = modules[name].register_forward_pre_hook(self._record_input)
        else:
            if layer not in modules:
                raise ConfigError(f"feature layer {layer!r} is not a module of {type(model).__name__}")
            self._handle = modules[layer].register_forward_hook(self._record_output)
        self.layer = layer
        self._features: Optional[Tensor] = None

    def _record_input(self, module: nn.Module, args: tuple) -> None:
        self._features = args[0]

    def _record_output(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self._features = output[0] if isinstance(output, (tuple, list)) else output

    def take(self) -> Tensor:
        """The feature of the last forward pass (raises if none happened since the last take)."""
        if self._features is None:
            raise RuntimeError("no forward pass recorded since the last take()")
        features, self._features = self._features, None
        return features

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self) -> "FeatureTap":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
