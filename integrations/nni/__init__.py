"""NNI 3.0 adapter of vs-plugin (importing it imports ``nni``).

- :class:`VariationalStudentPruner`: the Variational Student as an NNI pruner
  (``nni.compression.base.compressor.Pruner``), usable like NNI's own pruners, fused with its
  distillers (``from_compressor``) and scheduled by ``AGPPruner`` / ``LinearPruner``;
- :func:`bake_masks`: NNI masks written into a plain model;
- :func:`make_torch_evaluator`: a ready ``TorchEvaluator`` over a batch source;
- ``methods``: NNI's pruners and the Variational Student as methods of ``vs-plugin compare``
  (registered through the ``vs_plugin.methods`` entry-point group);
- ``trial`` / ``experiment``: NNI hyper-parameter search of the method's settings.
"""

from .._extras import require

require("nni")  # a one-line error naming the extra, before any import of nni


from .evaluator import make_torch_evaluator
from .masks import bake_masks
from .pruner import VariationalStudentPruner

__all__ = ["VariationalStudentPruner", "bake_masks", "make_torch_evaluator"]
