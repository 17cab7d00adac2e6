"""Measurements: accuracy (``accuracy.py``), counts and footprints (``footprint.py``), whether a
student is still useful (``health.py``)."""

from .accuracy import count_correct, evaluate_accuracy
from .footprint import LayerFootprint, ModelFootprint, csr_bytes, model_footprint
from .health import health_warnings, is_near_chance

__all__ = ["count_correct", "evaluate_accuracy", "LayerFootprint", "ModelFootprint", "csr_bytes", "model_footprint", "health_warnings", "is_near_chance"]
