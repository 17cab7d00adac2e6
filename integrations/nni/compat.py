"""Where NNI 3.0 needs care, handled locally (nothing of NNI is patched globally).

- NNI looks up how to wrap a module by its class name in ``PruningSetting.registry``; the
  variational classes (``VariationalLinear``, ``GatedConv2d``...) are registered with NNI's own
  ``PruningSetting.register`` (the extension point its error message names), with the same
  settings NNI uses for the plain layer, when a pruner is first built.
- ``LightningEvaluator.train`` fails with Lightning 2.x (NNI 3.0 assigns the read-only
  ``Trainer.max_steps``), so this pruner refuses it with a message to use ``TorchEvaluator``.
- Evaluators record the optimizer's parameters by name from the "pure" model the first time a
  compressor sees them; :func:`record_optimizer_parameters` does it before the layers are made
  variational, so the traced optimizer keeps training theta and the biases.
"""

from __future__ import annotations

import torch.nn as nn
from nni.compression.base.setting import PruningSetting
from nni.compression.utils.evaluator import Evaluator, LightningEvaluator

from vs_plugin.errors import ConfigError
from vs_plugin.layers.registry import GRANULARITIES, layer_kind, layer_kind_names


def register_variational_settings() -> None:
    """Tell NNI how to wrap every variational layer class: like the plain layer it replaces."""
    for kind_name in layer_kind_names():
        kind = layer_kind(kind_name)
        plain_setting = PruningSetting.registry.get(kind.plain.__name__, PruningSetting.default_setting)
        for granularity in GRANULARITIES:
            cls = kind.variational_type(granularity)
            for variant in (cls, *cls.__subclasses__()):  # the depthwise gated convolutions too
                if variant.__name__ not in PruningSetting.registry:
                    PruningSetting.register(variant.__name__, plain_setting)


def check_evaluator(evaluator: object) -> Evaluator:
    """The evaluator, if this pruner can train through it; a clear error otherwise."""
    if evaluator is None:
        raise ConfigError("VariationalStudentPruner trains the student: pass an evaluator (nni.compression.TorchEvaluator)")
    if isinstance(evaluator, LightningEvaluator):
        raise ConfigError(
            "LightningEvaluator does not work with NNI 3.0 and Lightning 2.x (NNI sets the read-only Trainer.max_steps); "
            "use nni.compression.TorchEvaluator with your training loop instead"
        )
    if not isinstance(evaluator, Evaluator):
        raise ConfigError(f"evaluator must be an NNI Evaluator (e.g. TorchEvaluator), got {type(evaluator).__name__}")
    return evaluator


def record_optimizer_parameters(evaluator: Evaluator, model: nn.Module) -> None:
    """Let the evaluator record its optimizers' parameters by name on ``model`` (once)."""
    if not evaluator._initialization_complete:
        evaluator._init_optimizer_helpers(model)


__all__ = ["register_variational_settings", "check_evaluator", "record_optimizer_parameters"]
