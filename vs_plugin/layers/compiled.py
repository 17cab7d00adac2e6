"""``torch.compile`` for the per-weight pass of the variational layers, where it pays.

In eager mode every element-wise op of the per-weight work (sigma^2, log alpha, the KL and its
gradient: :mod:`vs_plugin.layers.fused_kl`) is its own kernel with its own freshly allocated
output; on the paper's 784-500-50-10 student that costs more than the student's matrix products
(docs/performance.md). ``torch.compile`` turns the pass into one loop. Compiling costs a few
seconds once per process (less when inductor's on-disk cache is warm) and needs a C++ compiler on
CPU or Triton on GPU, so:

- mode ``"auto"`` (the default) compiles a pass the first time it runs over a tensor of at least
  :data:`COMPILE_MIN_NUMEL` elements, when a compiler is found; from then on every layer uses the
  compiled loop (one graph with dynamic shapes serves all sizes, and it calls faster than the
  eager ops even for small layers). A model whose layers are all smaller runs eagerly: there the
  saving is microseconds per step and would not repay the compilation;
- ``"on"`` compiles every pass, ``"off"`` none (``--no-compile-kl``, or the environment variable
  ``VS_PLUGIN_COMPILE=0``).

If compilation fails, the eager function is used from then on, with one warning. The compiled
and eager functions compute the same numbers (``tests/test_compiled_kl.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import warnings
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

COMPILE_MODES = ("auto", "on", "off")
#: In "auto" mode, a model whose layers all have fewer weights than this runs eagerly: for 25,000
#: weights the compiled pass saved ~0.2 ms per step (0.14 vs 0.33 ms, one thread), which a
#: few-second compilation repays only after tens of thousands of steps.
COMPILE_MIN_NUMEL = 1 << 16

_mode = "off" if os.environ.get("VS_PLUGIN_COMPILE", "").strip().lower() in ("0", "off", "false", "no") else "auto"
_failed = False


def set_compile_mode(mode: str) -> None:
    """Process-wide: ``"auto"``, ``"on"`` or ``"off"`` (see the module docstring)."""
    global _mode
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; accepted: {', '.join(COMPILE_MODES)}")
    _mode = mode


def compile_mode() -> str:
    """The process-wide compile mode."""
    return _mode


@contextlib.contextmanager
def compile_mode_set_to(mode: Optional[str]) -> Iterator[None]:
    """Run a block with another compile mode (None: leave it as it is)."""
    if mode is None:
        yield
        return
    previous = _mode
    set_compile_mode(mode)
    try:
        yield
    finally:
        set_compile_mode(previous)


def _compiler_available(device: torch.device) -> bool:
    if device.type == "cpu":
        return any(shutil.which(name) for name in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return False


_AVAILABLE: dict[str, bool] = {}


def _wants_compiled(first: Tensor, already_compiled: bool) -> bool:
    if _failed or _mode == "off":
        return False
    if _mode == "auto" and not already_compiled and first.numel() < COMPILE_MIN_NUMEL:
        return False
    device = first.device
    if device.type not in _AVAILABLE:
        _AVAILABLE[device.type] = _compiler_available(device)
    return _AVAILABLE[device.type]


class CompiledOrEager:
    """Calls ``function`` compiled or eagerly, as the compile mode and the first tensor's size say.

    One compiled function with a dynamic length serves every layer size: the tensor arguments
    are marked dynamic in their first dimension (``maybe_mark_dynamic``), while the non-tensor
    arguments (the clip, the KL kind) stay compile-time constants, folded into the loop, and
    torch.compile's guards recompile per dtype, device and value of those. (``dynamic=True``
    would also turn the floats into run-time inputs: each call then wraps them in tensors, and
    the loop reloads them, about 0.07 ms more per call on one CPU thread.)
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self._compiled: Optional[Callable[..., Any]] = None

    def __call__(self, *args: Any) -> Any:
        global _failed
        if not _wants_compiled(args[0], self._compiled is not None):
            return self.function(*args)
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.function)
            for arg in args:
                if isinstance(arg, Tensor) and arg.dim() > 0:
                    torch._dynamo.maybe_mark_dynamic(arg, 0)
            return self._compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
            _failed = True
            warnings.warn(
                f"compiling the variational pass failed ({type(error).__name__}: {str(error)[:200]}); using eager mode",
                stacklevel=2,
            )
            return self.function(*args)


def compiled_or_eager(function: Callable[..., Any]) -> CompiledOrEager:
    """Wrap ``function`` (pure tensor code) in a :class:`CompiledOrEager`."""
    return CompiledOrEager(function)


def reset_compile_failure() -> None:
    """Forget an earlier compilation failure (tests)."""
    global _failed
    _failed = False
