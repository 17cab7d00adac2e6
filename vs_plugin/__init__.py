"""vs-plugin: compress a trained teacher into a sparse Variational Student.

The method (Hegde et al., "Variational Student", ICASSP 2020) lives in this package and needs
torch only; adapters for NNI and torch-pruning live in ``vs_plugin.integrations``.

Entry points:
    ``variationalize(model, config)`` / ``finalize(model)``: make any module variational and back;
    ``VariationalStudentObjective``: every loss term, for your own training loop;
    ``compress(teacher, student, train, test, **settings)``: the whole run, with a report.
"""

from ._version import __version__
from .api import compress, compress_by_name, load_student
from .losses import KLWarmup, ObjectiveConfig, VariationalStudentObjective
from .metrics import evaluate_accuracy, model_footprint
from .pipeline.settings import CompressSettings
from .variationalize import VariationalConfig, finalize, masks, variational_layers, variationalize

__all__ = [
    "__version__",
    "variationalize",
    "finalize",
    "masks",
    "variational_layers",
    "VariationalConfig",
    "VariationalStudentObjective",
    "ObjectiveConfig",
    "KLWarmup",
    "compress",
    "compress_by_name",
    "load_student",
    "CompressSettings",
    "evaluate_accuracy",
    "model_footprint",
]
