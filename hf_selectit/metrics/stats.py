"""The numbers behind the validation metrics, with weights so one code path serves the point
estimate (every weight 1) and each bootstrap resample (weight = how often an item was drawn).

Pure numpy, so each formula exists once: the `evaluate` modules next to this file and
:mod:`hf_selectit.report` call these functions. Each ``*_statistic(...)`` sorts or ranks its
inputs once and returns a function of the weights, so a bootstrap resample costs a few
``bincount`` passes (O(n)) rather than a new sort: 1,000 resamples of a million items take
seconds, not minutes.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

Statistic = Callable[[np.ndarray], float]


def _float(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def pairwise_outcomes(chosen, rejected) -> np.ndarray:
    """1.0 where chosen > rejected, 0.5 on a tie, 0.0 where chosen < rejected."""
    c, r = _float(chosen), _float(rejected)
    return np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))


def mean_statistic(values) -> Statistic:
    """Weighted mean of `values` (pairwise accuracy is the mean of the pair outcomes)."""
    v = _float(values)

    def stat(w: np.ndarray) -> float:
        total = w.sum()
        return float(np.dot(w, v) / total) if total > 0 else float("nan")

    return stat


def auc_statistic(scores, labels) -> Statistic:
    """ROC-AUC of `scores` for binary `labels` (true = positive) as a function of weights: the
    probability that a random positive item scores higher than a random negative one, ties 0.5
    (the Mann-Whitney form; equals the area under the ROC curve with ties interpolated).

    Example:
        >>> auc_statistic([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])(np.ones(4))
        0.75
    """
    s = _float(scores)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if len(s) != len(y):
        raise ValueError(f"scores has {len(s)} items but labels has {len(y)}.")
    uniq, inv = np.unique(s, return_inverse=True)
    n_u = len(uniq)
    inv_pos, inv_neg = inv[y], inv[~y]

    def stat(w: np.ndarray) -> float:
        pos = np.bincount(inv_pos, weights=w[y], minlength=n_u)
        neg = np.bincount(inv_neg, weights=w[~y], minlength=n_u)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos <= 0 or n_neg <= 0:
            return float("nan")
        below = np.cumsum(neg) - neg  # negatives strictly below each distinct score
        return float(np.dot(pos, below + 0.5 * neg) / (n_pos * n_neg))

    return stat


def _weighted_ranks(inv: np.ndarray, n_u: int, w: np.ndarray) -> np.ndarray:
    # Average rank (1-based) of each distinct value among the weighted items, per item.
    counts = np.bincount(inv, weights=w, minlength=n_u)
    rank_u = np.cumsum(counts) - counts + (counts + 1.0) / 2.0
    return rank_u[inv]


def spearman_statistic(x, y) -> Statistic:
    """Spearman's rank correlation of `x` and `y` as a function of weights: the Pearson correlation
    of the average ranks (ties get their mean rank), as ``scipy.stats.spearmanr``."""
    a, b = _float(x), _float(y)
    if len(a) != len(b):
        raise ValueError(f"x has {len(a)} items but y has {len(b)}.")
    ua, inv_a = np.unique(a, return_inverse=True)
    ub, inv_b = np.unique(b, return_inverse=True)

    def stat(w: np.ndarray) -> float:
        total = w.sum()
        if total <= 0:
            return float("nan")
        ra = _weighted_ranks(inv_a, len(ua), w)
        rb = _weighted_ranks(inv_b, len(ub), w)
        ma, mb = np.dot(w, ra) / total, np.dot(w, rb) / total
        da, db = ra - ma, rb - mb
        va, vb = np.dot(w, da * da), np.dot(w, db * db)
        if va <= 0 or vb <= 0:
            return float("nan")
        return float(np.dot(w, da * db) / np.sqrt(va * vb))

    return stat


def jaccard_statistic(a, b) -> Statistic:
    """Jaccard overlap |A and B| / |A or B| of two boolean membership vectors, weighted."""
    sa, sb = (np.asarray(v).reshape(-1).astype(bool) for v in (a, b))
    if len(sa) != len(sb):
        raise ValueError(f"a has {len(sa)} items but b has {len(sb)}.")
    both, either = sa & sb, sa | sb

    def stat(w: np.ndarray) -> float:
        union = np.dot(w, either)
        return float(np.dot(w, both) / union) if union > 0 else float("nan")

    return stat


def estimate(statistic: Statistic, n: int, *, n_boot: int = 1000, seed: int = 0,
             confidence: float = 0.95) -> dict:
    """`statistic` (a function of per-item weights, one of the ``*_statistic`` builders) on all
    `n` items and its percentile-bootstrap interval: `n_boot` resamples (0: none) of n items with
    replacement, seeded ``numpy.random.default_rng(seed)``; resamples where the statistic is
    undefined (one class only, a constant column) are left out and counted. Returns
    ``{"value", "ci_low", "ci_high", "n", "n_boot", "n_boot_undefined", "confidence"}``, floats
    None where undefined."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is invalid: expected a number in (0, 1).")
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot!r} is invalid: expected an integer >= 0.")
    value = statistic(np.ones(n)) if n > 0 else float("nan")
    low, high, undefined = float("nan"), float("nan"), 0
    if n > 0 and n_boot > 0 and np.isfinite(value):
        rng = np.random.default_rng(seed)
        draws = np.array([statistic(np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64))
                          for _ in range(n_boot)])
        ok = draws[np.isfinite(draws)]
        undefined = int(n_boot - len(ok))
        if len(ok):
            tail = (1.0 - confidence) / 2.0 * 100.0
            low, high = (float(v) for v in np.percentile(ok, [tail, 100.0 - tail]))
    return {"value": _none_if_nan(value), "ci_low": _none_if_nan(low), "ci_high": _none_if_nan(high),
            "n": int(n), "n_boot": int(n_boot), "n_boot_undefined": undefined,
            "confidence": float(confidence)}


def finite_mask(*arrays) -> np.ndarray:
    """Rows where every array is finite (the items a statistic can use)."""
    return np.logical_and.reduce([np.isfinite(_float(arr)) for arr in arrays])


def _none_if_nan(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None
