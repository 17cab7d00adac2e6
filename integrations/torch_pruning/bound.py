"""A time bound and clear errors around torch-pruning's dependency analysis.

torch-pruning's group search can grow without bound on some graphs (timm ``levit_128s``: over
400 s in ``get_all_groups``; timm ``rexnet_100``: over 590 s in plain torch-pruning) and fails
with raw errors on others (torchvision ``shufflenet_v2_x0_5``: ``ZeroDivisionError`` in its
reshape index mapping, from the channel shuffle). :func:`bounded_analysis` turns both into a
:class:`~vs_plugin.errors.ModelError` that names the architecture.

Two bounds apply, checked every :data:`CHECK_INTERVAL_S` seconds of wall-clock time:

- the analysing thread's own CPU time (``time.thread_time``) may not exceed
  :data:`ANALYSIS_CPU_LIMIT_S`: this is the work done, the same on a loaded machine as on an idle
  one, so a slow but finite analysis is not refused because other processes share the cores;
- the wall-clock time may not exceed :data:`ANALYSIS_WALL_LIMIT_S`: a hang is refused within it
  however little CPU the process gets.

The bounds use ``SIGALRM`` and so apply in the main thread of a Unix process (where the CLI and
tests run; the handler runs in that thread, so ``time.thread_time`` there is the analysing
thread's); elsewhere the analysis runs unbounded. Nested bounds keep the outermost one.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from typing import Iterator, Optional

import torch.nn as nn

from vs_plugin.errors import ModelError, VSPluginError

#: CPU seconds of the analysing thread torch-pruning may spend analysing a model's graph (tracing,
#: listing groups) before the architecture is refused. The verified families need at most 1.6 s
#: (docs/torch-pruning.md says how that was measured).
ANALYSIS_CPU_LIMIT_S = 15.0
#: Wall-clock seconds after which the analysis is refused whatever CPU share it had, so that every
#: refusal comes within 30 s (with room for the signal to be handled after a long C call).
ANALYSIS_WALL_LIMIT_S = 25.0
#: Former name of :data:`ANALYSIS_CPU_LIMIT_S`.
ANALYSIS_TIME_LIMIT_S = ANALYSIS_CPU_LIMIT_S
#: How often (wall-clock seconds) the bounds are checked.
CHECK_INTERVAL_S = 0.25
#: Errors torch-pruning raises on graphs it cannot analyse (seen: ZeroDivisionError, IndexError,
#: KeyError, AssertionError in its index mappings).
ANALYSIS_ERRORS = (ZeroDivisionError, IndexError, KeyError, AssertionError, TypeError, AttributeError, RuntimeError, ValueError)

_active = threading.local()


class _AnalysisTimeout(BaseException):
    """Not an ``Exception``: torch-pruning's own ``except Exception`` blocks must not swallow it."""


def _refusal(model: nn.Module, what: str) -> str:
    return f"the structured path does not support {type(model).__name__}: torch-pruning's dependency analysis ({what})"


@contextlib.contextmanager
def bounded_analysis(
    model: nn.Module, what: str, seconds: Optional[float] = None, wall_seconds: Optional[float] = None
) -> Iterator[None]:
    """Run torch-pruning's analysis of ``model`` within time bounds; errors become ``ModelError``.

    Args:
        model: the model analysed (named in the message).
        what: the step, e.g. "building the dependency graph".
        seconds: CPU seconds of this thread allowed; default :data:`ANALYSIS_CPU_LIMIT_S`.
        wall_seconds: wall-clock seconds allowed; default :data:`ANALYSIS_WALL_LIMIT_S`.
    """
    if getattr(_active, "depth", 0):
        _active.depth += 1
        try:
            yield
        finally:
            _active.depth -= 1
        return
    cpu_limit = ANALYSIS_CPU_LIMIT_S if seconds is None else float(seconds)
    wall_limit = ANALYSIS_WALL_LIMIT_S if wall_seconds is None else float(wall_seconds)
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    cpu_start, wall_start = time.thread_time(), time.monotonic()
    exceeded: list[str] = []
    raised_at = [-math.inf]

    def on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
        cpu, wall = time.thread_time() - cpu_start, time.monotonic() - wall_start
        if cpu > cpu_limit:
            exceeded.append(f"{cpu_limit:g} s of CPU time")
        elif wall > wall_limit:
            exceeded.append(f"{wall_limit:g} s (it had {cpu:.1f} s of CPU time)")
        # Raised again a second later should the analysis swallow it; never twice in a row (so
        # that it cannot interrupt its own handling below).
        if exceeded and wall - raised_at[0] > 1.0:
            raised_at[0] = wall
            raise _AnalysisTimeout()

    previous = None
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        interval = min(CHECK_INTERVAL_S, cpu_limit, wall_limit)
        signal.setitimer(signal.ITIMER_REAL, interval, interval)
    _active.depth = 1
    try:
        yield
    except _AnalysisTimeout:
        raise ModelError(f"{_refusal(model, what)} did not finish within {exceeded[0]}; see docs/torch-pruning.md for the verified families") from None
    except VSPluginError:
        raise
    except ANALYSIS_ERRORS as error:
        raise ModelError(f"{_refusal(model, what)} failed: {type(error).__name__}: {error}; see docs/torch-pruning.md for the verified families") from error
    finally:
        _active.depth = 0
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


__all__ = ["ANALYSIS_CPU_LIMIT_S", "ANALYSIS_WALL_LIMIT_S", "ANALYSIS_TIME_LIMIT_S", "CHECK_INTERVAL_S", "bounded_analysis"]
