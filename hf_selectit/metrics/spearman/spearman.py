"""Spearman rank correlation with a bootstrap interval (hf-selectit)."""

import evaluate
import numpy as np

from hf_selectit.metrics import metric_info, stats

_DESCRIPTION = """
Spearman's rank correlation between two columns (a score and a numeric rating, or two scores):
the Pearson correlation of their ranks, ties sharing their average rank (as
scipy.stats.spearmanr). Items with a missing (NaN) value on either side are left out and counted
in `n_missing`. The interval is the percentile bootstrap over items.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): the first column (a score).
    references (list of float): the second column (a rating or another score).
    n_boot, seed, confidence: bootstrap resamples (default 1000; 0: no interval), their seed (0)
        and the interval's coverage (0.95).
Returns:
    spearman, ci_low, ci_high, n, n_missing, n_boot, n_boot_undefined, confidence.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Spearman(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, predictions="float64", references="float64")

    def _compute(self, predictions, references, **boot):
        x, y = (np.asarray(v, dtype=np.float64) for v in (predictions, references))
        ok = stats.finite_mask(x, y)
        result = stats.estimate(stats.spearman_statistic(x[ok], y[ok]), int(ok.sum()), **boot)
        return {"spearman": result.pop("value"), **result, "n_missing": int((~ok).sum())}
