"""Sparse variational layers: per weight (``weight.py``) and per output channel (``channel.py``)."""

from .base import VariationalLayer
from .channel import ChannelGateLayer, GatedConv1d, GatedConv2d, GatedDepthwiseConv1d, GatedDepthwiseConv2d, GatedLinear
from .functional import (
    DEFAULT_LOG_ALPHA_CLIP,
    DEFAULT_THRESHOLD,
    KL_APPROXIMATIONS,
    kl_sparse_vd,
    kl_vbd,
    local_reparametrisation_sample,
    log_alpha,
)
from .registry import GRANULARITIES, LayerKind, layer_kind, layer_kind_names, register_layer_kind
from .weight import SparseVDLayer, VariationalConv1d, VariationalConv2d, VariationalLinear

__all__ = [
    "VariationalLayer",
    "SparseVDLayer",
    "ChannelGateLayer",
    "VariationalLinear",
    "VariationalConv1d",
    "VariationalConv2d",
    "GatedLinear",
    "GatedConv1d",
    "GatedConv2d",
    "GatedDepthwiseConv1d",
    "GatedDepthwiseConv2d",
    "LayerKind",
    "GRANULARITIES",
    "layer_kind",
    "layer_kind_names",
    "register_layer_kind",
    "log_alpha",
    "kl_sparse_vd",
    "kl_vbd",
    "KL_APPROXIMATIONS",
    "local_reparametrisation_sample",
    "DEFAULT_THRESHOLD",
    "DEFAULT_LOG_ALPHA_CLIP",
]
