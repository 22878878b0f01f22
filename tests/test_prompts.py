"""Tests of hf_selectit.prompts: prompt texts, the template, schema detection and bad rows."""

from __future__ import annotations

import hashlib
import logging

import pytest

from hf_selectit import config
from hf_selectit.errors import ConfigError, SchemaError
from hf_selectit.prompts import (
    RATING_PROMPTS,
    RATING_PROMPTS_ZERO_TO_FIVE,
    Pair,
    Schema,
    build_prompt,
    detect_schema,
    extract_pairs,
    prompt_parts,
    resolve_prompts,
)

# sha256 of "\n".join(the nine prompts) as copied from METHOD.md section 1 (computed once from
# ../shared/METHOD.md; kept here so the suite does not depend on that file).
METHOD_PROMPTS_SHA256 = "5895059c0b071e5863caa72127bc67d95f0e657994e59271b7d16b5d9dc17c39"


# --- rating prompts ---------------------------------------------------------------------------


def test_rating_prompts_are_the_nine_of_method_md():
    assert len(RATING_PROMPTS) == 9
    joined = "\n".join(RATING_PROMPTS)
    assert hashlib.sha256(joined.encode("utf-8")).hexdigest() == METHOD_PROMPTS_SHA256
    assert RATING_PROMPTS[3].count("\u2014") == 2
    assert RATING_PROMPTS[0].startswith("Assign a score from 1 to 5 to each assistant")
    for text in RATING_PROMPTS:
        assert text == text.strip()
        assert "\n" not in text


def test_zero_to_five_set_differs_only_in_prompts_2_and_4():
    assert len(RATING_PROMPTS_ZERO_TO_FIVE) == 9
    changed = [i for i, (a, b) in enumerate(zip(RATING_PROMPTS, RATING_PROMPTS_ZERO_TO_FIVE))
               if a != b]
    assert changed == [1, 3]
    assert "on a scale from zero to five," in RATING_PROMPTS_ZERO_TO_FIVE[1]
    assert "a rating between 0 and 5\u2014where" in RATING_PROMPTS_ZERO_TO_FIVE[3]


def test_prompt_set_names_match_config():
    for name in config.PROMPT_SETS:
        assert len(resolve_prompts(9, prompt_set=name)) == 9


def test_resolve_prompts_int_and_sets():
    assert resolve_prompts() == RATING_PROMPTS[:5]
    assert resolve_prompts(1) == RATING_PROMPTS[:1]
    assert resolve_prompts(9) == RATING_PROMPTS
    assert resolve_prompts(5, prompt_set="zero-to-five") == RATING_PROMPTS_ZERO_TO_FIVE[:5]
    assert isinstance(resolve_prompts(3), tuple)


def test_resolve_prompts_custom_list_used_as_given():
    assert resolve_prompts(["Rate it 1-5.", " Again "]) == ("Rate it 1-5.", " Again ")
    assert resolve_prompts(("only one",)) == ("only one",)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (0, "prompts=0"),
        (10, "prompts=10"),
        (-1, "prompts=-1"),
        (True, "prompts=True"),
        (2.5, "prompts=2.5"),
        ("Rate this.", "single string"),
        ([], "empty"),
        (["ok", ""], "prompts[1]=''"),
        (["ok", "   "], "prompts[1]='   '"),
        (["ok", 3], "prompts[1]=3"),
        (None, "prompts=None"),
    ],
)
def test_resolve_prompts_rejects_bad_values(bad, fragment):
    with pytest.raises(ConfigError) as info:
        resolve_prompts(bad)
    assert fragment in str(info.value)


def test_resolve_prompts_rejects_unknown_set():
    with pytest.raises(ConfigError, match="prompt_set='zero'.*'paper'.*'zero-to-five'"):
        resolve_prompts(5, prompt_set="zero")


# --- the template -----------------------------------------------------------------------------


def test_build_prompt_exact_string():
    text = build_prompt(RATING_PROMPTS[0], "Add 2 and 2.", "4")
    assert text == (
        "Assign a score from 1 to 5 to each assistant based on how accurately they follow the "
        "instructions and response provided, ensuring the score is represented clearly on its "
        "own.\n"
        "\n"
        "Instruction:Add 2 and 2.\n"
        "Response:4\n"
        "The answer is: \n"
    )


def test_prompt_parts_join_to_build_prompt():
    head, response, tail = prompt_parts("RP", "X\nmore", "Y y")
    assert head == "RP\n\nInstruction:X\nmore\nResponse:"
    assert response == "Y y"
    assert tail == "\nThe answer is: \n"
    for rp in RATING_PROMPTS:
        assert "".join(prompt_parts(rp, "x", "y")) == build_prompt(rp, "x", "y")


# --- schema detection -------------------------------------------------------------------------


def test_alpaca_with_and_without_input():
    batch = {
        "instruction": ["Translate.", "Say hi.", "Sum.", "Sum."],
        "input": ["Bonjour", "", None, "  "],
        "output": ["Hello", "hi", "3", "3"],
    }
    assert extract_pairs(batch) == [
        Pair("Translate.\nBonjour", "Hello", None),
        Pair("Say hi.", "hi", None),
        Pair("Sum.", "3", None),
        Pair("Sum.", "3", None),
    ]
    assert detect_schema(batch).describe() == "alpaca (instruction + input -> output)"


def test_alpaca_without_input_column():
    schema = detect_schema(["instruction", "output", "text"])
    assert schema == Schema("alpaca", instruction="instruction", response="output")
    assert extract_pairs({"instruction": ["a"], "output": ["b"], "text": ["z"]}) == [
        Pair("a", "b", None)
    ]


def test_empty_instruction_with_input_uses_input():
    batch = {"instruction": ["", None, "  "], "input": ["Do X.", "Do Y.", "Do Z."],
             "output": ["x", "y", "z"]}
    assert extract_pairs(batch) == [Pair("Do X.", "x"), Pair("Do Y.", "y"), Pair("Do Z.", "z")]


def test_dolly_context_is_the_input():
    batch = {"instruction": ["Who?"], "context": ["Ada wrote it."], "response": ["Ada"],
             "category": ["qa"]}
    assert extract_pairs(batch) == [Pair("Who?\nAda wrote it.", "Ada")]


@pytest.mark.parametrize(
    "x_col, y_col",
    [
        ("prompt", "response"),
        ("question", "answer"),
        ("instruction", "response"),
        ("query", "response"),
        ("input", "output"),
        ("prompt", "completion"),
        ("instruction", "output"),
        ("prompt", "output"),
        ("question", "response"),
        ("instruction", "completion"),
    ],
)
def test_prompt_response_pairs(x_col, y_col):
    batch = {"id": [1, 2], x_col: ["What is 1+1?", "Name a color."], y_col: ["2", "Red"]}
    schema = detect_schema(batch)
    assert (schema.instruction, schema.response) == (x_col, y_col)
    assert extract_pairs(batch) == [Pair("What is 1+1?", "2"), Pair("Name a color.", "Red")]


def test_pairs_win_over_chat_columns():
    # Magpie-style datasets carry both; the pair columns are unambiguous.
    schema = detect_schema(["instruction", "response", "conversations"])
    assert (schema.instruction, schema.response, schema.chat) == ("instruction", "response", None)


def test_messages_single_turn_with_system():
    batch = {"messages": [
        [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
         {"role": "assistant", "content": "Hello!"}],
    ]}
    assert detect_schema(batch) == Schema("messages", chat="messages")
    assert extract_pairs(batch) == [Pair("Hi?", "Hello!"), Pair("Be brief.\nHi?", "Hello!")]


def test_sharegpt_conversations():
    batch = {"conversations": [
        [{"from": "human", "value": "Name a fruit."}, {"from": "gpt", "value": "Apple."}],
        [{"from": "system", "value": "You are kind."}, {"from": "human", "value": "Hi"},
         {"from": "gpt", "value": "Hey"}],
    ], "id": ["a", "b"]}
    assert detect_schema(batch) == Schema("conversations", chat="conversations")
    assert extract_pairs(batch) == [Pair("Name a fruit.", "Apple."),
                                    Pair("You are kind.\nHi", "Hey")]


def test_multi_turn_rule_last_assistant_turn_and_rendered_history():
    turns = [
        {"role": "system", "content": "Sys."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
        {"role": "user", "content": "Q3 never answered"},
    ]
    assert extract_pairs({"messages": [turns]}) == [
        Pair("Sys.\nUser: Q1\nAssistant: A1\nUser: Q2", "A2")
    ]
    sharegpt = [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
                {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]
    assert extract_pairs({"conversations": [sharegpt]}) == [
        Pair("User: Q1\nAssistant: A1\nUser: Q2", "A2")
    ]


def test_roles_are_case_insensitive_and_either_turn_style_is_accepted():
    batch = {"messages": [[{"from": "Human", "value": "Hi"}, {"role": "Assistant",
                                                              "content": "Yo"}]]}
    assert extract_pairs(batch) == [Pair("Hi", "Yo")]


def test_explicit_columns_mapping():
    batch = {"q": ["Why?"], "ctx": ["Because."], "a": ["Ok."], "instruction": ["ignored"],
             "output": ["ignored"]}
    pairs = extract_pairs(batch, columns={"instruction": "q", "input": "ctx", "response": "a"})
    assert pairs == [Pair("Why?\nBecause.", "Ok.")]
    assert extract_pairs(batch, columns={"instruction": "q", "response": "a", "input": None}) == [
        Pair("Why?", "Ok.")
    ]


def test_explicit_chat_column_mapping():
    turns = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
    assert extract_pairs({"dialog": [turns]}, columns={"messages": "dialog"}) == [Pair("U", "A")]
    assert extract_pairs({"chat": [turns]}, columns={"conversations": "chat"}) == [Pair("U", "A")]


def test_schema_object_can_be_passed_as_columns():
    schema = detect_schema(["prompt", "response"])
    assert extract_pairs({"prompt": ["p"], "response": ["r"]}, columns=schema) == [Pair("p", "r")]
    with pytest.raises(SchemaError, match=r"\['prompt', 'response'\].*Columns: \['text'\]"):
        detect_schema(["text"], columns=schema)


# --- schema errors ----------------------------------------------------------------------------


def test_no_schema_error_lists_columns_and_fix():
    with pytest.raises(SchemaError) as info:
        extract_pairs({"foo": ["x"], "bar": ["y"]})
    message = str(info.value)
    assert "Columns: ['foo', 'bar']" in message
    assert "columns={'instruction': ..., 'response': ...}" in message
    assert isinstance(info.value, KeyError)


def test_missing_mapped_column_names_it_and_lists_columns():
    with pytest.raises(SchemaError) as info:
        extract_pairs({"q": ["x"], "a": ["y"]}, columns={"instruction": "q", "response": "answer"})
    message = str(info.value)
    assert "['answer']" in message
    assert "Columns: ['q', 'a']" in message
    assert "columns=" in message
    with pytest.raises(SchemaError, match=r"\['dialog'\].*Columns: \['q', 'a'\]"):
        detect_schema(["q", "a"], columns={"messages": "dialog"})


@pytest.mark.parametrize(
    "columns, fragment",
    [
        ({"instruction": "q"}, "lacks ['response']"),
        ({"question": "q", "response": "a"}, "unknown key(s) ['question']"),
        ({"instruction": "q", "response": 3}, "columns['response']=3"),
        ({"messages": "m", "response": "a"}, "mixes a chat column"),
        (["q", "a"], "expected a dict"),
    ],
)
def test_malformed_columns_mapping_is_a_config_error(columns, fragment):
    with pytest.raises(ConfigError) as info:
        detect_schema(["q", "a", "m"], columns=columns)
    assert fragment in str(info.value)


# --- bad rows ---------------------------------------------------------------------------------


def test_bad_pair_rows_get_a_reason_and_keep_their_place():
    batch = {
        "instruction": ["ok", None, "", "  \n", 7, "ok", "ok", "ok", "ok", "ok"],
        "input": ["", "", "", "", "", 3, "", "", "", ""],
        "output": ["fine", "y", "y", "y", "y", "y", None, "", " \t", ["list"]],
    }
    pairs = extract_pairs(batch)
    assert len(pairs) == 10
    assert [p.error for p in pairs] == [
        None,
        "instruction is missing (None)",
        "empty instruction",
        "empty instruction",
        "instruction is int, expected str",
        "input is int, expected str",
        "response is missing (None)",
        "empty response",
        "empty response",
        "response is list, expected str",
    ]
    assert pairs[0] == Pair("ok", "fine", None)
    for p in pairs[1:]:
        assert p.instruction is None and p.response is None


def test_bad_chat_rows_get_a_reason_and_keep_their_place():
    user = {"role": "user", "content": "Q"}
    good = [user, {"role": "assistant", "content": "A"}]
    rows = [
        good,
        None,
        [],
        "not a list",
        [user],
        [user, {"role": "assistant", "content": "   "}],
        [user, {"role": "assistant", "content": None}],
        [user, "turn"],
        [user, {"speaker": "bot", "text": "A"}],
        [user, {"role": "tool", "content": "A"}],
        [user, {"role": ["assistant"], "content": "A"}],
        [{"role": "assistant", "content": "A"}],
        [{"role": "user", "content": " "}, {"role": "assistant", "content": "A"}],
        good,
    ]
    pairs = extract_pairs({"messages": rows})
    assert len(pairs) == len(rows)
    assert [p.error for p in pairs] == [
        None,
        "messages is missing (None)",
        "empty messages",
        "messages is str, expected list of turns",
        "no assistant turn",
        "empty response",
        "turn 1 content is NoneType, expected str",
        "turn 1 is str, expected dict",
        "turn 1 has neither 'role'/'content' nor 'from'/'value' keys",
        "turn 1 has unknown role 'tool'",
        "turn 1 role is list, expected str",
        "empty instruction (nothing before the last assistant turn)",
        "empty instruction",
        None,
    ]
    assert pairs[0] == pairs[-1] == Pair("Q", "A", None)


def test_schema_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="hf_selectit.prompts")
    batch = {"zz_prompt": ["p"], "zz_answer": ["a"]}
    columns = {"instruction": "zz_prompt", "response": "zz_answer"}
    for _ in range(3):
        extract_pairs(batch, columns=columns)
    records = [r for r in caplog.records if "zz_prompt" in r.getMessage()]
    assert len(records) == 1


def test_extract_pairs_on_10k_rows():
    # The speed of this path is measured by scripts/, not asserted here (no wall-clock limits in
    # unit tests: the machine is shared). What must hold at this size: every row, in order.
    n = 10_000
    alpaca = {"instruction": ["Explain the thing."] * n, "input": ["", "ctx"] * (n // 2),
              "output": ["Here is the explanation."] * n}
    turns = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
             {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
             {"role": "assistant", "content": "A2"}]
    chat = {"messages": [turns] * n}
    a = extract_pairs(alpaca)
    c = extract_pairs(chat)
    assert len(a) == n and len(c) == n
    assert a[0] == Pair("Explain the thing.", "Here is the explanation.")
    assert a[1] == Pair("Explain the thing.\nctx", "Here is the explanation.")
    assert len(set(c)) == 1 and c[0] == extract_pairs({"messages": [turns]})[0]


def test_real_dataset_map_with_arrow_turn_structs():
    # Through Arrow, turns of mixed styles become structs with every key, absent ones None.
    from datasets import Dataset

    ds = Dataset.from_list([
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"conversations": [{"role": "user", "content": "Q2"},
                           {"role": "assistant", "content": "A2"}]},
        {"conversations": [{"from": "human", "value": "only a question"}]},
    ])
    first_turn = ds[0]["conversations"][0]
    assert first_turn == {"from": "human", "value": "Q", "role": None, "content": None}

    # datasets 5 refuses a column whose first written batch is all None, hence "ok".
    def to_columns(batch):
        pairs = extract_pairs(batch)
        return {"x": [p.instruction for p in pairs], "y": [p.response for p in pairs],
                "err": [p.error or "ok" for p in pairs]}

    out = ds.map(to_columns, batched=True, batch_size=2)
    assert out["x"] == ["Q", "Q2", None]
    assert out["y"] == ["A", "A2", None]
    assert out["err"] == ["ok", "ok", "no assistant turn"]


def test_extract_fields_keeps_instruction_and_input_apart():
    from hf_selectit.prompts import Fields, extract_fields

    batch = {"instruction": ["Translate", "", "Add", 3], "input": ["chat", "only input", "  ", ""],
             "output": ["cat", "y", "4", "c"]}
    assert extract_fields(batch) == [
        Fields("Translate", "chat", "cat"),
        Fields("only input", "", "y"),  # the input stands in for an empty instruction, as in X
        Fields("Add", "", "4"),
        Fields(None, None, None, "instruction is int, expected str"),
    ]
    pairs = extract_pairs(batch)
    for fields, pair in zip(extract_fields(batch), pairs):
        if pair.error is None:
            x = fields.instruction + ("\n" + fields.input if fields.input else "")
            assert x == pair.instruction
    chat = {"messages": [[{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                          {"role": "user", "content": "C"}, {"role": "assistant", "content": "D"}]]}
    assert extract_fields(chat) == [Fields("User: A\nAssistant: B\nUser: C", "", "D")]
    assert extract_fields({"prompt": ["p"], "response": ["r"]}) == [Fields("p", "", "r")]
