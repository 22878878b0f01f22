"""Pairwise accuracy of a scorer on preference pairs, with a bootstrap interval (hf-selectit)."""

import evaluate
import numpy as np

from hf_selectit.metrics import metric_info, stats

_DESCRIPTION = """
Share of preference pairs in which the chosen answer scores higher than the rejected one; a tie
counts 0.5, so a scorer that cannot tell the two apart gets 0.5. Pairs with a missing (NaN)
score on either side are left out and counted in `n_missing`. The interval is the percentile
bootstrap over pairs.
"""

_KWARGS_DESCRIPTION = """
Args:
    chosen (list of float): score of the chosen (preferred) answer of each pair.
    rejected (list of float): score of the rejected answer of the same pair.
    n_boot, seed, confidence: bootstrap resamples (default 1000; 0: no interval), their seed (0)
        and the interval's coverage (0.95).
Returns:
    pairwise_accuracy, ci_low, ci_high, n (pairs used), n_missing, wins, ties, losses,
    n_boot, n_boot_undefined, confidence.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PairwiseAccuracy(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, chosen="float64", rejected="float64")

    def _compute(self, chosen, rejected, **boot):
        c, r = (np.asarray(v, dtype=np.float64) for v in (chosen, rejected))
        ok = stats.finite_mask(c, r)
        outcomes = stats.pairwise_outcomes(c[ok], r[ok])
        result = stats.estimate(stats.mean_statistic(outcomes), len(outcomes), **boot)
        counts = {k: int((outcomes == v).sum()) for k, v in (("wins", 1.0), ("ties", 0.5), ("losses", 0.0))}
        return {"pairwise_accuracy": result.pop("value"), **result, "n_missing": int((~ok).sum()), **counts}
