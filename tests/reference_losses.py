"""Independent NumPy implementations of the loss formulas of docs/method.md, used to produce and
check the golden values in ``fixtures/golden_losses.json``. Written from the formulas, with
explicit loops where that makes them easy to read, not from the package's code."""

from __future__ import annotations

import math

import numpy as np

K1, K2, K3 = 0.63576, 1.87320, 1.48695


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def kd(student: np.ndarray, teacher: np.ndarray, t: float, reduction: str = "batchmean") -> float:
    log_ps, log_pt = log_softmax(student / t), log_softmax(teacher / t)
    pointwise = np.exp(log_pt) * (log_pt - log_ps)
    if reduction == "batchmean":
        return t * t * pointwise.sum() / student.shape[0]
    return 2 * t * t * pointwise.mean()


def kl_sparse_vd(log_alpha: np.ndarray) -> np.ndarray:
    sigmoid = 1.0 / (1.0 + np.exp(-(K2 + K3 * log_alpha)))
    return -(K1 * sigmoid - 0.5 * np.log1p(np.exp(-log_alpha)) - K1)


def kl_vbd(log_alpha: np.ndarray) -> np.ndarray:
    return 0.5 * np.log1p(np.exp(-log_alpha))


def log_alpha(theta: np.ndarray, log_sigma2: np.ndarray, clip: float = 8.0) -> np.ndarray:
    return np.clip(log_sigma2 - np.log(theta**2 + 1e-8), -clip, clip)


def bsr(student: np.ndarray, teacher: np.ndarray | None, norm: str) -> float:
    """Builds the concatenated tensor explicitly: blocks are indexed by the input unit."""
    s = student.reshape(student.shape[0], student.shape[1], -1)
    blocks = []
    width = s.shape[1] if teacher is None else max(s.shape[1], teacher.shape[1])
    t = None if teacher is None else teacher.reshape(teacher.shape[0], teacher.shape[1], -1)
    for m in range(width):
        values = []
        if m < s.shape[1]:
            values += list(s[:, m, :].ravel())
        if t is not None and m < t.shape[1]:
            values += list(t[:, m, :].ravel())
        blocks.append(np.array(values) if values else np.zeros(1))
    if norm == "l1_inf":
        return float(sum(np.abs(b).max() for b in blocks))
    return float(sum(math.sqrt((b**2).sum() + 1e-12) for b in blocks))


def locality(fs: np.ndarray, ft: np.ndarray, k: int, sigma2) -> float:
    b = fs.shape[0]
    dt = np.array([[((ft[i] - ft[j]) ** 2).sum() for j in range(b)] for i in range(b)])
    if sigma2 == "median":
        sigma2 = float(np.median(dt[~np.eye(b, dtype=bool)]))
    total = 0.0
    for i in range(b):
        order = [j for j in np.argsort(dt[i], kind="stable") if j != i][:k]
        for j in order:
            total += math.exp(-dt[i, j] / sigma2) * ((fs[i] - fs[j]) ** 2).sum()
    return total / (b * k)
