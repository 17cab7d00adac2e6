"""Compression methods and the compare config; the methods run in the one study engine
(:mod:`vs_plugin.study`), which ``vs-plugin compare`` uses with one seed.

Methods are found by name through the ``vs_plugin.methods`` entry-point group (the NNI pruners,
the NNI-based Variational Student, gradual magnitude and the torch-pruning methods register there).
"""

from .config import CompareConfig, MethodEntry, compare_config_from_mapping, load_compare_config
from .method import CompressionMethod, MethodContext, MethodOutcome, TrainingBudget
from .registry import ENTRY_POINT_GROUP, METHODS, get_method, method_names, register_method, unregister_method

__all__ = [
    "CompareConfig",
    "MethodEntry",
    "compare_config_from_mapping",
    "load_compare_config",
    "CompressionMethod",
    "MethodContext",
    "MethodOutcome",
    "TrainingBudget",
    "ENTRY_POINT_GROUP",
    "METHODS",
    "get_method",
    "method_names",
    "register_method",
    "unregister_method",
]
