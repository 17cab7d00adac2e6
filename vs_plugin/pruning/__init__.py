"""Pruning to a target: which units to keep (``target.py``), when (``schedule.py``), and keeping
pruned weights at zero while the survivors are fine-tuned (``masking.py``); reaching the target
while a variational student trains (``gradual.py``).

Shared by the Variational Student (scores = -log alpha) and the magnitude baselines
(scores = |w|), so both land on exactly the same number of kept weights.
"""

from .gradual import GradualLogAlphaPruning
from .masking import MaskKeeper, apply_keep_masks
from .schedule import cubic_sparsity
from .target import DEFAULT_LAYER_FLOOR, global_keep_masks, keep_count, log_alpha_scores, magnitude_scores

__all__ = [
    "DEFAULT_LAYER_FLOOR",
    "GradualLogAlphaPruning",
    "MaskKeeper",
    "apply_keep_masks",
    "cubic_sparsity",
    "global_keep_masks",
    "keep_count",
    "log_alpha_scores",
    "magnitude_scores",
]
