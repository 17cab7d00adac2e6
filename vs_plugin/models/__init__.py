"""Models by name (``registry.py``), built-in paper architectures (``builtin.py``), local weights (``weights.py``)."""

from .builtin import MLP, VGGLike, LeNet5
from .registry import InputSpec, build_model, model_families, register_model_family
from .weights import load_weights, read_state_dict

__all__ = ["MLP", "LeNet5", "VGGLike", "InputSpec", "build_model", "model_families", "register_model_family", "load_weights", "read_state_dict"]
