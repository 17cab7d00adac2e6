"""Measurements: accuracy (``accuracy.py``), counts and footprints (``footprint.py``)."""

from .accuracy import count_correct, evaluate_accuracy
from .footprint import LayerFootprint, ModelFootprint, csr_bytes, model_footprint

__all__ = ["count_correct", "evaluate_accuracy", "LayerFootprint", "ModelFootprint", "csr_bytes", "model_footprint"]
