"""Is a finished student still useful? Chance-level accuracy and near-empty students, said plainly.

A student can be "compressed" into uselessness without any error: on a few hundred samples the
KL/N term prunes it to a handful of weights at chance accuracy. Every report and table calls
this out (``report.json`` ``warnings``, the printed summary, the comparison tables).
"""

from __future__ import annotations

from typing import Optional

#: Accuracy within this share of the way from chance to 100% counts as "near chance".
NEAR_CHANCE_MARGIN = 0.1
#: Fewer non-zero weights than this many per class: "keeps almost no weights".
MIN_WEIGHTS_PER_CLASS = 2
#: Appended to an accuracy cell in comparison tables.
NEAR_CHANCE_MARK = " (near chance)"


def chance_accuracy(num_classes: int) -> float:
    """Top-1 accuracy of a constant guess on balanced classes: 1 / C."""
    return 1.0 / max(int(num_classes), 1)


def is_near_chance(accuracy: float, num_classes: Optional[int]) -> bool:
    """accuracy < chance + NEAR_CHANCE_MARGIN * (1 - chance); False when C is unknown."""
    if not num_classes or num_classes < 2:
        return False
    chance = chance_accuracy(num_classes)
    return accuracy < chance + NEAR_CHANCE_MARGIN * (1.0 - chance)


def health_warnings(accuracy: float, num_classes: Optional[int], nnz: int, train_samples: Optional[int]) -> list[str]:
    """Plain-words warnings for a student at or near chance, or with almost no weight left."""
    warnings = []
    data = f" on N = {train_samples:,} training samples" if train_samples else ""
    if is_near_chance(accuracy, num_classes):
        warnings.append(
            f"the student is at or near chance: {100 * accuracy:.2f}% top-1 where guessing gives "
            f"{100 * chance_accuracy(num_classes):.2f}% ({num_classes} classes){data}. It is not a usable model; lower "
            "--kl-weight or --target-sparsity, raise --kl-min-samples, or train longer"
        )
    if num_classes and 0 < nnz < MIN_WEIGHTS_PER_CLASS * num_classes:
        warnings.append(f"the student keeps almost no weights: {nnz:,} non-zero for {num_classes} classes")
    return warnings
