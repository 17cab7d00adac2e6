"""A time bound and clear errors around torch-pruning's dependency analysis.

torch-pruning's group search can grow without bound on some graphs (timm ``levit_128s``: over
400 s in ``get_all_groups``) and fails with raw errors on others (torchvision
``shufflenet_v2_x0_5``: ``ZeroDivisionError`` in its reshape index mapping, from the channel
shuffle). :func:`bounded_analysis` turns both into a :class:`~vs_plugin.errors.ModelError` that
names the architecture, within :data:`ANALYSIS_TIME_LIMIT_S` seconds.

The bound uses ``SIGALRM`` and so applies in the main thread of a Unix process (where the CLI
and tests run); elsewhere the analysis runs unbounded. Nested bounds keep the outermost one.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

import torch.nn as nn

from vs_plugin.errors import ModelError, VSPluginError

#: Seconds torch-pruning may spend analysing a model's graph (tracing, listing groups) before the
#: architecture is refused. Plain analyses of the verified families take under 5 s on 2 CPU cores.
ANALYSIS_TIME_LIMIT_S = 20.0
#: Errors torch-pruning raises on graphs it cannot analyse (seen: ZeroDivisionError, IndexError,
#: KeyError, AssertionError in its index mappings).
ANALYSIS_ERRORS = (ZeroDivisionError, IndexError, KeyError, AssertionError, TypeError, AttributeError, RuntimeError, ValueError)

_active = threading.local()


class _AnalysisTimeout(Exception):
    pass


def _refusal(model: nn.Module, what: str) -> str:
    return f"the structured path does not support {type(model).__name__}: torch-pruning's dependency analysis ({what})"


@contextlib.contextmanager
def bounded_analysis(model: nn.Module, what: str, seconds: Optional[float] = None) -> Iterator[None]:
    """Run torch-pruning's analysis of ``model`` within a time bound; errors become ``ModelError``.

    Args:
        model: the model analysed (named in the message).
        what: the step, e.g. "building the dependency graph".
        seconds: the bound; default :data:`ANALYSIS_TIME_LIMIT_S`.
    """
    if getattr(_active, "depth", 0):
        _active.depth += 1
        try:
            yield
        finally:
            _active.depth -= 1
        return
    limit = ANALYSIS_TIME_LIMIT_S if seconds is None else float(seconds)
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")

    def on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
        raise _AnalysisTimeout()

    previous = None
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    _active.depth = 1
    try:
        yield
    except _AnalysisTimeout:
        raise ModelError(f"{_refusal(model, what)} did not finish within {limit:.0f} s; see docs/torch-pruning.md for the verified families") from None
    except VSPluginError:
        raise
    except ANALYSIS_ERRORS as error:
        raise ModelError(f"{_refusal(model, what)} failed: {type(error).__name__}: {error}; see docs/torch-pruning.md for the verified families") from error
    finally:
        _active.depth = 0
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


__all__ = ["ANALYSIS_TIME_LIMIT_S", "bounded_analysis"]
