"""Jaccard overlap of two selected subsets of the same rows, with a bootstrap interval (hf-selectit)."""

import evaluate
import numpy as np

from hf_selectit.metrics import metric_info, stats

_DESCRIPTION = """
Overlap of two selections of the same rows (for example the top 20% by two different scores):
the Jaccard index |A and B| / |A or B| (1 = the same rows, 0 = disjoint), and the share of A's
rows that B also selected. Two independent random selections of k of N rows each have an
expected Jaccard of about q / (2 - q) with q = k / N. The interval is the percentile bootstrap
over rows.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of bool): whether each row is in selection A.
    references (list of bool): whether each row is in selection B.
    n_boot, seed, confidence: bootstrap resamples (default 1000; 0: no interval), their seed (0)
        and the interval's coverage (0.95).
Returns:
    jaccard, ci_low, ci_high, n (rows), selected_a, selected_b, both, share_of_a, n_boot,
    n_boot_undefined, confidence.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopOverlap(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, predictions="bool", references="bool")

    def _compute(self, predictions, references, **boot):
        a, b = (np.asarray(v, dtype=bool) for v in (predictions, references))
        result = stats.estimate(stats.jaccard_statistic(a, b), len(a), **boot)
        both, n_a = int((a & b).sum()), int(a.sum())
        return {"jaccard": result.pop("value"), **result, "selected_a": n_a, "selected_b": int(b.sum()),
                "both": both, "share_of_a": both / n_a if n_a else None}
