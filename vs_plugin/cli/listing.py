"""``vs-plugin list``: the names the other commands accept."""

from __future__ import annotations

import argparse

from ..data.registry import dataset_names
from ..models.registry import model_families

TOPICS = ("models", "datasets")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("list", help="list accepted model and dataset names")
    parser.add_argument("topic", choices=TOPICS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    names = model_families() if args.topic == "models" else dataset_names()
    for usage in names.values():
        print(usage)
    return 0
