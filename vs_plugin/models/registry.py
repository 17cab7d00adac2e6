"""Models by name: ``timm:<name>``, ``torchvision:<name>``, ``mlp:<sizes>``, ``lenet5``,
``lenet-300-100``, ``vgg-like[:<width>]``.

Input channels and class count follow the dataset. No weights are downloaded: pretrained
weights come from a local file (:func:`vs_plugin.models.weights.load_weights`).
A name is ``family[:argument]``; families are registered once, loudly on collisions.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Optional

import torch.nn as nn

from ..errors import ModelError, UnknownNameError
from ..registry import Registry
from .builtin import MLP, LeNet5, VGGLike


@dataclass(frozen=True)
class InputSpec:
    """What the data looks like: (channels, height, width) and the number of classes."""

    channels: int
    height: int
    width: int
    num_classes: int

    @property
    def features(self) -> int:
        return self.channels * self.height * self.width


Builder = Callable[[Optional[str], InputSpec], nn.Module]
MODEL_FAMILIES: Registry[Builder] = Registry("model family")


def register_model_family(name: str, builder: Builder, usage: str) -> None:
    """Add a family of model names; raises if ``name`` is already registered."""
    MODEL_FAMILIES.register(name, builder, usage)


def model_families() -> dict[str, str]:
    """Family name -> usage example."""
    return MODEL_FAMILIES.usages()


def build_model(name: str, spec: InputSpec) -> nn.Module:
    """Build the model called ``name`` for data shaped like ``spec`` (random initialisation)."""
    family, _, argument = name.partition(":")
    if family not in MODEL_FAMILIES:
        raise UnknownNameError("model", name, list(MODEL_FAMILIES.usages().values()))
    return MODEL_FAMILIES.get(family)(argument or None, spec)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


# -- built-in families ------------------------------------------------------------------
def parse_mlp_sizes(argument: Optional[str], spec: InputSpec) -> list[int]:
    """Widths of ``mlp:<sizes>``; ``in`` and ``out`` stand for the data's input size and class count."""
    if not argument:
        raise ModelError("mlp needs its layer widths, e.g. mlp:784-1200-1200-10 or mlp:in-500-50-out")
    tokens = argument.split("-")
    if len(tokens) < 2:
        raise ModelError(f"mlp:{argument} needs at least an input and an output width")
    sizes = []
    for position, token in enumerate(tokens):
        if token == "in" and position == 0:
            sizes.append(spec.features)
        elif token == "out" and position == len(tokens) - 1:
            sizes.append(spec.num_classes)
        elif token.isdigit() and int(token) > 0:
            sizes.append(int(token))
        else:
            raise ModelError(f"mlp:{argument}: {token!r} is not a positive width ('in'/'out' only first/last)")
    if sizes[0] != spec.features:
        raise ModelError(
            f"mlp:{argument} reads {sizes[0]} inputs but the data has {spec.features} "
            f"({spec.channels}x{spec.height}x{spec.width}); use mlp:in-... to follow the data"
        )
    if sizes[-1] != spec.num_classes:
        raise ModelError(
            f"mlp:{argument} has {sizes[-1]} outputs but the data has {spec.num_classes} classes; "
            "use mlp:...-out to follow the data"
        )
    return sizes


def _build_mlp(argument: Optional[str], spec: InputSpec) -> nn.Module:
    return MLP(parse_mlp_sizes(argument, spec))


def _build_lenet_300_100(argument: Optional[str], spec: InputSpec) -> nn.Module:
    return MLP([spec.features, 300, 100, spec.num_classes])


def _build_lenet5(argument: Optional[str], spec: InputSpec) -> nn.Module:
    return LeNet5(spec.channels, spec.num_classes, (spec.height, spec.width))


def _build_vgg_like(argument: Optional[str], spec: InputSpec) -> nn.Module:
    try:
        width = float(argument) if argument else 1.0
    except ValueError:
        raise ModelError(f"vgg-like:{argument}: the width factor must be a number, e.g. vgg-like:0.25") from None
    if not width > 0:
        raise ModelError(f"vgg-like width factor must be > 0, got {width}")
    return VGGLike(spec.channels, spec.num_classes, (spec.height, spec.width), width)


def _build_timm(argument: Optional[str], spec: InputSpec) -> nn.Module:
    return create_timm_model(argument, spec)


def create_timm_model(argument: Optional[str], spec: InputSpec, num_classes: Optional[int] = None, **extra) -> nn.Module:
    """``timm.create_model`` for data shaped like ``spec``; ``extra`` goes to timm (``pretrained``,
    ``pretrained_cfg_overlay``...); ``num_classes`` defaults to the data's. ``img_size`` is passed
    to the models that take it (ViTs)."""
    import timm

    if not argument or not timm.is_model(argument):
        known = timm.list_models()
        raise ModelError(f"unknown timm model {argument!r} (see timm.list_models()){_suggest(argument or '', known)}")
    kwargs = dict(pretrained=False, num_classes=spec.num_classes if num_classes is None else num_classes, in_chans=spec.channels)
    kwargs.update(extra)
    try:
        return timm.create_model(argument, img_size=(spec.height, spec.width), **kwargs)
    except TypeError as error:
        if "img_size" not in str(error):
            raise
    return timm.create_model(argument, **kwargs)


def _replace_first_conv(model: nn.Module, in_chans: int) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_chans:
                return
            replacement = nn.Conv2d(
                in_chans,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                1,
                module.bias is not None,
                module.padding_mode,
            )
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
            return


def _build_torchvision(argument: Optional[str], spec: InputSpec) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models()
    if argument not in known:
        raise ModelError(f"unknown torchvision model {argument!r} (see torchvision.models.list_models()){_suggest(argument or '', known)}")
    kwargs: dict = dict(weights=None, num_classes=spec.num_classes)
    if argument.startswith("vit_"):
        kwargs["image_size"] = spec.height
    model = torchvision.models.get_model(argument, **kwargs)
    _replace_first_conv(model, spec.channels)
    return model


register_model_family("mlp", _build_mlp, "mlp:<widths> (e.g. mlp:784-1200-1200-10, mlp:in-500-50-out)")
register_model_family("lenet-300-100", _build_lenet_300_100, "lenet-300-100")
register_model_family("lenet5", _build_lenet5, "lenet5")
register_model_family("vgg-like", _build_vgg_like, "vgg-like[:<width factor>] (e.g. vgg-like:0.25)")
register_model_family("timm", _build_timm, "timm:<name> (e.g. timm:resnet18)")
register_model_family("torchvision", _build_torchvision, "torchvision:<name> (e.g. torchvision:resnet18)")
