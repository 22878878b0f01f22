"""Which vocabulary entries are the rating digits, read from the tokenizer, never hard-coded
(docs/method.md 2, 7.3-7.5). SelectIT rates "1".."5", AlpaGasus "0".."5", DEITA "1".."6".

A tokenizer that cannot give distinct single tokens is an error: falling back to a constant
score would be a made-up score.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from typing import Any, Optional

from .engine import warn_once
from .errors import RatingTokenError

logger = logging.getLogger(__name__)

RATINGS = ("1", "2", "3", "4", "5")  # SelectIT
RATINGS_0_5 = ("0", "1", "2", "3", "4", "5")  # AlpaGasus
RATINGS_1_6 = ("1", "2", "3", "4", "5", "6")  # DEITA
# How tokenizers spell a leading space inside a piece: byte-level BPE, SentencePiece, plain.
_SPACE_MARKERS = ("\u0120", "\u2581", " ")


@dataclass(frozen=True)
class RatingTokens:
    """Token ids and pieces of the rating digits, and which variant they are ("bare" or "space")."""

    ids: tuple[int, ...]
    pieces: tuple[str, ...]
    variant: str

    def to_dict(self) -> dict:
        return {"ids": list(self.ids), "pieces": list(self.pieces), "variant": self.variant}


def _single_token(tokenizer: Any, vocab: dict, text: str, pieces: tuple[str, ...]) -> Optional[int]:
    """The id of `text` if the tokenizer has it as one token, else None."""
    candidates = [vocab.get(piece) for piece in pieces]
    # Tokenizers with unusual piece spellings: trust encode() when it gives one token.
    encoded = tokenizer.encode(text, add_special_tokens=False)
    if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
        candidates.append(encoded[0])
    spelled = (text, text.strip())
    return next((i for i in candidates if i is not None and tokenizer.decode([i]) in spelled), None)


def find_rating_tokens(tokenizer: Any, *, model_name: str = "the model", ratings: tuple[str, ...] = RATINGS,
                       method: str = "SelectIT") -> RatingTokens:
    """The rating tokens (by default SelectIT's "1".."5") in a tokenizer's vocabulary: the bare digits
    if all of them are distinct single tokens, else the leading-space variant if all of those are.
    `model_name` and `method` are named in messages only; RatingTokenError when neither variant works.

    Example:
        >>> find_rating_tokens(AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M")).pieces
        ('1', '2', '3', '4', '5')
    """
    ratings, vocab, tried = tuple(ratings), tokenizer.get_vocab(), []
    for variant, space, markers in (("bare", "", ("",)), ("space", " ", _SPACE_MARKERS)):
        ids = [_single_token(tokenizer, vocab, space + k, tuple(m + k for m in markers)) for k in ratings]
        if None not in ids and len(set(ids)) == len(ratings):
            found = RatingTokens(tuple(ids), tuple(tokenizer.convert_ids_to_tokens(ids)), variant)
            logger.info("Rating tokens of %s: %s variant, pieces %s, ids %s.",
                        model_name, variant, list(found.pieces), ids)
            return found
        tried.append({space + k: i for k, i in zip(ratings, ids)})
    missing_bare, missing_space = ([text for text, i in t.items() if i is None] for t in tried)
    shared = [group for t in tried for group in _shared_ids(t)]
    detail = f"; several ratings share one token: {shared}" if shared else ""
    raise RatingTokenError(
        f"The tokenizer of {model_name} has no single token for the ratings "
        f"{missing_bare} (bare digits) nor for {missing_space} (leading-space variant)"
        f"{detail}; {method} reads the probability of each rating "
        f"{ratings[0]}..{ratings[-1]} from one distinct vocabulary entry, so it needs a "
        "tokenizer where each digit is one token of its own. Use another scoring model."
    )


def _shared_ids(found: dict) -> list:
    """The groups of ratings (text: token id or None) that map to one and the same token id."""
    groups: dict = {}
    for text, token_id in found.items():
        if token_id is not None:
            groups.setdefault(token_id, []).append(text)
    return [group for group in groups.values() if len(group) > 1]


#: Below this median share of next-token probability on the rating tokens, ratings are suspect.
LOW_RATING_MASS = 0.5


def warn_if_low_rating_mass(masses: Any, *, column: str, model_name: str, method: str) -> bool:
    """Warn once per process and (method, model, column) when the median of one batch's rating
    masses (`masses`, NaN for unscored rows) is below 0.5: the renormalised ratings would look
    confident (docs/method.md 7.5). True when it is below, whether or not a warning is logged now."""
    finite = [float(m) for m in masses if m is not None and not math.isnan(float(m))]
    if not finite:
        return False
    median = statistics.median(finite)
    if median >= LOW_RATING_MASS:
        return False
    chat = " or template='chat'" if method == "SelectIT" else ""
    warn_once((method, model_name, column),
              f"{method}: the median of {column} is {median:.3f} (below {LOW_RATING_MASS:.1f}): {model_name} "
              "puts most of its next-token probability on tokens other than the rating digits, so the "
              "renormalised ratings look confident but rest on little probability. Likely cause: the "
              "model is too small or not instruction-tuned, or it is not prompted through its chat "
              f"template. Fix: use a larger or instruction-tuned model{chat}.", log=logger)
    return True
