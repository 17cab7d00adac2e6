"""Datasets by name (``registry.py``) and batching (``loaders.py``)."""

from .bundle import DataBundle
from .loaders import InMemoryLoader, dataset_labels, make_loader, subset_fraction
from .registry import dataset_names, load_dataset, register_dataset

__all__ = ["DataBundle", "InMemoryLoader", "dataset_labels", "make_loader", "subset_fraction", "dataset_names", "load_dataset", "register_dataset"]
