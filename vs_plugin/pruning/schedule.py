"""When to prune: the cubic sparsity schedule of gradual magnitude pruning.

Zhu & Gupta 2017, "To prune, or not to prune" (the schedule NNI's AGP pruner uses):

.. math::

    s_t = s_f + (s_i - s_f)\\left(1 - \\frac{t - t_0}{n\\,\\Delta t}\\right)^3

for t in [t_0, t_0 + n Delta t]: sparsity rises fast at first, while the network can still
recover, and slowly near the target.
"""

from __future__ import annotations

from ..errors import ConfigError


def cubic_sparsity(step: int, total_steps: int, final: float, initial: float = 0.0) -> float:
    """Target sparsity after ``step`` of ``total_steps`` pruning steps (``final`` from the last on)."""
    if total_steps < 1:
        raise ConfigError(f"a pruning schedule needs at least one step, got {total_steps}")
    if not 0.0 <= initial <= final < 1.0:
        raise ConfigError(f"need 0 <= initial ({initial}) <= final ({final}) < 1")
    progress = min(max(step, 0), total_steps) / total_steps
    return final + (initial - final) * (1.0 - progress) ** 3
