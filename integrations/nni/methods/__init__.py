"""NNI's pruners and the Variational Student as methods of ``vs-plugin compare``.

Registered in pyproject.toml under the ``vs_plugin.methods`` entry-point group:
``variational_student``, ``level``, ``l1``, ``l2``, ``fpgm``, ``taylor``, ``movement``, ``slim``.
"""

from .baselines import FPGM, L1, L2, LEVEL, MOVEMENT, SLIM, TAYLOR, NNIBaseline
from .variational import VariationalStudentMethod

__all__ = ["NNIBaseline", "VariationalStudentMethod", "LEVEL", "L1", "L2", "FPGM", "TAYLOR", "SLIM", "MOVEMENT"]
