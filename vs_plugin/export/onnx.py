"""ONNX export of a PyTorch classifier, its check against onnxruntime, and CPU latency.

Export: ``torch.onnx.export`` (the TorchScript-based exporter, ``dynamo=False``: it needs no
extra package and handles timm CNNs and ViTs), one input ``input`` (batch, C, H, W) with a
dynamic batch axis, one output ``logits``, written atomically.
Check: the same random batch through PyTorch and onnxruntime; outputs must agree to
``rtol``/``atol`` (``numpy.allclose``), and the arg-max classes are compared too.
Latency: onnxruntime's CPU provider; per batch size each model is warmed up, then the models run
in interleaved rounds (so machine load hits them alike) and the median of ``repeats`` rounds is
reported in milliseconds.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, ModelError
from ..io import atomic_write

DEFAULT_OPSET = 17
RTOL, ATOL = 1e-3, 1e-4
WARMUP_RUNS = 3


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'vs-plugin[export]'") from None
    return onnxruntime


def export_onnx(model: nn.Module, path: Path, input_shape: Sequence[int], opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (eval mode, CPU) as ONNX to ``path`` for inputs of shape (batch, *input_shape)."""
    try:
        import onnx  # noqa: F401 - the exporter needs it
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'vs-plugin[export]'") from None
    model = model.cpu().eval()
    example = torch.zeros(2, *input_shape)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                model, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )

    try:
        return atomic_write(path, write)
    except Exception as error:  # noqa: BLE001 - any exporter failure: say which model and why
        raise ModelError(f"ONNX export of {type(model).__name__} failed: {str(error).strip().splitlines()[0][:200]}") from None


def session(path: Path, threads: Optional[int] = None):
    """An onnxruntime CPU inference session for ``path``."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def verify(path: Path, reference: nn.Module, inputs: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> dict:
    """Compare onnxruntime's outputs of ``path`` with ``reference`` (PyTorch) on ``inputs``.

    Returns ``{"max_abs_diff", "rtol", "atol", "argmax_agree", "samples"}``; raises
    :class:`ModelError` when they do not agree to the tolerances.
    """
    expected = reference.cpu().eval()(inputs).numpy()
    got = session(path).run(["logits"], {"input": inputs.numpy()})[0]
    difference = float(np.abs(got - expected).max())
    result = {
        "max_abs_diff": difference,
        "rtol": rtol,
        "atol": atol,
        "argmax_agree": float((got.argmax(-1) == expected.argmax(-1)).mean()),
        "samples": int(inputs.shape[0]),
    }
    if not np.allclose(got, expected, rtol=rtol, atol=atol):
        raise ModelError(f"{path.name}: onnxruntime and PyTorch outputs differ by up to {difference:.3g} (rtol {rtol}, atol {atol})")
    return result


def latency(paths: Mapping[str, Path], input_shape: Sequence[int], batch_sizes: Sequence[int], repeats: int, threads: Optional[int] = None) -> dict:
    """``{name: {batch: median ms}}`` of onnxruntime CPU inference, models interleaved round by round."""
    if repeats < 1 or not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ConfigError("latency needs repeats >= 1 and batch sizes >= 1")
    sessions = {name: session(path, threads) for name, path in paths.items()}
    results: dict = {name: {} for name in sessions}
    generator = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        feed = {"input": torch.randn(batch, *input_shape, generator=generator).numpy()}
        for run in sessions.values():
            for _ in range(WARMUP_RUNS):
                run.run(None, feed)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(repeats):
            for name, run in sessions.items():
                started = time.perf_counter()
                run.run(None, feed)
                times[name].append(time.perf_counter() - started)
        for name in sessions:
            results[name][str(batch)] = 1000 * statistics.median(times[name])
    return results
