"""SelectIT's three levels as pure array math (docs/method.md sections 2-4).

Shapes: `rating_probs` is [..., K] with K = 5 rating levels (rows x prompts x 5 for a batch).
Everything here is numpy; no model, no I/O. NaN in gives NaN out (an unscorable row stays
unscored instead of getting a made-up value).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .errors import ConfigError

# The two ways P' is computed (see normalize_rating_probs); config.py checks the option against it.
NORMALIZATIONS = ("paper", "selectit-repo")
# The authors' code (selection.py) hard-codes these for exactly three models 7B/13B/70B, in that
# order. Note they do not sum to 1 (0.35 + 0.65 + 0.778): it is not the paper's weighting.
SELECTIT_REPO_WEIGHTS = (7 / 20, 13 / 20, 70 / 90)


def normalize_rating_probs(rating_probs: np.ndarray, normalization: str = "paper") -> np.ndarray:
    """P' [..., K] (float64) from the full-vocabulary probabilities of the K rating tokens, "paper" or
    "selectit-repo" normalisation (docs/method.md 2)."""
    p = np.asarray(rating_probs, dtype=np.float64)
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"normalization={normalization!r} is invalid: expected one of {list(NORMALIZATIONS)}.")
    q = p / p.sum(axis=-1, keepdims=True)
    if normalization == "paper":
        return q
    e = np.exp(q - np.nanmax(q, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def token_level_scores(normalized_probs: np.ndarray) -> np.ndarray:
    """S_token (docs/method.md 2): [..., K] P' in, [...] float64 scores out; NaN where a row has a NaN.

    Ties in the argmax go to the lower rating (numpy's argmax returns the first maximum).
    """
    p = np.asarray(normalized_probs, dtype=np.float64)
    k = p.shape[-1]
    filled = np.where(np.isnan(p), -np.inf, p)
    base = np.argmax(filled, axis=-1) + 1
    p_max = filled.max(axis=-1)
    spread = (k * p_max - p.sum(axis=-1)) / (k - 1)  # sum_i (P'_max - P'_i) / (K - 1)
    return np.where(np.isnan(p).any(axis=-1), np.nan, base * spread)


def sentence_level_scores(token_scores: np.ndarray, alpha: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(S_sent, population std) over the prompts (last axis), docs/method.md 3."""
    if alpha < 0:
        raise ConfigError(f"alpha={alpha!r} is invalid: expected a number >= 0 (paper: 0.2).")
    s = np.asarray(token_scores, dtype=np.float64)
    std = s.std(axis=-1, ddof=0)
    return s.mean(axis=-1) / (1.0 + alpha * std), std


def model_weights(*, n_models: int, params: Optional[Sequence[float]] = None,
                  weights: Union[Sequence[float], str, None] = None) -> np.ndarray:
    """The weight of each scoring model in the model level ([n_models] float64), docs/method.md 4:
    from exactly one of `params` (parameter counts) or `weights` (as given, or "selectit-repo")."""
    if (params is None) == (weights is None):
        raise ConfigError("Give exactly one of params=[...] (the paper's parameter-count weights) or "
                          "weights=[...] / weights='selectit-repo'.")
    if isinstance(weights, str):
        if weights != "selectit-repo":
            raise ConfigError(f"weights={weights!r} is invalid: expected a list of numbers or 'selectit-repo'.")
        if n_models != 3:
            raise ConfigError(f"weights='selectit-repo' needs exactly 3 score columns (7B, 13B, 70B in that "
                              f"order), got {n_models}. Use params=[...] for the paper's weighting.")
        return np.asarray(SELECTIT_REPO_WEIGHTS, dtype=np.float64)
    values = np.asarray(params if params is not None else weights, dtype=np.float64)
    name = "params" if params is not None else "weights"
    if values.ndim != 1 or len(values) != n_models:
        raise ConfigError(f"{name}={list(values)!r} has {values.size} entries for {n_models} score columns.")
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"{name}={list(values)!r} must be finite numbers.")
    if params is None:
        return values
    if np.any(values <= 0):
        raise ConfigError(f"params={list(values)!r} is invalid: parameter counts must be > 0.")
    return values / values.sum()


def model_level_scores(sentence_scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """S_model = sum_m w_m * S_sent_m: [n_models, rows] scores and [n_models] weights in, [rows] out."""
    w = np.asarray(weights, dtype=np.float64)
    return np.tensordot(w, np.asarray(sentence_scores, dtype=np.float64), axes=(0, 0))


def selectit_scores(rating_probs: np.ndarray, *, alpha: float = 0.2,
                    normalization: str = "paper") -> dict[str, np.ndarray]:
    """Token and sentence level for a batch, from [rows, prompts, K] raw rating-token probabilities.

    Returns "rating_probs" (P', [rows, prompts, K]), "token_scores" ([rows, prompts]),
    "sentence_score" ([rows]) and "uncertainty" ([rows]).
    """
    normalized = normalize_rating_probs(rating_probs, normalization)
    token = token_level_scores(normalized)
    sentence, std = sentence_level_scores(token, alpha)
    return {"rating_probs": normalized, "token_scores": token, "sentence_score": sentence, "uncertainty": std}


def expected_ratings(rating_logprobs: np.ndarray, values: Sequence[float]) -> dict[str, np.ndarray]:
    """Expected rating over K rating tokens, renormalised over those K (AlpaGasus, DEITA: docs/method.md
    7.3, 7.4). NOT SelectIT's S_token. Working from log-probabilities keeps it exact when every p_k
    is tiny.

    From [..., K] full-vocabulary log-probabilities and the K rating `values` (e.g. 0..5), returns
    "probs" ([..., K] renormalised), "score" ([...]), "argmax" ([...] the value of the most probable
    rating, ties to the lower; NaN where the input has a NaN) and "mass" ([...] sum_k p_k).
    """
    lp = np.asarray(rating_logprobs, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    top = np.max(np.where(np.isnan(lp), -np.inf, lp), axis=-1, keepdims=True)
    e = np.exp(lp - np.where(np.isfinite(top), top, 0.0))
    probs = e / e.sum(axis=-1, keepdims=True)
    argmax = v[np.argmax(np.where(np.isnan(probs), -np.inf, probs), axis=-1)]
    return {
        "probs": probs,
        "score": (probs * v).sum(axis=-1),
        "argmax": np.where(np.isnan(lp).any(axis=-1), np.nan, argmax),
        "mass": np.exp(lp).sum(axis=-1),
    }
