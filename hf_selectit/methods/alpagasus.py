"""AlpaGasus rating with a local judge (Chen et al. 2023): the authors' two messages through the
judge's chat template, the first reply token's probabilities of "0".."5" renormalised over those
six instead of sampling; docs/method.md 7.3.
"""

from __future__ import annotations

from typing import Any

from ..config import AlpaGasusConfig
from ..engine import join_segments
from ..errors import ConfigError
from ..formulas import expected_ratings
from ..prompts import in_chat_template
from ..rating_tokens import RATINGS_0_5
from .base import BaseScorer, template_segments

#: The paper keeps rows rated >= 4.5: `select_top(ds, column="alpagasus_score", threshold=4.5)`.
PAPER_THRESHOLD = 4.5

#: The system message, verbatim.
SYSTEM_PROMPT = (
    "We would like to request your feedback on the performance of AI assistant in response to "
    "the instruction and the given input displayed following."
)
#: The rating request that ends the user message, verbatim (trailing space and blank line included).
RATING_REQUEST = (
    "Please rate according to the accuracy of the response to the instruction and the input. "
    "Each assistant receives a score on a scale of 0 to 5, where a higher score indicates higher "
    "level of the accuracy. Please first output a single line containing value indicating the "
    "scores. In the subsequent line, please provide a comprehensive explanation of your "
    "evaluation, avoiding any potential bias. \n\n"
)
#: The user message as the authors format it (no space in "###Instruction").
USER_TEMPLATE = ("###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}\n\n"
                 + RATING_REQUEST)


def user_message(instruction: str, input_text: str, response: str) -> str:
    """The user message for one row (the authors' format string; the input block is there even
    when the input is empty)."""
    return USER_TEMPLATE.format(instruction=instruction, input=input_text, output=response)


def messages(instruction: str, input_text: str, response: str) -> list[dict]:
    """The two chat messages (system, user) sent to the judge for one row."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_message(instruction, input_text, response)}]


class AlpaGasusScorer(BaseScorer):
    """Adds the AlpaGasus rating of a local judge; made for `Dataset.map(scorer, batched=True)`.

    Columns `alpagasus_score`, `_argmax`, `_rating_mass`, `_status` (docs/method.md 7.3). The judge
    is an instruction-tuned LM with a chat template (the embedded SmolLM2 is far too small to judge
    well). Options: the fields of `AlpaGasusConfig`.

    Raises:
        ConfigError: an option is invalid (here), or the judge has no chat template (first call).
        RatingTokenError: the tokenizer has no distinct single tokens for "0".."5" (first call).

    Example:
        >>> ds = ds.map(AlpaGasusScorer("HuggingFaceTB/SmolLM2-1.7B-Instruct"), batched=True)
        >>> ds[0]["alpagasus_score"], ds[0]["alpagasus_status"]
        (4.62, 'ok')
    """

    method = "alpagasus"
    title = "AlpaGasus"
    config_class = AlpaGasusConfig
    keeps_input = True
    ratings = RATINGS_0_5
    add_special_tokens = False  # the chat template writes its own
    too_long = ("max_length={max_length} is shorter than the judge's messages without the row; "
                "raise max_length")

    def prepare(self, model: Any, tokenizer: Any, name: str) -> Any:
        if self.config.chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"AlpaGasus asks the judge through its chat template (a system and a user "
                              f"message, then the generation prompt), but the tokenizer of {name} has no "
                              "chat template. Use an instruction-tuned judge that has one (e.g. a "
                              "'-Instruct' or '-chat' model), or pass chat_template='<Jinja template>' to "
                              "AlpaGasusScorer.")
        return super().prepare(model, tokenizer, name)

    def _method_info(self, state: Any) -> dict:
        return {
            "method_description": "AlpaGasus (Chen et al., 2023) rating with a local judge: expected "
                                  "rating over the first reply token's digits 0..5",
            "system_prompt": SYSTEM_PROMPT,
            "user_template": USER_TEMPLATE,
            "chat_template": self.config.chat_template or "the tokenizer's",
        }

    def _texts(self, fields: Any, state: Any) -> list:
        # user_message in pieces: when too long, "x" (instruction, input) loses its tail, "y" (the
        # response) its middle.
        parts = {"instruction": ("x", fields.instruction), "input": ("x", fields.input),
                 "output": ("y", fields.response)}
        user, spans = join_segments(template_segments(USER_TEMPLATE, **parts))
        chat = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        kwargs = {"chat_template": self.config.chat_template} if self.config.chat_template else {}
        return [("alpagasus", *in_chat_template(state.tokenizer, chat, spans, **kwargs))]

    def _score(self, rows: list, statuses: list, state: Any) -> dict:
        logprobs, status = self._read_ratings(rows, statuses, state, 1)
        out = expected_ratings(logprobs[:, 0], [int(r) for r in self.ratings])
        # argmax is a float column: NaN for rows not scored (None would make an all-error first
        # batch a null-typed column that later batches cannot be written to).
        argmax = [float(a) if s is None else float("nan") for a, s in zip(out["argmax"], statuses)]
        return {"score": out["score"], "argmax": argmax, "rating_mass": out["mass"], "status": status}
