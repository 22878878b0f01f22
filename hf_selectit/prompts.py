"""The text SelectIT scores: rating prompts, the prompt template, and dataset schemas (docs/method.md 1).

Pure text, no model and no I/O; the only module that knows a dataset's column names (everything
else asks :func:`extract_pairs`). A bad row never raises: it comes back with ``error`` set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence, Union

from .errors import ConfigError, SchemaError

logger = logging.getLogger(__name__)

# --- rating prompts ---------------------------------------------------------------------------

#: The nine rating prompts of docs/method.md section 1, verbatim (prompt 4 contains U+2014 em dashes).
RATING_PROMPTS: tuple[str, ...] = (
    "Assign a score from 1 to 5 to each assistant based on how accurately they follow the instructions and "
    "response provided, ensuring the score is represented clearly on its own.",
    "Score each assistant on a scale from one to five, reflecting the accuracy of their adherence to the "
    "instructions and input, and present this score plainly without the need for extra details.",
    "Rate each assistant's response accuracy to the given task and input on a scale of 1 to 5, with 5 being "
    "the most precise; the score should be self-explanatory and presented as a single line.",
    "Evaluate the assistants by the correctness of their response to the provided directions and response, "
    "giving them a rating between 1 and 5\u2014where a 5 indicates top accuracy\u2014and output the score "
    "clearly as a standalone line.",
    "Rate each assistant on a scale of 1 to 5 based on their adherence to the instructions and the accuracy "
    "of their responses, with the score clearly displayed.",
    "For each assistant, allocate a score between 1 and 5 reflecting how precisely they follow instructions "
    "and their response accuracy, making sure the score is distinctly visible.",
    "Score each assistant from one to five, judging by how well they follow the given instructions and the "
    "correctness of their replies, and ensure that the score is clearly marked.",
    "Assign to every assistant a score ranging from 1 to 5, evaluating their compliance with instructions "
    "and the precision of their feedback, with the score being conspicuously presented.",
    "Provide a score of 1 to 5 for each assistant, considering their fidelity to instructions and the "
    "accuracy of their answers, and ensure the score is clearly indicated.",
)

#: The same nine with the authors' wording before 2024-03-31 (prompt 2 "from zero to five",
#: prompt 4 "between 0 and 5"); the released Selective Alpaca may have been scored with these.
RATING_PROMPTS_ZERO_TO_FIVE: tuple[str, ...] = (
    RATING_PROMPTS[0],
    RATING_PROMPTS[1].replace("from one to five", "from zero to five"),
    RATING_PROMPTS[2],
    RATING_PROMPTS[3].replace("between 1 and 5", "between 0 and 5"),
    *RATING_PROMPTS[4:],
)

#: Named prompt sets, the values accepted by ``prompt_set=`` (same names as config.PROMPT_SETS).
PROMPT_SETS: dict[str, tuple] = {"paper": RATING_PROMPTS, "zero-to-five": RATING_PROMPTS_ZERO_TO_FIVE}

_ANSWER_TAIL = "\nThe answer is: \n"


def resolve_prompts(prompts: Union[int, Sequence[str]] = 5, *, prompt_set: str = "paper") -> tuple[str, ...]:
    """The rating prompt texts to score with: the first n (1..9; the paper uses 5) of
    ``prompt_set`` ("paper" or "zero-to-five"), or a sequence of non-empty texts used as given
    (else a ConfigError)."""
    if prompt_set not in PROMPT_SETS:
        raise ConfigError(f"prompt_set={prompt_set!r} is invalid: expected one of {list(PROMPT_SETS)}.")
    most = len(RATING_PROMPTS)
    if isinstance(prompts, Integral) and not isinstance(prompts, bool):
        if not 1 <= int(prompts) <= most:
            raise ConfigError(f"prompts={prompts!r} is out of range: expected an int from 1 to {most} "
                              "(the paper uses 5) or a list of prompt texts.")
        return PROMPT_SETS[prompt_set][:int(prompts)]
    if isinstance(prompts, (str, bytes)):
        raise ConfigError(f"prompts={prompts!r} is a single string: expected an int from 1 to {most} or a "
                          "list of prompt texts; wrap one prompt in a list.")
    if not isinstance(prompts, Sequence):
        raise ConfigError(f"prompts={prompts!r} is invalid: expected an int from 1 to {most} or a list of "
                          "prompt texts.")
    if not prompts:
        raise ConfigError(f"prompts=[] is empty: expected at least one rating prompt text, or an int from 1 "
                          f"to {most}.")
    for i, text in enumerate(prompts):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"prompts[{i}]={text!r} is invalid: every rating prompt must be a "
                              "non-empty string.")
    return tuple(prompts)


def prompt_parts(rating_prompt: str, instruction: str, response: str) -> tuple[str, str, str]:
    """Split the scored text into (head, response, tail); ``"".join`` gives :func:`build_prompt`.
    An over-long row is cut in its instruction and response only (docs/method.md, long rows)."""
    return f"{rating_prompt}\n\nInstruction:{instruction}\nResponse:", response, _ANSWER_TAIL


def build_prompt(rating_prompt: str, instruction: str, response: str) -> str:
    """The exact text scored for one row and one rating prompt (docs/method.md section 1).

    Example:
        >>> build_prompt("Rate.", "Say hi", "hi")
        'Rate.\\n\\nInstruction:Say hi\\nResponse:hi\\nThe answer is: \\n'
    """
    return "".join(prompt_parts(rating_prompt, instruction, response))


def in_chat_template(tokenizer: Any, messages: list, spans: list, **kwargs: Any) -> tuple[str, list]:
    """`messages` through the tokenizer's chat template with the generation prompt, and the cuttable
    `spans` of the last message's content moved to where that content lands (none, so nothing is
    cut, when the template rewrote it). `kwargs` go to `apply_chat_template`."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    content = messages[-1]["content"]
    # Some templates trim message contents: the trailing whitespace goes, the cuttable parts stay
    # where they were relative to the message's start.
    offset = text.find(content)
    if offset < 0:
        offset = text.find(content.rstrip())
    return text, [] if offset < 0 else [(kind, start + offset, end + offset) for kind, start, end in spans]


# --- schemas ----------------------------------------------------------------------------------


class Pair(NamedTuple):
    """The (instruction, response) of one row, or why there is none: ``error is None`` exactly when
    both are strings ready to score; else both are None and ``error`` says why ("empty response")."""

    instruction: Optional[str]
    response: Optional[str]
    error: Optional[str] = None


class Fields(NamedTuple):
    """:class:`Pair` with the input kept apart, for prompts with their own input block (AlpaGasus,
    IFD). ``input`` is ``""`` unless both it and the instruction have text, so X is
    ``instruction + "\\n" + input`` when ``input`` is non-empty, else ``instruction``."""

    instruction: Optional[str]
    input: Optional[str]
    response: Optional[str]
    error: Optional[str] = None


@dataclass(frozen=True)
class Schema:
    """How rows of a dataset map to (instruction, response): the columns of a pair schema
    (``name`` "alpaca", "pair", or "columns" for an explicit mapping), or the column holding a
    list of turns (``name`` "messages" or "conversations")."""

    name: str
    instruction: Optional[str] = None
    response: Optional[str] = None
    input: Optional[str] = None
    chat: Optional[str] = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The dataset columns this schema reads."""
        return tuple(c for c in (self.instruction, self.input, self.response, self.chat) if c)

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``alpaca (instruction + input -> output)``."""
        if self.chat:
            return f"{self.name} (chat column {self.chat!r})"
        x = self.instruction + (f" + {self.input}" if self.input else "")
        return f"{self.name} ({x} -> {self.response})"


# (instruction column, response column, optional input column), first match wins.
_PAIR_SCHEMAS: tuple[tuple[str, str, Optional[str]], ...] = (
    ("instruction", "output", "input"), ("instruction", "response", "context"),
    ("instruction", "completion", "input"), ("instruction", "answer", "input"),
    ("prompt", "response", None), ("prompt", "completion", None), ("prompt", "output", None),
    ("prompt", "answer", None), ("question", "answer", None), ("question", "response", None),
    ("query", "response", None), ("query", "answer", None), ("input", "output", None),
    ("input", "response", None),
)
CHAT_COLUMNS = ("messages", "conversations")  # the chat columns detected by name (methods.base reads it too)
_PAIR_KEYS = ("instruction", "input", "response")

_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}

_FIX_HINT = "columns={'instruction': ..., 'response': ...}"
_logged_schemas: set[Schema] = set()


def _explicit_schema(column_names: Sequence[str], columns: Mapping[str, Any]) -> Schema:
    if not isinstance(columns, Mapping):
        raise ConfigError(f"columns={columns!r} is invalid: expected a dict such as {_FIX_HINT}.")
    mapping = {k: v for k, v in columns.items() if v is not None}
    unknown = sorted(set(mapping) - set(_PAIR_KEYS) - set(CHAT_COLUMNS), key=str)
    if unknown:
        raise ConfigError(f"columns={dict(columns)!r} has unknown key(s) {unknown}: expected keys "
                          f"{list(_PAIR_KEYS)} or one of {list(CHAT_COLUMNS)}, e.g. {_FIX_HINT}.")
    for key, value in mapping.items():
        if not isinstance(value, str):
            raise ConfigError(f"columns[{key!r}]={value!r} is invalid: expected a column name (str).")
    chat_keys = [k for k in CHAT_COLUMNS if k in mapping]
    if chat_keys:
        if len(mapping) != 1:
            raise ConfigError(f"columns={dict(columns)!r} mixes a chat column with other keys: pass either "
                              f"{{{chat_keys[0]!r}: <column>}} alone or {_FIX_HINT}.")
        schema = Schema(chat_keys[0], chat=mapping[chat_keys[0]])
    else:
        missing = [k for k in ("instruction", "response") if k not in mapping]
        if missing:
            raise ConfigError(f"columns={dict(columns)!r} lacks {missing}: expected {_FIX_HINT} "
                              "(optionally 'input': ...).")
        schema = Schema("columns", instruction=mapping["instruction"], response=mapping["response"],
                        input=mapping.get("input"))
    return _check_present(schema, column_names, f"from columns={dict(columns)!r}",
                          f"Fix the mapping, e.g. {_FIX_HINT}.")


def _check_present(schema: Schema, names: Sequence[str], what: str, fix: str) -> Schema:
    absent = [c for c in schema.columns if c not in names]
    if absent:
        raise SchemaError(f"Column(s) {absent} {what} not found. Columns: {list(names)}. {fix}")
    return schema


def detect_schema(column_names: Iterable[str], *,
                  columns: Optional[Union[Mapping[str, Any], Schema]] = None) -> Schema:
    """How a dataset's rows map to (instruction, response): detected in the order of docs/method.md 1
    (`_PAIR_SCHEMAS`), or the explicit `columns` mapping (a :class:`Schema` is checked and returned).
    A SchemaError when none matches or a column is absent, a ConfigError for a malformed `columns`.

    Example:
        >>> detect_schema(["instruction", "input", "output"]).describe()
        'alpaca (instruction + input -> output)'
    """
    names = list(column_names)
    present = set(names)
    if isinstance(columns, Schema):
        return _check_present(columns, names, f"of schema {columns.describe()}", f"Pass {_FIX_HINT}.")
    if columns is not None:
        return _explicit_schema(names, columns)
    for instruction, response, input_col in _PAIR_SCHEMAS:
        if instruction in present and response in present:
            name = "alpaca" if (instruction, response) == ("instruction", "output") else "pair"
            return Schema(name, instruction=instruction, response=response,
                          input=input_col if input_col in present else None)
    for chat in CHAT_COLUMNS:
        if chat in present:
            return Schema(chat, chat=chat)
    raise SchemaError(
        f"Could not find instruction/response columns. Columns: {names}. "
        "Supported: Alpaca ('instruction', 'input', 'output'), ShareGPT ('conversations'), "
        "OpenAI-style ('messages'), and pairs such as 'prompt'/'response' or "
        f"'question'/'answer'. Pass {_FIX_HINT} (optionally 'input': ...), or "
        "columns={'messages': ...} for a chat column with another name."
    )


def _bad(reason: str) -> Fields:
    return Fields(None, None, None, reason)


def _type_error(what: str, value: Any, expected: str = "str") -> Fields:
    return _bad(f"{what} is {type(value).__name__}, expected {expected}")


def _fields_from_texts(instruction: Any, input_text: Any, response: Any) -> Fields:
    # A null instruction is like an empty one: the input may stand in.
    if instruction is not None and not isinstance(instruction, str):
        return _type_error("instruction", instruction)
    if input_text is not None and not isinstance(input_text, str):
        return _type_error("input", input_text)
    if response is None:
        return _bad("response is missing (None)")
    if not isinstance(response, str):
        return _type_error("response", response)
    has_input = input_text is not None and bool(input_text.strip())
    if instruction and instruction.strip():
        fields = Fields(instruction, input_text if has_input else "", response)
    elif has_input:
        fields = Fields(input_text, "", response)
    else:
        return _bad("instruction is missing (None)" if instruction is None else "empty instruction")
    return fields if response.strip() else _bad("empty response")


def _fields_from_chat(turns: Any, column: str) -> Fields:
    if turns is None:
        return _bad(f"{column} is missing (None)")
    if not isinstance(turns, (list, tuple)):
        return _type_error(column, turns, "list of turns")
    if not turns:
        return _bad(f"empty {column}")
    parsed: list[tuple[str, str]] = []  # (normalised role, content)
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            return _type_error(f"turn {i}", turn, "dict")
        # Arrow gives every turn struct the union of keys, absent ones as None, so test values.
        if turn.get("role") is not None:
            role, content = turn["role"], turn.get("content")
        elif turn.get("from") is not None:
            role, content = turn["from"], turn.get("value")
        else:
            return _bad(f"turn {i} has neither 'role'/'content' nor 'from'/'value' keys")
        for key, value in (("role", role), ("content", content)):
            if not isinstance(value, str):
                return _type_error(f"turn {i} {key}", value)
        if role.lower() not in _ROLES:
            return _bad(f"turn {i} has unknown role {role!r}")
        parsed.append((_ROLES[role.lower()], content))
    last_assistant = max((i for i, (role, _) in enumerate(parsed) if role == "assistant"), default=-1)
    if last_assistant < 0:
        return _bad("no assistant turn")
    if last_assistant == 0:
        return _bad("empty instruction (nothing before the last assistant turn)")
    response = parsed[last_assistant][1]
    before = parsed[:last_assistant]
    parts = [content for role, content in before if role == "system"]
    dialogue = [(role, content) for role, content in before if role != "system"]
    if len(dialogue) == 1 and dialogue[0][0] == "user":
        parts.append(dialogue[0][1])
    else:
        parts.extend(f"{'User' if role == 'user' else 'Assistant'}: {content}" for role, content in dialogue)
    instruction = "\n".join(parts)
    if not instruction.strip():
        return _bad("empty instruction")
    return Fields(instruction, "", response) if response.strip() else _bad("empty response")


def extract_pairs(batch: Mapping[str, Sequence[Any]], *,
                  columns: Optional[Union[Mapping[str, Any], Schema]] = None) -> list[Pair]:
    """One (instruction, response) :class:`Pair` per row of a ``map(batched=True)`` batch, in row
    order; a row that cannot be scored has ``error`` set. `columns`: see :func:`detect_schema`.

    Example:
        >>> extract_pairs({"instruction": ["Add 2+2"], "input": [""], "output": ["4"]})
        [Pair(instruction='Add 2+2', response='4', error=None)]
    """
    return [Pair(f"{f.instruction}\n{f.input}" if f.input else f.instruction, f.response, f.error)
            for f in extract_fields(batch, columns=columns)]


def extract_fields(batch: Mapping[str, Sequence[Any]], *,
                   columns: Optional[Union[Mapping[str, Any], Schema]] = None) -> list[Fields]:
    """One :class:`Fields` per row of a batch, by the rules of :func:`extract_pairs`.

    Example:
        >>> extract_fields({"instruction": ["Translate"], "input": ["chat"], "output": ["cat"]})
        [Fields(instruction='Translate', input='chat', response='cat', error=None)]
    """
    schema = detect_schema(batch.keys(), columns=columns)
    if schema not in _logged_schemas:
        _logged_schemas.add(schema)
        logger.info("Reading rows as %s.", schema.describe())
    if schema.chat is not None:
        return [_fields_from_chat(turns, schema.chat) for turns in batch[schema.chat]]
    instructions = batch[schema.instruction]
    inputs = batch[schema.input] if schema.input else [None] * len(instructions)
    return [_fields_from_texts(*texts) for texts in zip(instructions, inputs, batch[schema.response])]
