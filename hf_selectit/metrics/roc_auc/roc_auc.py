"""ROC-AUC of a score against a binary label, ties 0.5, with a bootstrap interval (hf-selectit)."""

import evaluate
import numpy as np

from hf_selectit.metrics import metric_info, stats

_DESCRIPTION = """
Area under the ROC curve of a score for a binary label: the probability that a random positive
item scores higher than a random negative one, a tie counting 0.5 (0.5 = no separation,
1.0 = every positive above every negative, below 0.5 = the score prefers the negatives).
Items with a missing (NaN) score are left out and counted in `n_missing`. The interval is the
percentile bootstrap over items; resamples with one class only are left out and counted in
`n_boot_undefined`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): the score of each item.
    references (list of int): 1 for a positive item, 0 for a negative one.
    n_boot, seed, confidence: bootstrap resamples (default 1000; 0: no interval), their seed (0)
        and the interval's coverage (0.95).
Returns:
    roc_auc, ci_low, ci_high, n, n_positive, n_negative, n_missing, n_boot, n_boot_undefined,
    confidence.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAuc(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, predictions="float64", references="int32")

    def _compute(self, predictions, references, **boot):
        scores, labels = np.asarray(predictions, dtype=np.float64), np.asarray(references)
        bad = sorted(set(np.unique(labels).tolist()) - {0, 1})
        if bad:
            raise ValueError(f"references must be 0 or 1; got {bad[:5]}.")
        ok = stats.finite_mask(scores)
        scores, labels = scores[ok], labels[ok].astype(bool)
        result = stats.estimate(stats.auc_statistic(scores, labels), len(scores), **boot)
        return {"roc_auc": result.pop("value"), **result, "n_positive": int(labels.sum()),
                "n_negative": int((~labels).sum()), "n_missing": int((~ok).sum())}
