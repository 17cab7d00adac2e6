"""``vs-plugin list``: the names the other commands accept."""

from __future__ import annotations

import argparse

from ..data.registry import dataset_names
from ..models.registry import model_families

TOPICS = ("models", "datasets", "layers")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("list", help="list accepted model and dataset names, or a model's layer names")
    parser.add_argument("topic", choices=TOPICS)
    parser.add_argument("--model", help="layers: the model whose Linear/Conv layer names to list (e.g. timm:resnet18)")
    parser.add_argument("--input-shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"), help="layers: input shape (3 32 32)")
    parser.add_argument("--num-classes", type=int, default=10, help="layers: classes (10)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.topic == "layers":
        return _list_layers(args)
    names = model_families() if args.topic == "models" else dataset_names()
    for usage in names.values():
        print(usage)
    return 0


def _list_layers(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..models.registry import InputSpec, build_model
    from ..variationalize import layer_names

    if not args.model:
        raise ConfigError("vs-plugin list layers needs --model NAME (see vs-plugin list models)")
    model = build_model(args.model, InputSpec(*args.input_shape, args.num_classes))
    for name, kind, role in layer_names(model):
        print(f"{name}\t{kind}\t{role}".rstrip())
    return 0

