"""SelectIT (Liu et al., 2024): rating-token probabilities at the last position -> token/sentence scores.

    >>> ds = ds.map(SelectITScorer(), batched=True)                 # embedded SmolLM2
    >>> ds = ds.map(selectit_score, batched=True, fn_kwargs={"model": "path/or/hub-id"})

One text per row and rating prompt, one group per rating prompt whose shared head the engine runs
once; the text, its truncation and the scores: docs/method.md sections 1-3 (fingerprint: 8).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any, Mapping, Optional, Sequence

from ..config import ScorerConfig
from ..engine import config_state
from ..errors import ConfigError
from ..formulas import selectit_scores
from ..prompts import in_chat_template, prompt_parts, resolve_prompts
from ..rating_tokens import RATINGS
from .base import BaseScorer
from .columns import SCHEMAS

OUTPUT_NAMES = SCHEMAS["selectit"].outputs
_RESPONSE_MARKER = "\nResponse:"  # the end of prompt_parts' head, after the instruction


class SelectITScorer(BaseScorer):
    """Adds SelectIT scores to a batch of rows; made for `Dataset.map(scorer, batched=True)`.

    The model loads lazily on the first call, once per process (device: see `device`). Options:
    the fields of `ScorerConfig`, checked here (ConfigError) before any model loads; a transformers
    model already in memory (with its `tokenizer`) is used as it is: not moved, not reloaded,
    fingerprinted by its name, commit and config (not its weights), and refused by `num_proc` > 1
    (pass a path there).

    Example:
        >>> scorer = SelectITScorer(prompts=5, alpha=0.2)
        >>> ds = ds.map(scorer, batched=True, batch_size=64)
        >>> ds[0]["selectit_sentence_score"], ds[0]["selectit_status"]
        (2.71, 'ok')
    """

    method = "selectit"
    title = "SelectIT"
    config_class = ScorerConfig
    ratings = RATINGS
    too_long = ("max_length={max_length} is shorter than the rating prompt and question alone; "
                "raise max_length")

    @functools.cached_property
    def prompt_texts(self) -> tuple:  # the rating prompt texts in use (ScorerConfig has checked them)
        return resolve_prompts(self.config.prompts, prompt_set=self.config.prompt_set)

    @property
    def add_special_tokens(self) -> bool:  # type: ignore[override]
        # The chat template writes its own special tokens.
        return self.config.template == "raw"

    def prepare(self, model: Any, tokenizer: Any, name: str) -> Any:
        rating = super().prepare(model, tokenizer, name)
        if self.config.template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"template='chat' needs a chat template, but the tokenizer of {name} has none. "
                              "Use template='raw' (the paper's prompt) or a model with a chat template.")
        return rating

    def _method_info(self, state: Any) -> dict:
        return {
            "method_description": "SelectIT (Liu et al., 2024): token and sentence level",
            "prompts": list(self.prompt_texts),
            "prompt_set": self.config.prompt_set,
            "n_prompts": len(self.prompt_texts),
            "alpha": self.config.alpha,
            "normalization": self.config.normalization,
            "template": self.config.template,
        }

    def token_ids(self, batch: Mapping[str, Sequence[Any]], rank: Optional[int] = None) -> list:
        """The token ids this scorer would run, per row and rating prompt (None for rows it cannot
        score): what is scored, e.g. where a long row was cut."""
        pairs = self._rows(batch)
        statuses = [p.error for p in pairs]
        items = self._items(pairs, statuses, self.engine.state(rank))
        out: list = [None if s is not None else [None] * len(self.prompt_texts) for s in statuses]
        for item in items:  # only rows still without an error status have items
            out[item.row][item.slot] = list(item.ids)
        return out

    def _score(self, pairs: list, statuses: list, state: Any) -> dict:
        probs, status = self._read_ratings(pairs, statuses, state, len(self.prompt_texts), log=False)
        scores = selectit_scores(probs, alpha=self.config.alpha, normalization=self.config.normalization)
        # docs/method.md 7.5: the full-vocabulary probability on the five ratings, mean over prompts.
        return {**scores, "rating_mass": probs.sum(axis=-1).mean(axis=-1), "status": status}

    def _texts(self, pair: Any, state: Any) -> list:
        """One text per rating prompt; a truncated row is cut in its instruction and response only
        (the rating prompt, markers, rating question and chat template stay whole)."""
        out = []
        for j, rp in enumerate(self.prompt_texts):
            head, response, tail = prompt_parts(rp, pair.instruction, pair.response)
            x_end = len(head) - len(_RESPONSE_MARKER)
            spans = [("x", x_end - len(pair.instruction), x_end), ("y", len(head), len(head) + len(response))]
            text = head + response + tail  # == build_prompt(...), by prompt_parts' contract
            if self.config.template == "chat":
                text, spans = in_chat_template(state.tokenizer, [{"role": "user", "content": text}], spans)
            out.append((j, text, spans))
        return out


# --- the plain-function face ----------------------------------------------------------------

_SCORERS: dict = {}
_SCORERS_LOCK = threading.Lock()


def selectit_score(batch: Mapping[str, Sequence[Any]], rank: Optional[int] = None,
                   **scorer_kwargs: Any) -> dict:
    """`SelectITScorer(**scorer_kwargs)(batch, rank)` with one scorer (and model) per process.

    For `ds.map(selectit_score, batched=True, fn_kwargs={...})`; the kwargs are those of
    :class:`SelectITScorer`. Equal kwargs reuse the same loaded model.
    """
    if not (scorer_kwargs.get("model") is None or isinstance(scorer_kwargs["model"], (str, os.PathLike))):
        raise ConfigError("selectit_score takes a model id or path (fn_kwargs are hashed and sent to "
                          "workers); for a model already in memory use the class: "
                          "ds.map(SelectITScorer(model=my_model, tokenizer=my_tokenizer), batched=True).")
    probe = SelectITScorer(**scorer_kwargs)
    key = tuple(sorted(((k, repr(v)) for k, v in config_state(probe.config).items())))
    with _SCORERS_LOCK:
        scorer = _SCORERS.setdefault(key, probe)
    return scorer(batch, rank)
