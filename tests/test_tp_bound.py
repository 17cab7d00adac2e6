"""The bound around torch-pruning's graph analysis (integrations/torch_pruning/bound.py): CPU time
of the analysing thread, so a loaded machine does not refuse a finite analysis, plus a wall-clock
cap, so a hang is refused within 30 s whatever CPU share it gets."""

import time

import pytest
import torch.nn as nn

from vs_plugin.errors import ModelError
from vs_plugin.integrations.torch_pruning.bound import ANALYSIS_WALL_LIMIT_S, bounded_analysis

MODEL = nn.Linear(2, 2)


def busy(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_hang_that_burns_cpu_is_refused_by_the_cpu_bound():
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"does not support Linear.*did not finish within 0.5 s of CPU time"):
        with bounded_analysis(MODEL, "listing groups", seconds=0.5, wall_seconds=20):
            busy(30)
    assert time.monotonic() - start < 5


def test_waiting_for_the_cpu_does_not_count_against_the_cpu_bound():
    # Sleeping stands for a process that other jobs keep off the cores: wall time passes, little
    # CPU time does. A bound on wall time alone (the former 20 s) refused such analyses.
    with bounded_analysis(MODEL, "listing groups", seconds=0.3, wall_seconds=20):
        time.sleep(0.8)
        busy(0.1)


def test_a_starved_hang_is_refused_by_the_wall_clock_bound():
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"did not finish within 0.6 s \(it had 0\.\d s of CPU time\)"):
        with bounded_analysis(MODEL, "listing groups", seconds=20, wall_seconds=0.6):
            time.sleep(30)
    assert time.monotonic() - start < 5
    assert ANALYSIS_WALL_LIMIT_S < 30  # every refusal within 30 s


def test_the_refusal_is_not_swallowed_by_a_broad_except():
    with pytest.raises(ModelError, match="did not finish"):
        with bounded_analysis(MODEL, "listing groups", seconds=0.3, wall_seconds=20):
            for _ in range(100):
                try:
                    busy(0.2)
                except Exception:  # noqa: BLE001 - torch-pruning's code has such blocks
                    pass


def test_raw_errors_become_a_model_error_and_nested_bounds_keep_the_outer_one():
    with pytest.raises(ModelError, match="failed: ZeroDivisionError"):
        with bounded_analysis(MODEL, "outer", seconds=20):
            with bounded_analysis(MODEL, "inner", seconds=0.01):
                busy(0.2)  # the inner bound is not armed
                1 / 0
