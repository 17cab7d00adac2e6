"""Locality-preserving loss (Chen, Wang, Xu, Xu, Tao, "Learning Student Networks via Feature
Embedding", IEEE TNNLS 2021, arXiv 1812.06597).

Student features should keep the neighbourhood structure of the teacher's features, with no
extra parameters, so the two feature widths may differ:

.. math::

    L_{LP} = \\frac{1}{B k} \\sum_i \\sum_{j \\in kNN_T(i)} a_{ij} \\,\\| f_s(x_i) - f_s(x_j) \\|^2,
    \\qquad a_{ij} = \\exp\\big(-\\| f_t(x_i) - f_t(x_j) \\|^2 / \\sigma^2\\big)

kNN_T(i) are the k nearest neighbours of sample i within the batch in teacher feature space,
computed without gradient. The weight gamma of the paper is applied by the objective
(``lp_gamma``). Defaults k = 5, sigma^2 = 2 and gamma = 1.5 come from a public reimplementation,
not from the paper; ``sigma2="median"`` uses the median pairwise squared teacher distance.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from ..errors import ConfigError


def _pairwise_sq_distances(x: Tensor) -> Tensor:
    squared = (x * x).sum(dim=1)
    return (squared[:, None] + squared[None, :] - 2.0 * x @ x.T).clamp_min(0.0)


def locality_preserving_loss(
    student_features: Tensor, teacher_features: Tensor, k: int = 5, sigma2: Union[float, str] = 2.0
) -> Tensor:
    """L_LP without the gamma weight (see the module docstring).

    Args:
        student_features: (B, ...) features of the student, flattened per sample.
        teacher_features: (B, ...) features of the teacher, flattened per sample; constants.
        k: neighbours per sample; capped at B - 1.
        sigma2: heat-kernel width > 0, or ``"median"``.
    """
    if k < 1:
        raise ConfigError(f"locality-preserving k must be >= 1, got {k}")
    if not (sigma2 == "median" or (isinstance(sigma2, (int, float)) and sigma2 > 0)):
        raise ConfigError(f"locality-preserving sigma2 must be > 0 or 'median', got {sigma2!r}")
    batch = student_features.shape[0]
    if teacher_features.shape[0] != batch:
        raise ConfigError(f"student ({batch}) and teacher ({teacher_features.shape[0]}) feature batches differ")
    student = student_features.reshape(batch, -1).float()
    if batch < 2:
        return student.sum() * 0.0
    neighbours = min(k, batch - 1)
    with torch.no_grad():
        teacher = teacher_features.reshape(batch, -1).float()
        teacher_distances = _pairwise_sq_distances(teacher)
        off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=teacher.device)
        width = teacher_distances[off_diagonal].quantile(0.5).clamp_min(1e-12) if sigma2 == "median" else float(sigma2)
        masked = teacher_distances.masked_fill(~off_diagonal, float("inf"))
        knn = masked.topk(neighbours, dim=1, largest=False).indices  # (B, k)
        affinity = torch.exp(-teacher_distances.gather(1, knn) / width)
    student_distances = (student[:, None, :] - student[knn]).pow(2).sum(dim=-1)  # (B, k)
    return (affinity * student_distances).sum() / (batch * neighbours)
