"""DEITA quality and complexity prompts (Liu et al. 2024; hkust-nlp/deita
src/deita/selection/scorer/): the expected rating over "1".."6" at the next position, raw text with
the tokenizer's default special tokens; `deita_score = complexity * quality`; docs/method.md 7.4.
"""

from __future__ import annotations

from typing import Any

from ..config import DeitaConfig
from ..engine import join_segments
from ..formulas import expected_ratings
from ..rating_tokens import RATINGS_1_6
from .base import BaseScorer, template_segments

#: Verbatim from DEITA's Llama scorer (the trailing spaces are part of the prompts).
TEMPLATES = {
    "quality": ("You are a helpful assistant. Please identify the quality score of the Response "
                "corresponding to the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} "
                "\n##Quality: "),
    "complexity": ("You are a helpful assistant. Please identify the complexity score of the following user "
                   "query. \n##Query: {instruction}  \n##Complexity: "),
}


def quality_prompt(instruction: str, response: str) -> str:
    """DEITA's quality prompt for one row."""
    return TEMPLATES["quality"].format(instruction=instruction, output=response)


def complexity_prompt(instruction: str) -> str:
    """DEITA's complexity prompt for one row."""
    return TEMPLATES["complexity"].format(instruction=instruction)


class DeitaScorer(BaseScorer):
    """Adds DEITA's quality and/or complexity score; made for `Dataset.map(scorer, batched=True)`.

    kind="both" gives `deita_quality`, `deita_complexity` and `deita_score` (complexity x quality),
    else that kind's column; always `deita_rating_mass` and `deita_status` (docs/method.md 7.4, 7.5).
    DEITA's own scorers are hkust-nlp/deita-quality-scorer and -complexity-scorer; one model scores
    both kinds here. Options: the fields of `DeitaConfig`, checked here (ConfigError).

    Raises:
        RatingTokenError: the tokenizer has no distinct single tokens for "1".."6" (first call).

    Example:
        >>> ds = ds.map(DeitaScorer(kind="both"), batched=True)
        >>> ds[0]["deita_score"], ds[0]["deita_status"]
        (12.3, 'ok')
    """

    method = "deita"
    title = "DEITA"
    config_class = DeitaConfig
    ratings = RATINGS_1_6
    too_long = "max_length={max_length} is shorter than the DEITA {group} prompt alone; raise max_length"

    @property
    def kinds(self) -> tuple:
        """The prompts run per row: ("quality", "complexity"), ("quality",) or ("complexity",)."""
        return ("quality", "complexity") if self.config.kind == "both" else (self.config.kind,)

    def _texts(self, pair: Any, state: Any) -> list:
        # Cut when too long: "x" (the instruction) loses its tail, "y" (the response) its middle.
        parts = {"instruction": ("x", pair.instruction), "output": ("y", pair.response)}
        return [(k, *join_segments(template_segments(TEMPLATES[k], **parts))) for k in self.kinds]

    def _method_info(self, state: Any) -> dict:
        return {
            "method_description": "DEITA (Liu et al., 2024) prompts: expected rating over the next "
                                  "token's digits 1..6 (softmax of their logits)",
            "kind": self.config.kind,
            "templates": {k: TEMPLATES[k] for k in self.kinds},
        }

    def _score(self, pairs: list, statuses: list, state: Any) -> dict:
        kinds = self.kinds
        logprobs, status = self._read_ratings(pairs, statuses, state, len(kinds))
        out = expected_ratings(logprobs, [int(r) for r in self.ratings])
        values = {kind: out["score"][:, slot] for slot, kind in enumerate(kinds)}
        if self.config.kind == "both":
            values["score"] = values["complexity"] * values["quality"]
        return {**values, "rating_mass": out["mass"].mean(axis=1), "status": status}
