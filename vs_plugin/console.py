"""What a run shows while it works, following the usual conventions.

- Progress bars only when asked *and* stderr is a terminal (a log file gets no redraws).
- Per-epoch lines go through the ``logging`` module (logger ``"vs_plugin"``). The library adds
  only a ``NullHandler``, so Python users see nothing unless they configure logging; the
  ``vs-plugin`` command prints INFO lines to stderr (none with ``--quiet``).
- Short jobs print a few per-epoch lines, not one per epoch: at most :data:`MAX_EPOCH_LINES`
  per phase, plus one at least every :data:`LINE_INTERVAL_S` seconds on long epochs. Every
  epoch is in ``report.json``'s history either way.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TextIO

LOGGER_NAME = "vs_plugin"
logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())

#: Per-epoch lines per training phase when epochs are short.
MAX_EPOCH_LINES = 10
#: A line at least this often (seconds) whatever the epoch count.
LINE_INTERVAL_S = 60.0



def is_terminal(stream: Optional[TextIO] = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def bars_enabled(progress: bool) -> bool:
    """Progress bars only when asked and stderr is a terminal (tqdm draws on stderr)."""
    return bool(progress) and is_terminal(sys.stderr)


class EpochLines:
    """Decides which epochs of a phase get a printed line.

    Args:
        total: epochs in the phase.
        max_lines: lines when epochs are short: every ``ceil(total / max_lines)``-th epoch and the last.
        interval_s: also print when this many seconds passed since the last line.
        clock: a monotonic clock (tests pass their own).
    """

    def __init__(self, total: int, max_lines: int = MAX_EPOCH_LINES, interval_s: float = LINE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.stride = max(1, math.ceil(total / max(max_lines, 1)))
        self.interval_s = interval_s
        self.clock = clock
        self._last = clock()

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) gets a line; call once per finished epoch."""
        now = self.clock()
        if epoch >= self.total or epoch % self.stride == 0 or now - self._last >= self.interval_s:
            self._last = now
            return True
        return False


@contextmanager
def cli_logging(verbose: bool = True, stream: Optional[TextIO] = None) -> Iterator[None]:
    """For one command: vs-plugin's INFO lines as plain text on stderr (WARNING and up if not verbose).

    The handler and the logger's level are removed again on exit, so a command run inside a
    Python process (tests, notebooks) leaves that process's logging as it found it.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
