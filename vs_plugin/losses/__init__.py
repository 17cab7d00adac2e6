"""Loss terms of the Variational Student, each with its formula and source in its docstring."""

from .bsr import BSR_NORMS, BlockSparseRegulariser, LayerPair, block_sparse_regulariser, pair_layers
from .kd import KD_REDUCTIONS, kd_loss
from .kl import KLWarmup, variational_kl
from .locality import locality_preserving_loss
from .objective import TERMS, ObjectiveConfig, VariationalStudentObjective

__all__ = [
    "kd_loss",
    "KD_REDUCTIONS",
    "variational_kl",
    "KLWarmup",
    "block_sparse_regulariser",
    "BlockSparseRegulariser",
    "BSR_NORMS",
    "pair_layers",
    "LayerPair",
    "locality_preserving_loss",
    "ObjectiveConfig",
    "VariationalStudentObjective",
    "TERMS",
]
