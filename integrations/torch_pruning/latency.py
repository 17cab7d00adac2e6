"""CPU latency of several models measured side by side in one process.

For each batch size every model is warmed up, then runs ``repeats`` rounds in which each model
runs one timed forward pass (``time.perf_counter``, ``torch.inference_mode``, eval mode, same
input). Interleaving the models round by round exposes them to the same machine load; the median
over rounds is reported, in milliseconds per batch.

Warm-up: at least ``warmup`` untimed passes, continued (up to :data:`MAX_WARMUP` passes) until
the last :data:`STABLE_PASSES` passes each took at most :data:`STABLE_FACTOR` times the fastest
one so far. On CPU the first passes at a new shape can be a hundred times slower (kernel
selection, allocator), and after training more than three of them may be.

On a shared machine, several intra-op threads wait for each other at every parallel region:
when another process holds a core, single passes stall for a scheduler time slice (hundreds of
milliseconds on the project's 2-core machines). ``threads=1`` measures per-core speed without
those stalls; the thread count used is reported either way.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Mapping, Optional, Sequence

import torch
import torch.nn as nn

from vs_plugin.errors import ConfigError

DEFAULT_BATCH_SIZES = (1, 64)
DEFAULT_REPEATS = 20
DEFAULT_WARMUP = 3
MAX_WARMUP = 50
STABLE_PASSES = 3
STABLE_FACTOR = 1.5


def _timed(model: nn.Module, inputs: torch.Tensor) -> float:
    started = time.perf_counter()
    model(inputs)
    return time.perf_counter() - started


def warm_up(model: nn.Module, inputs: torch.Tensor, minimum: int) -> int:
    """Untimed passes until the timing is stable (see the module docstring); returns how many."""
    times: list[float] = []
    while len(times) < MAX_WARMUP:
        times.append(_timed(model, inputs))
        recent = times[-STABLE_PASSES:]
        if len(times) >= max(minimum, STABLE_PASSES) and max(recent) <= STABLE_FACTOR * min(times):
            break
    return len(times)


def measure_latency(
    models: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    threads: Optional[int] = None,
) -> dict:
    """Median CPU milliseconds per forward pass of each model at each batch size.

    Args:
        models: name -> model (copied to the CPU; the originals are not touched).
        input_shape: (C, H, W) of one sample.
        batch_sizes: batch sizes to time.
        repeats: timed rounds per batch size (the median is reported).
        warmup: least number of untimed passes per model and batch size first.
        threads: intra-op threads while timing (None: torch's current setting, restored after).

    Returns:
        ``{"device": "cpu", "threads", "repeats", "warmup", "batch_sizes": {"1": {name: ms}, ...}}``.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"latency needs repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ConfigError(f"latency batch sizes must be >= 1, got {list(batch_sizes)}")
    if threads is not None and threads < 1:
        raise ConfigError(f"latency threads must be >= 1, got {threads}")
    cpu_models = {name: copy.deepcopy(model).cpu().eval() for name, model in models.items()}
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(cpu_models, input_shape, batch_sizes, repeats, warmup)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(cpu_models: Mapping[str, nn.Module], input_shape: Sequence[int], batch_sizes: Sequence[int], repeats: int, warmup: int) -> dict:
    result: dict = {"device": "cpu", "threads": torch.get_num_threads(), "repeats": repeats, "warmup": warmup, "batch_sizes": {}}
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for batch_size in batch_sizes:
            inputs = torch.randn(batch_size, *input_shape, generator=generator)
            for model in cpu_models.values():
                warm_up(model, inputs, warmup)
            times: dict[str, list[float]] = {name: [] for name in cpu_models}
            for _ in range(repeats):
                for name, model in cpu_models.items():
                    times[name].append(_timed(model, inputs))
            result["batch_sizes"][str(batch_size)] = {name: 1000.0 * statistics.median(t) for name, t in times.items()}
    return result


__all__ = ["measure_latency", "warm_up", "DEFAULT_BATCH_SIZES", "DEFAULT_REPEATS", "DEFAULT_WARMUP"]
