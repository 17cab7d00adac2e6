"""Non-zero weights, sparsity and memory footprint (docs/method.md, "Reporting").

- Weights are the ``weight`` tensors of Linear and Conv layers; biases, norm parameters and other
  parameters (embeddings, tokens) are counted apart as "other" and always stored dense.
- Dense footprint: 4 bytes (fp32) per parameter and per floating-point buffer (BatchNorm statistics).
- Sparse footprint: each weight tensor as a CSR matrix of shape (out, fan_in): 4-byte values,
  a column index of 2 bytes when the row has fewer than 65,536 columns (else 4) and 4-byte row
  pointers; everything else dense fp32.
- Smallest footprint: each weight tensor in whichever of the two forms is smaller (a dense or
  physically pruned layer is smaller dense: CSR costs 6-8 bytes per non-zero), everything else
  dense fp32. This is what a deployment would store; the summary reports it with its form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ..layers.base import VariationalLayer

FP32_BYTES = 4
ROW_POINTER_BYTES = 4
SMALL_COLUMN_INDEX_BYTES = 2
LARGE_COLUMN_INDEX_BYTES = 4
SMALL_INDEX_LIMIT = 65_536


@dataclass(frozen=True)
class LayerFootprint:
    name: str
    kind: str
    shape: tuple[int, ...]
    weights: int
    nnz: int
    dense_bytes: int
    csr_bytes: int
    column_index_bytes: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nnz / self.weights if self.weights else 0.0

    @property
    def smallest_bytes(self) -> int:
        """Bytes of the weight stored dense or as CSR, whichever is smaller."""
        return min(self.dense_bytes, self.csr_bytes)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["sparsity"] = self.sparsity
        return data


@dataclass(frozen=True)
class ModelFootprint:
    layers: tuple[LayerFootprint, ...]
    other_params: int
    buffer_values: int

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def nnz(self) -> int:
        return sum(layer.nnz for layer in self.layers)

    @property
    def params(self) -> int:
        """All parameters a deployed model holds (weights + other)."""
        return self.weights + self.other_params

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nnz / self.weights if self.weights else 0.0

    @property
    def dense_bytes(self) -> int:
        return FP32_BYTES * (self.params + self.buffer_values)

    @property
    def sparse_bytes(self) -> int:
        return sum(layer.csr_bytes for layer in self.layers) + FP32_BYTES * (self.other_params + self.buffer_values)

    @property
    def smallest_bytes(self) -> int:
        """Each weight tensor dense or CSR, whichever is smaller; everything else dense fp32."""
        return sum(layer.smallest_bytes for layer in self.layers) + FP32_BYTES * (self.other_params + self.buffer_values)

    @property
    def smallest_format(self) -> str:
        """``"CSR"``, ``"dense"`` or ``"dense + CSR"``: the forms :attr:`smallest_bytes` uses."""
        sparse = sum(layer.csr_bytes < layer.dense_bytes for layer in self.layers)
        if sparse == 0:
            return "dense"
        return "CSR" if sparse == len(self.layers) else "dense + CSR"


def csr_bytes(weight: torch.Tensor) -> tuple[int, int]:
    """(bytes, column index width) of ``weight`` stored as CSR with shape (out, fan_in)."""
    rows = weight.shape[0]
    columns = weight.numel() // max(rows, 1)
    index_bytes = SMALL_COLUMN_INDEX_BYTES if columns < SMALL_INDEX_LIMIT else LARGE_COLUMN_INDEX_BYTES
    nnz = int(torch.count_nonzero(weight))
    return nnz * (FP32_BYTES + index_bytes) + ROW_POINTER_BYTES * (rows + 1), index_bytes


def _effective_weight(module: nn.Module) -> torch.Tensor:
    if isinstance(module, VariationalLayer):
        return module.deterministic_weight_and_bias()[0]
    return module.weight


def model_footprint(model: nn.Module) -> ModelFootprint:
    """Counts and footprints of ``model`` (variational layers are measured at their eval weights)."""
    layers = []
    weight_ids = set()
    training_only_ids = set()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, VariationalLayer):
                training_only_ids.update(id(p) for n, p in module.named_parameters(recurse=False) if n not in ("weight", "bias"))
            if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or module.weight is None:
                continue
            weight = _effective_weight(module)
            weight_ids.add(id(module.weight))
            sparse, index_bytes = csr_bytes(weight)
            layers.append(
                LayerFootprint(
                    name=name,
                    kind=type(module).__name__,
                    shape=tuple(weight.shape),
                    weights=weight.numel(),
                    nnz=int(torch.count_nonzero(weight)),
                    dense_bytes=FP32_BYTES * weight.numel(),
                    csr_bytes=sparse,
                    column_index_bytes=index_bytes,
                )
            )
    other = sum(p.numel() for p in model.parameters() if id(p) not in weight_ids and id(p) not in training_only_ids)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return ModelFootprint(tuple(layers), other, buffers)
