"""formulas.py against numbers computed by hand (METHOD.md sections 2-4)."""

import numpy as np
import pytest

from hf_selectit.errors import ConfigError
from hf_selectit.formulas import (
    SELECTIT_REPO_WEIGHTS,
    model_level_scores,
    model_weights,
    normalize_rating_probs,
    selectit_scores,
    sentence_level_scores,
    token_level_scores,
)


def test_paper_normalisation_divides_by_sum():
    p = np.array([0.1, 0.2, 0.0, 0.05, 0.15])
    np.testing.assert_allclose(normalize_rating_probs(p), [0.2, 0.4, 0.0, 0.1, 0.3])


def test_selectit_repo_normalisation_is_softmax_of_paper():
    p = np.array([0.1, 0.2, 0.0, 0.05, 0.15])
    q = np.array([0.2, 0.4, 0.0, 0.1, 0.3])
    expected = np.exp(q) / np.exp(q).sum()
    np.testing.assert_allclose(normalize_rating_probs(p, "selectit-repo"), expected)


def test_unknown_normalisation_names_value_and_choices():
    with pytest.raises(ConfigError, match=r"normalization='softmax'.*'paper', 'selectit-repo'"):
        normalize_rating_probs(np.ones(5), "softmax")


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_one_hot_gives_the_rating(k):
    p = np.zeros(5)
    p[k - 1] = 1.0
    assert token_level_scores(p) == pytest.approx(k)


def test_uniform_gives_zero():
    assert token_level_scores(np.full(5, 0.2)) == pytest.approx(0.0)


def test_hand_computed_token_score():
    # P' = [0.1, 0.2, 0.4, 0.2, 0.1]: S_base = 3,
    # sum_i (0.4 - P'_i) = 0.3 + 0.2 + 0 + 0.2 + 0.3 = 1.0 -> S = 3 * 1.0 / 4 = 0.75
    assert token_level_scores(np.array([0.1, 0.2, 0.4, 0.2, 0.1])) == pytest.approx(0.75)


def test_ties_go_to_lower_rating():
    # ratings 2 and 4 tie at 0.4: S_base = 2; sum (0.4 - P'_i) = 0.3 + 0 + 0.3 + 0 + 0.4 = 1.0
    p = np.array([0.1, 0.4, 0.1, 0.4, 0.0])
    assert token_level_scores(p) == pytest.approx(2 * 1.0 / 4)


def test_selectit_repo_range_is_compressed():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=1000)
    s = token_level_scores(normalize_rating_probs(p, "selectit-repo"))
    assert s.max() < 1.3 and s.min() >= 0
    s_paper = token_level_scores(normalize_rating_probs(p))
    assert s_paper.max() <= 5 and s_paper.min() >= 0


def test_sentence_level_hand_computed():
    # mean 3, population std sqrt(2): 3 / (1 + 0.2 * sqrt 2)
    s, std = sentence_level_scores(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), alpha=0.2)
    assert std == pytest.approx(np.sqrt(2.0))
    assert s == pytest.approx(3.0 / (1.0 + 0.2 * np.sqrt(2.0)))


def test_alpha_zero_is_plain_mean():
    s, _ = sentence_level_scores(np.array([[1.0, 4.0], [2.0, 2.0]]), alpha=0.0)
    np.testing.assert_allclose(s, [2.5, 2.0])


def test_negative_alpha_rejected():
    with pytest.raises(ConfigError, match="alpha=-1"):
        sentence_level_scores(np.ones(5), alpha=-1)


def test_model_level_parameter_weights_hand_computed():
    w = model_weights(n_models=3, params=[7e9, 13e9, 70e9])
    np.testing.assert_allclose(w, [7 / 90, 13 / 90, 70 / 90])
    fused = model_level_scores(np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 0.0]]), w)
    np.testing.assert_allclose(fused, [(7 * 1 + 13 * 2 + 70 * 3) / 90, (7 * 2 + 13 * 2) / 90])


def test_selectit_repo_weights_need_three_models():
    np.testing.assert_allclose(model_weights(n_models=3, weights="selectit-repo"), SELECTIT_REPO_WEIGHTS)
    with pytest.raises(ConfigError, match="exactly 3"):
        model_weights(n_models=2, weights="selectit-repo")


@pytest.mark.parametrize("params", [[0, 1e9], [-7e9, 13e9]])
def test_non_positive_params_rejected(params):
    with pytest.raises(ConfigError, match="must be > 0"):
        model_weights(n_models=2, params=params)


def test_params_and_weights_are_exclusive():
    with pytest.raises(ConfigError, match="exactly one"):
        model_weights(n_models=2, params=[1, 2], weights=[0.5, 0.5])


def test_nan_row_stays_nan():
    probs = np.array([[[0.1, 0.2, 0.3, 0.2, 0.2]] * 2, [[np.nan] * 5] * 2])
    out = selectit_scores(probs)
    assert np.isfinite(out["sentence_score"][0])
    assert np.isnan(out["sentence_score"][1]) and np.isnan(out["token_scores"][1]).all()


def test_expected_ratings_renormalise_over_the_ratings():
    from hf_selectit.formulas import expected_ratings

    p = np.array([0.02, 0.01, 0.01, 0.0, 0.005, 0.005])  # 5% of the mass on the six digits
    with np.errstate(divide="ignore"):
        out = expected_ratings(np.log(p), range(6))
    q = p / p.sum()
    assert out["score"] == pytest.approx(float((q * np.arange(6)).sum()))
    assert out["argmax"] == 0 and out["mass"] == pytest.approx(0.05)
    np.testing.assert_allclose(out["probs"], q)
    # DEITA: softmax over the six logits is the same thing; tiny probabilities stay exact.
    logits = np.array([-900.0, -901.0, -899.0, -905.0, -899.0, -950.0])
    out = expected_ratings(logits, range(1, 7))
    e = np.exp(logits - logits.max())
    assert out["score"] == pytest.approx(float((e / e.sum() * np.arange(1, 7)).sum()))
    assert out["argmax"] == 3  # tie between 3 and 5 goes to the lower rating
    nan = expected_ratings(np.full((2, 6), np.nan), range(6))
    assert np.isnan(nan["score"]).all() and np.isnan(nan["argmax"]).all() and np.isnan(nan["mass"]).all()
