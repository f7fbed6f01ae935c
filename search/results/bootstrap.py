"""The studentized bootstrap of a mean (bootstrap-t), for many samples of one length at once.

For a sample x_1..x_n with mean x̄ and standard error se, the bootstrap-t draws B resamples
(n values with replacement), computes t*_b = (x̄*_b − x̄) / se*_b for each, and reads the tails of
the t-statistic from them instead of from Student's t (Efron & Tibshirani 1993, ch. 12; Hall
1992, §3.10). Its one-sided errors are of order 1/n where the t-test's are of order 1/√n, so
skew, steps and ties hurt it less; a resample without spread has t* = ±∞ (the sign of its
mean's move), so a sample with few distinct values gets heavy tails, not an infinite statistic.

Deterministic: the resamples of a sample of length n come from a generator seeded by
(:data:`SEED`, n, chunk), so the same numbers give the same counts on every machine, whatever
the order or company of the samples. A larger B extends the same stream (its first draws are
those of a smaller one).
"""

from __future__ import annotations

import math

import numpy as np

SEED = 20_260_531
CHUNK = 10_000  # resamples generated, and compared, at a time
MIN_RESAMPLES = 9_999
MAX_RESAMPLES = 199_999


def resamples_for(level: float) -> int | None:
    """How many resamples resolve p-values at ``level``: enough for 20 beyond it (9,999 to 199,999);
    ``None`` for a level that even the most cannot resolve (a race's early look at many
    configurations, where the spending function spends almost nothing): nothing can be rejected there."""
    need = math.ceil(20.0 / level) - 1 if level > 0 else math.inf
    return None if need > MAX_RESAMPLES else int(max(MIN_RESAMPLES, need))


def _weights(n: int, chunk: int, size: int) -> np.ndarray:
    """Chunk ``chunk`` of the resampling weights for samples of length ``n``: ``size`` rows of counts / n."""
    rng = np.random.default_rng([SEED, n, chunk])
    picks = rng.integers(0, n, size=(size, n))
    counts = np.bincount((np.arange(size)[:, None] * n + picks).ravel(), minlength=size * n)
    return counts.reshape(size, n) / n


def tail_counts(x: np.ndarray, upper: np.ndarray, lower: np.ndarray, resamples: int,
                rows_at_once: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """For samples ``x`` (N rows of n values, each with spread), and thresholds ``upper`` and
    ``lower`` (N x k each): how many of ``resamples`` bootstrap t-statistics of row i are at least
    ``upper[i, j]``, and how many at most ``lower[i, j]``. A tail probability is then
    (1 + count) / (resamples + 1)."""
    x = np.asarray(x, dtype=np.float64)
    N, n = x.shape
    up = np.zeros(upper.shape, dtype=np.int64)
    low = np.zeros(lower.shape, dtype=np.int64)
    centred = x - x.mean(axis=1, keepdims=True)
    centred /= np.max(np.abs(centred), axis=1, keepdims=True)  # t* does not depend on the scale: none overflows
    scale = np.max(centred * centred, axis=1, keepdims=True)  # the largest a resample's second moment can be
    for c, start in enumerate(range(0, resamples, CHUNK)):
        w = _weights(n, c, min(CHUNK, resamples - start)).T  # n x b
        for r in range(0, N, rows_at_once):
            rows = slice(r, r + rows_at_once)
            xc = centred[rows]
            m1 = xc @ w  # the resample's mean minus the sample's
            m2 = (xc * xc) @ w
            var = m2 - m1 * m1
            flat = var <= 1e-12 * scale[rows]  # a resample of one repeated value: no spread
            var *= n / (n - 1) / n
            with np.errstate(divide="ignore", invalid="ignore"):
                t = m1 / np.sqrt(var)
            if flat.any():  # its t* is infinite, on the side its mean moved to (0 if it did not)
                moved = m1[flat]
                far = np.abs(moved) > 1e-9 * np.sqrt(scale[rows].max())
                t[flat] = np.where(far, np.where(moved > 0, np.inf, -np.inf), 0.0)
            for j in range(upper.shape[1]):
                up[rows, j] += np.count_nonzero(t >= upper[rows, j, None], axis=1)
            for j in range(lower.shape[1]):
                low[rows, j] += np.count_nonzero(t <= lower[rows, j, None], axis=1)
    return up, low
