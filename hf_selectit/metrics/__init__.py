"""The validation metrics as `evaluate` modules shipped inside the package.

Each metric is a folder ``hf_selectit/metrics/<name>/<name>.py`` holding an ``evaluate.Metric``
(pairwise accuracy of preference pairs, ROC-AUC, Spearman, the Jaccard overlap of two
selections); ``evaluate.load(metric_path(name))`` loads it from the installed package, so it
works with no network (``HF_HUB_OFFLINE=1``). The formulas live once, in :mod:`.stats`. Every
module returns the figure, its percentile-bootstrap interval (``ci_low``, ``ci_high``) and the
number of items ``n``.

Example:
    >>> import evaluate
    >>> from hf_selectit.metrics import metric_path
    >>> auc = evaluate.load(metric_path("roc_auc"))
    >>> auc.compute(predictions=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])["roc_auc"]
    0.75
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError

METRIC_NAMES = ("pairwise_accuracy", "roc_auc", "spearman", "top_overlap")
_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()


def metric_path(name: str) -> str:
    """Folder of the shipped `evaluate` module `name` (what ``evaluate.load`` takes); a
    ConfigError when `name` is not one of :data:`METRIC_NAMES`."""
    if name not in METRIC_NAMES:
        raise ConfigError(f"Unknown metric {name!r}: expected one of {list(METRIC_NAMES)}.")
    return str(Path(__file__).resolve().parent / name)


def metric_info(description: str, inputs_description: str, **features: str) -> Any:
    """The `evaluate.MetricInfo` of a shipped metric: its texts and its input columns' dtypes."""
    import datasets
    import evaluate

    features = datasets.Features({k: datasets.Value(v) for k, v in features.items()})
    return evaluate.MetricInfo(description=description, citation="", inputs_description=inputs_description,
                               features=features)


def load_metric(name: str) -> Any:
    """``evaluate.load`` of a shipped metric, once per process (kept in memory, no cache files)."""
    import evaluate

    with _LOCK:
        if name not in _LOADED:
            _LOADED[name] = evaluate.load(metric_path(name), keep_in_memory=True)
        return _LOADED[name]
