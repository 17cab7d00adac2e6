"""Turn any ``nn.Module`` into a variational student in place, and back.

``variationalize(model, config)`` replaces every selected ``nn.Linear`` / ``nn.Conv1d`` /
``nn.Conv2d`` with its variational counterpart (theta initialised from the layer's weights);
``finalize(model)`` replaces them with plain layers holding the pruned weights, so the result's
``state_dict`` loads into the original architecture.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import torch.nn as nn
from torch import Tensor

from .errors import ConfigError
from .layers import functional as vf
from .layers.base import VariationalLayer
from .layers.init import DEFAULT_MIN_INIT_LOG_ALPHA
from .layers.registry import GRANULARITIES, kind_name_of, layer_kind, layer_kind_names

#: log sigma^2 at initialisation when a student is trained from scratch (Molchanov et al. 2017).
INIT_LOG_SIGMA2_SCRATCH = -10.0
#: log sigma^2 when the student starts from trained weights (the reference VGG setting).
INIT_LOG_SIGMA2_PRETRAINED = -15.0


@dataclass(frozen=True)
class VariationalConfig:
    """Which layers become variational, and how.

    Attributes:
        granularity: ``"weight"`` (unstructured Sparse VD) or ``"channel"`` (one gate per output channel).
        threshold: log_alpha at or above which a unit is pruned at eval (default 3).
        init_log_sigma2: initial log sigma^2 (-10 from scratch, -15 from trained weights), raised
            per unit so that log alpha starts at ``min_init_log_alpha`` or above.
        min_init_log_alpha: lowest starting log alpha of any unit, weights and gates alike (ours,
            default -6: inside the clip, where the KL has a gradient; see
            :func:`vs_plugin.layers.init.initial_log_sigma2`). None keeps the constant.
        kl: KL approximation, ``"sparse_vd"`` (Molchanov et al.) or ``"vbd"`` (Liu et al.).
        log_alpha_clip: log_alpha is clipped to [-clip, clip].
        layer_types: plain layer type names to convert (see ``vs_plugin.layers.layer_kind_names()``).
        include: fnmatch patterns of module names to convert; empty means all.
        exclude: fnmatch patterns of module names to leave plain.
        head: convert the classifier head. In channel mode the head's outputs are the logits and
            are never gated.
        stem: convert the first layer (the one reading the input).
    """

    granularity: str = "weight"
    threshold: float = vf.DEFAULT_THRESHOLD
    init_log_sigma2: float = INIT_LOG_SIGMA2_SCRATCH
    min_init_log_alpha: Optional[float] = DEFAULT_MIN_INIT_LOG_ALPHA
    kl: str = "sparse_vd"
    log_alpha_clip: float = vf.DEFAULT_LOG_ALPHA_CLIP
    layer_types: tuple[str, ...] = ("Linear", "Conv1d", "Conv2d")
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    head: bool = True
    stem: bool = True

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if self.kl not in vf.KL_APPROXIMATIONS:
            raise ConfigError(f"kl must be one of {', '.join(sorted(vf.KL_APPROXIMATIONS))}, got {self.kl!r}")
        if not self.log_alpha_clip > 0:
            raise ConfigError(f"log_alpha_clip must be > 0, got {self.log_alpha_clip}")
        if not -self.log_alpha_clip < self.threshold <= self.log_alpha_clip:
            raise ConfigError(
                f"threshold must lie in (-log_alpha_clip, log_alpha_clip] = "
                f"(-{self.log_alpha_clip}, {self.log_alpha_clip}], got {self.threshold}"
            )
        if self.min_init_log_alpha is not None and not -self.log_alpha_clip < self.min_init_log_alpha < self.log_alpha_clip:
            raise ConfigError(
                f"min_init_log_alpha must lie inside the clip, in (-{self.log_alpha_clip}, {self.log_alpha_clip}), "
                f"or be None; got {self.min_init_log_alpha}"
            )
        for name in ("layer_types", "include", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            else:
                object.__setattr__(self, name, tuple(value))
        for type_name in self.layer_types:
            layer_kind(type_name)  # raises with the known names

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def variational_layers(model: nn.Module) -> Iterator[tuple[str, VariationalLayer]]:
    """(name, layer) for every variational layer in ``model``, in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, VariationalLayer):
            yield name, module


def head_name(model: nn.Module) -> Optional[str]:
    """Qualified name of the classifier head.

    timm models name it through ``get_classifier()``; otherwise it is the last ``nn.Linear``
    registered in the model (torchvision and plain ``nn.Sequential`` models register it last).
    """
    names = {id(m): n for n, m in model.named_modules()}
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            head = get_classifier()
        except Exception:  # noqa: BLE001 - any failure means "no timm-style head"
            head = None
        if isinstance(head, nn.Module) and id(head) in names and isinstance(head, (nn.Linear, nn.modules.conv._ConvNd)):
            return names[id(head)]
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


def stem_name(model: nn.Module) -> Optional[str]:
    """Qualified name of the first ``Linear``/``Conv`` registered: the layer reading the input."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            return name
    return None


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_layers(model: nn.Module, config: VariationalConfig) -> list[str]:
    """Names of the modules ``variationalize`` would convert, in registration order."""
    head, stem = head_name(model), stem_name(model)
    for patterns, label in ((config.include, "include"), (config.exclude, "exclude")):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n, _ in model.named_modules() if n):
                raise ConfigError(f"{label} pattern {pattern!r} matches no module name of the model")
    selected, skipped_subclasses = [], []
    for name, module in model.named_modules():
        kind = kind_name_of(module)
        if kind is None:
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and not isinstance(module, VariationalLayer):
                skipped_subclasses.append(f"{name} ({type(module).__name__})")
            continue
        if kind not in config.layer_types:
            continue
        if config.include and not _matches(name, config.include):
            continue
        if _matches(name, config.exclude):
            continue
        if name == head and (not config.head or config.granularity == "channel"):
            continue
        if name == stem and not config.stem:
            continue
        selected.append(name)
    if skipped_subclasses:
        warnings.warn(
            "left plain (subclasses of a convertible type, whose forward may differ): " + ", ".join(skipped_subclasses),
            stacklevel=3,
        )
    return selected


def layer_names(model: nn.Module) -> list[tuple[str, str, str]]:
    """(name, type, role) of every Linear/Conv layer: the names config_lists, ``include``/``exclude``,
    ``ignored_layers`` and NNI's ``exclude_op_names`` take. Role: ``head``, ``stem`` or ``""``."""
    head, stem = head_name(model), stem_name(model)
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            role = "head" if name == head else "stem" if name == stem else ""
            rows.append((name, type(module).__name__, role))
    return rows


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def variationalize(model: nn.Module, config: Optional[VariationalConfig] = None) -> nn.Module:
    """Make ``model`` a variational student in place and return it.

    Args:
        model: any module (timm, torchvision, plain). Selected layers keep their trained weights
            as theta and get log sigma^2 = ``config.init_log_sigma2``, raised per unit so that
            log alpha starts at ``config.min_init_log_alpha`` or above.
        config: which layers and how; defaults to per-weight Sparse VD on every Linear/Conv.

    Calling it again on a variational model converts only layers still plain.

    Raises:
        ConfigError: when nothing would be converted or a pattern matches no module.
    """
    config = config or VariationalConfig()
    names = select_layers(model, config)
    if not names and any(True for _ in variational_layers(model)):
        return model  # already variational: nothing left to convert
    if not names:
        raise ConfigError(
            f"no layer of types {', '.join(config.layer_types)} was selected in {type(model).__name__}; "
            f"convertible types: {', '.join(layer_kind_names())}"
        )
    for name in names:
        plain = model.get_submodule(name)
        cls = layer_kind(kind_name_of(plain)).variational_type(config.granularity)
        layer = cls.from_plain(
            plain,
            init_log_sigma2=config.init_log_sigma2,
            min_init_log_alpha=config.min_init_log_alpha,
            threshold=config.threshold,
            log_alpha_clip=config.log_alpha_clip,
            kl=config.kl,
        )
        _set_submodule(model, name, layer)
    return model


def finalize(model: nn.Module) -> nn.Module:
    """Replace every variational layer by a plain layer holding its eval-time weights, in place.

    Pruned weights (or channels) become exact zeros; the ``state_dict`` of the result has the
    keys and shapes of the original architecture.
    """
    for name, layer in list(variational_layers(model)):
        _set_submodule(model, name, layer.to_plain())
    return model


def set_threshold(model: nn.Module, threshold: float) -> None:
    """Change the eval-time log_alpha threshold of every variational layer."""
    for _, layer in variational_layers(model):
        layer.threshold = float(threshold)


def masks(model: nn.Module) -> dict[str, Tensor]:
    """Keep masks (bool tensors) by layer name: weight-shaped or per output channel."""
    return {name: layer.keep_mask().detach() for name, layer in variational_layers(model)}


__all__ = [
    "VariationalConfig",
    "variationalize",
    "finalize",
    "variational_layers",
    "select_layers",
    "head_name",
    "stem_name",
    "layer_names",
    "set_threshold",
    "masks",
    "INIT_LOG_SIGMA2_SCRATCH",
    "INIT_LOG_SIGMA2_PRETRAINED",
    "DEFAULT_MIN_INIT_LOG_ALPHA",
]
