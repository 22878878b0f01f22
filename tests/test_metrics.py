"""The shipped `evaluate` modules against hand-computed values, and their offline loading."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from hf_selectit.metrics import METRIC_NAMES, load_metric, metric_path, stats
from hf_selectit.errors import ConfigError

NAN = float("nan")


def test_pairwise_accuracy_ties_count_half_and_missing_pairs_are_left_out():
    # Pairs: win, loss, tie, NaN on one side (left out) -> (1 + 0 + 0.5) / 3.
    result = load_metric("pairwise_accuracy").compute(
        chosen=[3.0, 1.0, 2.0, 2.0], rejected=[1.0, 2.0, 2.0, NAN], n_boot=200, seed=0)
    assert result["pairwise_accuracy"] == pytest.approx(0.5)
    assert (result["n"], result["n_missing"]) == (3, 1)
    assert (result["wins"], result["ties"], result["losses"]) == (1, 1, 1)
    assert result["ci_low"] <= 0.5 <= result["ci_high"]


def test_roc_auc_by_hand_with_and_without_ties():
    auc = load_metric("roc_auc")
    # Positives 0.35, 0.8; negatives 0.1, 0.4: 3 of 4 (pos, neg) pairs ordered right.
    assert auc.compute(predictions=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1],
                       n_boot=0)["roc_auc"] == pytest.approx(0.75)
    # Positives 1, 2; negatives 1, 0: (1 vs 1) tie 0.5, the other three pairs 1 -> 3.5 / 4.
    result = auc.compute(predictions=[1.0, 1.0, 2.0, 0.0], references=[1, 0, 1, 0], n_boot=0)
    assert result["roc_auc"] == pytest.approx(0.875)
    assert (result["n_positive"], result["n_negative"], result["n"]) == (2, 2, 4)
    # A constant score cannot separate: 0.5; a NaN score is left out and counted.
    result = auc.compute(predictions=[5.0, 5.0, 5.0, NAN], references=[1, 0, 1, 0], n_boot=0)
    assert result["roc_auc"] == pytest.approx(0.5)
    assert result["n_missing"] == 1 and result["n"] == 3


def test_roc_auc_rejects_labels_other_than_0_and_1():
    with pytest.raises(ValueError, match="0 or 1"):
        load_metric("roc_auc").compute(predictions=[0.1, 0.2], references=[0, 2], n_boot=0)


def test_spearman_by_hand_and_against_scipy_with_ties():
    sp = load_metric("spearman")
    # d = (0, 1, 1, 0): 1 - 6 * 2 / (4 * 15) = 0.8.
    assert sp.compute(predictions=[1, 2, 3, 4], references=[1, 3, 2, 4], n_boot=0)["spearman"] == pytest.approx(0.8)
    assert sp.compute(predictions=[1, 2, 3], references=[3, 2, 1], n_boot=0)["spearman"] == pytest.approx(-1.0)
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 60).astype(float)  # many ties
    y = x + rng.integers(0, 3, 60)
    expected = scipy_stats.spearmanr(x, y).statistic
    assert sp.compute(predictions=x, references=y, n_boot=0)["spearman"] == pytest.approx(expected)


def test_top_overlap_jaccard_by_hand():
    result = load_metric("top_overlap").compute(predictions=[1, 1, 0, 0], references=[0, 1, 1, 0], n_boot=0)
    assert result["jaccard"] == pytest.approx(1 / 3)
    assert (result["both"], result["selected_a"], result["share_of_a"]) == (1, 2, 0.5)


def test_weights_equal_repeated_items():
    # A bootstrap resample is the statistic with weights = draw counts; check against repeats.
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=30).round(1), rng.integers(0, 2, 30).astype(bool)
    x2 = rng.normal(size=30).round(1)
    w = rng.integers(0, 4, 30)
    rep = np.repeat(np.arange(30), w)
    assert stats.auc_statistic(s, y)(w.astype(float)) == pytest.approx(stats.auc_statistic(s[rep], y[rep])(np.ones(len(rep))))
    assert stats.spearman_statistic(s, x2)(w.astype(float)) == pytest.approx(
        stats.spearman_statistic(s[rep], x2[rep])(np.ones(len(rep))))


def _separable(n=300, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return rng.normal(size=n) + y, y


@pytest.mark.parametrize("name", ["roc_auc", "spearman"])
def test_bootstrap_interval_covers_the_estimate_and_is_reproducible(name):
    s, y = _separable()
    metric = load_metric(name)
    a = metric.compute(predictions=s, references=y, n_boot=300, seed=7)
    b = metric.compute(predictions=s, references=y, n_boot=300, seed=7)
    c = metric.compute(predictions=s, references=y, n_boot=300, seed=8)
    assert a["ci_low"] < a[name] < a["ci_high"]
    assert a["ci_high"] - a["ci_low"] < 0.3
    assert a == b                                    # fixed seed: identical interval
    assert (c["ci_low"], c["ci_high"]) != (a["ci_low"], a["ci_high"])
    assert a["n"] == 300 and a["n_boot"] == 300


def test_estimate_interval_width_shrinks_with_items():
    narrow = stats.estimate(stats.mean_statistic(np.tile([1.0, 0.0], 500)), 1000, seed=0)
    wide = stats.estimate(stats.mean_statistic(np.tile([1.0, 0.0], 10)), 20, seed=0)
    assert narrow["value"] == wide["value"] == 0.5
    assert narrow["ci_high"] - narrow["ci_low"] < wide["ci_high"] - wide["ci_low"]


def test_unknown_metric_name():
    with pytest.raises(ConfigError, match="roc_auc"):
        metric_path("auc")


def test_modules_load_offline_in_a_clean_process(tmp_path):
    """evaluate.load(<path in the package>) with the Hub unreachable and offline mode on."""
    code = (
        "import json, evaluate\n"
        "from hf_selectit.metrics import metric_path\n"
        "out = {}\n"
        "out['pairwise_accuracy'] = evaluate.load(metric_path('pairwise_accuracy')).compute("
        "chosen=[2.0, 1.0, 1.0], rejected=[1.0, 1.0, 3.0], n_boot=10)['pairwise_accuracy']\n"
        "out['roc_auc'] = evaluate.load(metric_path('roc_auc')).compute("
        "predictions=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1], n_boot=10)['roc_auc']\n"
        "out['spearman'] = evaluate.load(metric_path('spearman')).compute("
        "predictions=[1, 2, 3, 4], references=[1, 3, 2, 4], n_boot=10)['spearman']\n"
        "out['top_overlap'] = evaluate.load(metric_path('top_overlap')).compute("
        "predictions=[1, 1, 0, 0], references=[0, 1, 1, 0], n_boot=10)['jaccard']\n"
        "print(json.dumps(out))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        # Nothing listens here: any attempt to reach a Hub fails instead of hanging.
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == pytest.approx({"pairwise_accuracy": 0.5, "roc_auc": 0.75, "spearman": 0.8,
                                 "top_overlap": 1 / 3})
    assert set(out) == set(METRIC_NAMES)
    assert not math.isnan(out["roc_auc"])
