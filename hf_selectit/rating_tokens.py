"""Which vocabulary entries are the ratings "1".."5" (METHOD.md section 2), read from the tokenizer.

Never hard-coded: the bare digit pieces are used when each digit is one token (Llama-2's ids
29896..29900, SmolLM2's "1".."5"); only when a bare digit is not a single token does the
leading-space variant (" 1", "Ġ1", "▁1") take over. Whichever is used is logged and reported in
the scorer's `.info()`. A tokenizer that cannot give five distinct single tokens is an error:
falling back to a constant score would be a made-up score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from .errors import RatingTokenError

logger = logging.getLogger(__name__)

RATINGS = ("1", "2", "3", "4", "5")
# How tokenizers spell a leading space inside a piece: byte-level BPE, SentencePiece, plain.
_SPACE_MARKERS = ("\u0120", "\u2581", " ")


@dataclass(frozen=True)
class RatingTokens:
    """Token ids and pieces of the ratings 1..5, and which variant they are ("bare" or "space")."""

    ids: tuple[int, ...]
    pieces: tuple[str, ...]
    variant: str

    def to_dict(self) -> dict:
        return {"ids": list(self.ids), "pieces": list(self.pieces), "variant": self.variant}


def _single_token(tokenizer: Any, vocab: dict, text: str, pieces: tuple[str, ...]) -> Optional[int]:
    """The id of `text` if the tokenizer has it as one token, else None."""
    for piece in pieces:
        token_id = vocab.get(piece)
        if token_id is not None and tokenizer.decode([token_id]) in (text, text.strip()):
            return token_id
    # Tokenizers with unusual piece spellings: trust encode() when it gives one token.
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) == 1 and tokenizer.decode(ids) in (text, text.strip()) and ids[0] != tokenizer.unk_token_id:
        return ids[0]
    return None


def find_rating_tokens(tokenizer: Any, *, model_name: str = "the model") -> RatingTokens:
    """Find the five rating tokens in a tokenizer's vocabulary.

    Args:
        tokenizer: a transformers tokenizer.
        model_name: used in messages only.

    Returns:
        RatingTokens with the bare digits if all five are single tokens, else the leading-space
        variant if all five of those are.

    Raises:
        RatingTokenError: neither variant gives five distinct single tokens.

    Example:
        >>> find_rating_tokens(AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M")).pieces
        ('1', '2', '3', '4', '5')
    """
    vocab = tokenizer.get_vocab()
    bare = [_single_token(tokenizer, vocab, k, (k,)) for k in RATINGS]
    if all(i is not None for i in bare) and len(set(bare)) == 5:
        found = RatingTokens(tuple(bare), tuple(tokenizer.convert_ids_to_tokens(list(bare))), "bare")
    else:
        spaced = [
            _single_token(tokenizer, vocab, " " + k, tuple(m + k for m in _SPACE_MARKERS)) for k in RATINGS
        ]
        if not (all(i is not None for i in spaced) and len(set(spaced)) == 5):
            missing_bare = [k for k, i in zip(RATINGS, bare) if i is None]
            missing_space = [" " + k for k, i in zip(RATINGS, spaced) if i is None]
            raise RatingTokenError(
                f"The tokenizer of {model_name} has no single token for the ratings "
                f"{missing_bare} (bare digits) nor for {missing_space} (leading-space variant); "
                "SelectIT reads the probability of each rating 1..5 from one vocabulary entry, so "
                "it needs a tokenizer where each digit is one token. Use another scoring model."
            )
        found = RatingTokens(
            tuple(spaced), tuple(tokenizer.convert_ids_to_tokens(list(spaced))), "space"
        )
    logger.info(
        "Rating tokens of %s: %s variant, pieces %s, ids %s.",
        model_name, found.variant, list(found.pieces), list(found.ids),
    )
    return found
