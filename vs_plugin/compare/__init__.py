"""Side-by-side comparison of compression methods (``vs-plugin compare``); torch only.

Methods are found by name through the ``vs_plugin.methods`` entry-point group (the NNI pruners
and the NNI-based Variational Student register there from ``vs_plugin.integrations.nni``).
"""

from .config import CompareConfig, MethodEntry, compare_config_from_mapping, load_compare_config
from .method import CompressionMethod, MethodContext, MethodOutcome, TrainingBudget
from .registry import ENTRY_POINT_GROUP, get_method, method_names, register_method, unregister_method
from .runner import run_comparison
from .tables import ResultRow

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
    "get_method",
    "method_names",
    "register_method",
    "unregister_method",
    "run_comparison",
    "ResultRow",
]
