"""An opt-in compiled KL sum (``torch.compile``), for long runs on CPU.

In eager mode the KL over every weight is several element-wise kernels forward and backward
(:mod:`vs_plugin.layers.fused_kl` already writes the backward by hand): on the paper's
784-500-50-10 student it costs about as much as the student's matrix products
(docs/performance.md). ``torch.compile`` fuses them into one loop and makes the KL about 1.4x
cheaper than the fused eager version, after a one-time compilation of ~10 s that needs a C++
compiler. If compilation fails
the eager function is used, with one warning.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

from torch import Tensor

from . import functional as vf

KLSum = Callable[[Tensor, Tensor, float, str], Tensor]


class CompiledKLSum:
    """Callable like :func:`vs_plugin.layers.functional.kl_sum`, compiled on first use."""

    def __init__(self) -> None:
        self._compiled: Optional[KLSum] = None
        self._failed = False

    def __call__(self, mean: Tensor, log_sigma2: Tensor, clip: float, kind: str) -> Tensor:
        if self._failed:
            return vf.kl_sum(mean, log_sigma2, clip, kind)
        try:
            if self._compiled is None:
                import torch

                self._compiled = torch.compile(vf.kl_sum, dynamic=True)
            return self._compiled(mean, log_sigma2, clip, kind)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
            self._failed = True
            warnings.warn(f"compiling the KL failed ({type(error).__name__}: {str(error)[:200]}); using eager mode", stacklevel=2)
            return vf.kl_sum(mean, log_sigma2, clip, kind)


#: One process-wide instance: compiled graphs are cached per shape kind, not per model.
compiled_kl_sum = CompiledKLSum()
