"""Deployment files of a compressed run: ONNX export checked against onnxruntime (``run.py``,
``onnx.py``) and the shrunk dense form of MLP students (``shrink.py``)."""

from .onnx import export_onnx, latency, verify
from .run import export_run
from .shrink import is_mlp, shrink

__all__ = ["export_run", "export_onnx", "verify", "latency", "is_mlp", "shrink"]
