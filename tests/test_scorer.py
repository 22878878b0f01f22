"""SelectITScorer on a tiny in-process Llama (tests/tiny_lm.py): exactness, batching, caching, bad rows."""

from __future__ import annotations

import pickle
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from datasets.fingerprint import Hasher
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_selectit import SelectITScorer, selectit_score
from hf_selectit.config import ScorerConfig
from hf_selectit.engine import Engine
from hf_selectit.errors import ConfigError, RatingTokenError, SchemaError
from hf_selectit.prompts import RATING_PROMPTS

from tests.tiny_lm import build_tiny_model_dir

ALPACA = {
    "instruction": [
        "Add two and two.",
        "Name a colour.",
        "Write a haiku about the sea, with care and rhythm.",
        "Translate 'chat' to English.",
        "Give three uses of a brick.",
        "Say hi",
        "Explain why the sky is blue in one or two sentences, for a child.",
    ],
    "input": ["", "", "", "French", "", "", ""],
    "output": [
        "4",
        "Blue.",
        "Waves fold into foam / salt wind carries the gull's cry / the tide keeps its time",
        "cat",
        "A doorstop, a paperweight, and a step.",
        "hi!",
        "Sunlight scatters off the air, and blue light scatters the most, so we see blue.",
    ],
}


def _reference_scores(model_dir, rows, *, n_prompts=5, alpha=0.2):
    """A plain, independent SelectIT: one text at a time, no padding, full logits, formulas by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rating_ids = [tok.convert_tokens_to_ids(str(k)) for k in range(1, 6)]
    sentence = []
    token_rows = []
    for instruction, inp, output in rows:
        x = instruction + ("\n" + inp if inp else "")
        token_scores = []
        for rp in RATING_PROMPTS[:n_prompts]:
            text = f"{rp}\n\nInstruction:{x}\nResponse:{output}\nThe answer is: \n"
            ids = tok(text, return_tensors="pt").input_ids
            with torch.no_grad():
                logits = model(ids).logits  # every position, no logits_to_keep
            p_full = torch.softmax(logits[0, -1].double(), dim=-1)
            p = [float(p_full[i]) for i in rating_ids]
            total = sum(p)
            pn = [v / total for v in p]
            best = max(range(5), key=lambda k: (pn[k], -k))  # ties -> lower rating
            s_base = best + 1
            token_scores.append(s_base * sum(pn[best] - v for v in pn) / 4)
        mean = sum(token_scores) / len(token_scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in token_scores) / len(token_scores))
        sentence.append(mean / (1 + alpha * std))
        token_rows.append(token_scores)
    return np.array(token_rows), np.array(sentence)


def _rows(data):
    return list(zip(data["instruction"], data["input"], data["output"]))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def alpaca_ds():
    return Dataset.from_dict(ALPACA)


def test_columns_rows_and_ranges(tiny_model_dir, alpaca_ds):
    scorer = SelectITScorer(str(tiny_model_dir))
    out = alpaca_ds.map(scorer, batched=True, load_from_cache_file=False)
    assert out.num_rows == alpaca_ds.num_rows
    assert set(scorer.output_columns) <= set(out.column_names)
    assert out["selectit_status"] == ["ok"] * alpaca_ds.num_rows
    for row in out:
        assert len(row["selectit_token_scores"]) == 5
        assert len(row["selectit_rating_probs"]) == 5
        assert all(abs(sum(p) - 1) < 1e-9 for p in row["selectit_rating_probs"])
        assert 0 <= row["selectit_sentence_score"] <= 5
        assert row["selectit_uncertainty"] == pytest.approx(np.std(row["selectit_token_scores"]))
    # The tiny model's scores differ by row: a test of equality below could otherwise pass vacuously.
    assert len({round(s, 6) for s in out["selectit_sentence_score"]}) == alpaca_ds.num_rows


def test_equals_plain_reference(tiny_model_dir, alpaca_ds):
    scorer = SelectITScorer(str(tiny_model_dir), max_batch_tokens=4096)
    out = scorer(alpaca_ds.to_dict())
    ref_tokens, ref_sentence = _reference_scores(tiny_model_dir, _rows(ALPACA))
    np.testing.assert_allclose(np.array(out["selectit_token_scores"]), ref_tokens, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.array(out["selectit_sentence_score"]), ref_sentence, atol=1e-5, rtol=0)


def test_batch_size_and_padding_do_not_change_scores(tiny_model_dir):
    # Rows of very different lengths, so micro-batches carry a lot of left padding.
    data = {k: v * 10 for k, v in ALPACA.items()}
    data["output"] = [o * (1 + i % 4) for i, o in enumerate(data["output"])]
    ds = Dataset.from_dict(data)
    results = {}
    for batch_size in (1, 3, 64):
        scorer = SelectITScorer(str(tiny_model_dir), prompts=2)
        scored = ds.map(scorer, batched=True, batch_size=batch_size, load_from_cache_file=False)
        results[batch_size] = np.array(scored["selectit_token_scores"])
    np.testing.assert_allclose(results[1], results[3], atol=1e-5, rtol=0)
    np.testing.assert_allclose(results[1], results[64], atol=1e-5, rtol=0)
    # A budget so small that every text runs alone gives the same numbers again.
    alone = SelectITScorer(str(tiny_model_dir), prompts=2, max_batch_tokens=1)(data)
    np.testing.assert_allclose(np.array(alone["selectit_token_scores"]), results[64], atol=1e-5, rtol=0)


def test_position_ids_follow_padding(tiny_model_dir):
    """Without explicit position ids left padding would shift positions; check the scorer's are right."""
    from hf_selectit.scorer import _pad_left

    ids, mask, pos = _pad_left([[5, 6, 7], [8]], pad_id=2, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [2, 2, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_selectit_score_function_reuses_one_model(tiny_model_dir, alpaca_ds, caplog):
    import logging

    kwargs = {"model": str(tiny_model_dir), "prompts": 3}
    a = alpaca_ds.map(selectit_score, batched=True, fn_kwargs=kwargs, load_from_cache_file=False)
    with caplog.at_level(logging.INFO, logger="hf_selectit"):
        b = alpaca_ds.map(selectit_score, batched=True, batch_size=2, fn_kwargs=kwargs, load_from_cache_file=False)
    assert not [r for r in caplog.records if r.name == "hf_selectit.models" and "Loaded" in r.getMessage()]
    direct = SelectITScorer(str(tiny_model_dir), prompts=3)(ALPACA)
    np.testing.assert_allclose(a["selectit_sentence_score"], direct["selectit_sentence_score"], atol=1e-9)
    np.testing.assert_allclose(b["selectit_sentence_score"], direct["selectit_sentence_score"], atol=1e-5)
    assert all(len(t) == 3 for t in a["selectit_token_scores"])


def test_single_row_map_asks_for_batched(tiny_model_dir, alpaca_ds):
    scorer = SelectITScorer(str(tiny_model_dir), prompts=1)
    with pytest.raises(ConfigError, match="batched=True"):
        alpaca_ds.map(scorer, load_from_cache_file=False)
    chat = Dataset.from_dict({"messages": [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]]})
    with pytest.raises(ConfigError, match="batched=True"):
        chat.map(scorer, load_from_cache_file=False)
    with pytest.raises(ConfigError, match="batched=True"):
        selectit_score({"instruction": "Say hi", "output": "hi"}, model=str(tiny_model_dir), prompts=1)
    assert scorer.forward_calls == 0


def test_column_prefix_and_options_change_scores(tiny_model_dir):
    base = SelectITScorer(str(tiny_model_dir))(ALPACA)
    other = SelectITScorer(str(tiny_model_dir), column_prefix="tiny_", alpha=0.0)(ALPACA)
    assert sorted(other) == sorted("tiny_" + k[len("selectit_"):] for k in base)
    # alpha = 0 is the plain mean of the token scores.
    np.testing.assert_allclose(other["tiny_sentence_score"], np.mean(base["selectit_token_scores"], axis=1))
    repo = SelectITScorer(str(tiny_model_dir), normalization="selectit-repo")(ALPACA)
    # The authors' extra softmax compresses P' towards uniform.
    assert np.max(repo["selectit_rating_probs"]) < np.max(base["selectit_rating_probs"])


def test_messages_and_sharegpt_rows(tiny_model_dir):
    messages = {
        "messages": [
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add two and two."},
             {"role": "assistant", "content": "4"}],
            [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
        ]
    }
    out = Dataset.from_dict(messages).map(SelectITScorer(str(tiny_model_dir)), batched=True)
    assert out["selectit_status"] == ["ok", "ok"]
    assert all(np.isfinite(out["selectit_sentence_score"]))
    sharegpt = {"conversations": [[{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Blue."}]]}
    out2 = SelectITScorer(str(tiny_model_dir))(sharegpt)
    assert out2["selectit_status"] == ["ok"]
    # Same (instruction, response) as messages row 2 -> same score.
    assert out2["selectit_sentence_score"][0] == pytest.approx(out["selectit_sentence_score"][1], abs=1e-6)


# --- bad rows: status says why, row count kept, NaN instead of a made-up score -------------


@pytest.mark.parametrize(
    "instruction, response, reason",
    [
        (None, "4", "instruction"),
        ("Add two and two.", None, "response"),
        ("Add two and two.", "", "response"),
        ("", "4", "instruction"),
        ("Add two and two.", 4, "response"),
        (["not", "text"], "4", "instruction"),
    ],
)
def test_bad_rows_get_error_status_and_nan(tiny_model_dir, instruction, response, reason):
    data = {
        "instruction": ["Name a colour.", instruction, "Say hi"],
        "input": ["", "", ""],
        "output": ["Blue.", response, "hi!"],
    }
    # Arrow cannot hold mixed types in one column, so those rows go to the scorer directly.
    plain_types = all(v is None or isinstance(v, str) for v in (instruction, response))
    ds = Dataset.from_dict(data) if plain_types else None
    scorer = SelectITScorer(str(tiny_model_dir))
    out = ds.map(scorer, batched=True) if ds is not None else scorer(data)
    n = 3
    assert len(out["selectit_status"]) == n
    status = out["selectit_status"]
    assert status[0] == "ok" and status[2] == "ok"
    assert status[1].startswith("error: ") and reason in status[1]
    assert math.isnan(out["selectit_sentence_score"][1])
    assert math.isnan(out["selectit_uncertainty"][1])
    assert len(out["selectit_token_scores"][1]) == 5 and all(math.isnan(v) for v in out["selectit_token_scores"][1])
    assert len(out["selectit_rating_probs"][1]) == 5 and all(
        len(p) == 5 and all(math.isnan(v) for v in p) for p in out["selectit_rating_probs"][1]
    )
    assert np.isfinite(out["selectit_sentence_score"][0]) and np.isfinite(out["selectit_sentence_score"][2])


def test_bad_chat_rows(tiny_model_dir):
    data = {"messages": [
        [{"role": "user", "content": "Hi"}],  # no assistant turn
        None,
        [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    ]}
    out = SelectITScorer(str(tiny_model_dir))(data)
    assert len(out["selectit_status"]) == 3
    assert out["selectit_status"][0].startswith("error: ") and out["selectit_status"][1].startswith("error: ")
    assert out["selectit_status"][2] == "ok"
    assert math.isnan(out["selectit_sentence_score"][0]) and math.isnan(out["selectit_sentence_score"][1])


def test_empty_batch_and_all_bad_batch(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir))
    empty = scorer({"instruction": [], "input": [], "output": []})
    assert all(v == [] for v in empty.values()) and sorted(empty) == sorted(scorer.output_columns)
    bad = scorer({"instruction": [None, None], "output": ["a", "b"]})
    assert len(bad["selectit_status"]) == 2 and all(s.startswith("error: ") for s in bad["selectit_status"])
    assert scorer.forward_calls == 0  # nothing to score, no model run, no made-up numbers


def test_unknown_schema_raises_with_columns_listed(tiny_model_dir):
    with pytest.raises(SchemaError) as err:
        SelectITScorer(str(tiny_model_dir))({"foo": ["a"], "bar": ["b"]})
    assert "foo" in str(err.value) and "columns=" in str(err.value)


def test_explicit_columns_mapping(tiny_model_dir):
    data = {"q": ALPACA["instruction"][:2], "a": ALPACA["output"][:2]}
    mapped = SelectITScorer(str(tiny_model_dir), columns={"instruction": "q", "response": "a"})(data)
    plain = SelectITScorer(str(tiny_model_dir))({"instruction": data["q"], "output": data["a"]})
    assert mapped["selectit_sentence_score"] == pytest.approx(plain["selectit_sentence_score"], abs=1e-9)


# --- truncation -----------------------------------------------------------------------------


def _tokens(tok, text, special=False):
    return tok(text, add_special_tokens=special)["input_ids"]


def test_long_response_loses_its_middle(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), max_length=400, prompts=1)
    long_response = "START " + "lorem ipsum " * 100 + "END"
    data = {"instruction": ["Write filler text."], "output": [long_response]}
    out = scorer(data)
    assert out["selectit_status"] == ["truncated"]
    assert np.isfinite(out["selectit_sentence_score"][0])
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ((ids,),) = scorer.token_ids(data)
    assert len(ids) == 400
    rp = RATING_PROMPTS[0]
    head = _tokens(tok, f"{rp}\n\nInstruction:Write filler text.\nResponse:START", special=True)
    tail = _tokens(tok, "END\nThe answer is: \n")
    assert ids[: len(head)] == head  # rating prompt, whole instruction, response start
    assert ids[-len(tail):] == tail  # response end and the whole rating question


def test_long_instruction_loses_its_tail(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), max_length=300, prompts=1)
    data = {"instruction": ["BEGIN " + "words " * 200], "output": ["short answer"]}
    out = scorer(data)
    assert out["selectit_status"] == ["truncated"]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ((ids,),) = scorer.token_ids(data)
    assert len(ids) == 300
    rp = RATING_PROMPTS[0]
    head = _tokens(tok, f"{rp}\n\nInstruction:BEGIN ", special=True)
    tail = _tokens(tok, "\nResponse:short answer\nThe answer is: \n")
    assert ids[: len(head)] == head
    assert ids[-len(tail):] == tail  # the short response survives whole


def test_max_length_shorter_than_rating_question_is_a_row_error(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), max_length=32, prompts=1)
    out = scorer({"instruction": ["Add two and two."], "output": ["4"]})
    assert out["selectit_status"][0].startswith("error: max_length=32")
    assert math.isnan(out["selectit_sentence_score"][0])


def test_default_max_length_is_model_context(tmp_path):
    model_dir = build_tiny_model_dir(tmp_path / "short", max_position_embeddings=256)
    scorer = SelectITScorer(str(model_dir), prompts=1)
    out = scorer({"instruction": ["x " * 200], "output": ["y"]})
    assert out["selectit_status"] == ["truncated"]
    assert scorer.info()["max_length"] == 256


# --- out of memory: halve and retry, never skip a row -------------------------------------


class _OOMAboveTwoEngine(Engine):
    """Raises a genuine CUDA OOM error for micro-batches of more than two texts; the model still runs."""

    def forward(self, batch, state):
        self.method.sizes = getattr(self.method, "sizes", []) + [int(batch.input_ids.shape[0])]
        if batch.input_ids.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(batch, state)


class _OOMAboveTwo(SelectITScorer):
    engine_class = _OOMAboveTwoEngine


class _OOMOnLongTextEngine(Engine):
    """Out of memory whenever the batch holds a text longer than 600 tokens, even alone."""

    def forward(self, batch, state):
        if batch.input_ids.shape[1] > 600:
            raise RuntimeError("CUDA error: out of memory")
        return super().forward(batch, state)


class _OOMOnLongText(SelectITScorer):
    engine_class = _OOMOnLongTextEngine


def test_oom_halves_and_retries(tiny_model_dir):
    plain = SelectITScorer(str(tiny_model_dir))(ALPACA)
    # A budget that holds all 35 texts in one micro-batch (the CPU default would split them).
    scorer = _OOMAboveTwo(str(tiny_model_dir), max_batch_tokens=32768)
    out = scorer(ALPACA)
    assert out["selectit_status"] == ["ok"] * len(ALPACA["instruction"])
    np.testing.assert_allclose(out["selectit_sentence_score"], plain["selectit_sentence_score"], atol=1e-5)
    assert scorer.sizes[0] > 2  # the first attempt really was too big
    assert max(s for s in scorer.sizes[1:]) <= 2 or any(s <= 2 for s in scorer.sizes)
    assert sum(s for s in scorer.sizes if s <= 2) == 5 * len(ALPACA["instruction"])


def test_row_that_never_fits_is_marked_not_skipped(tiny_model_dir):
    data = {k: list(v) for k, v in ALPACA.items()}
    data["output"][3] = "very long answer " * 40
    scorer = _OOMOnLongText(str(tiny_model_dir))
    out = scorer(data)
    assert len(out["selectit_status"]) == len(data["output"])
    assert out["selectit_status"][3] == "error: out of memory"
    assert math.isnan(out["selectit_sentence_score"][3])
    others = [s for i, s in enumerate(out["selectit_status"]) if i != 3]
    assert others == ["ok"] * (len(data["output"]) - 1)
    plain = SelectITScorer(str(tiny_model_dir))(data)
    keep = [i for i in range(len(data["output"])) if i != 3]
    np.testing.assert_allclose(
        np.array(out["selectit_sentence_score"])[keep], np.array(plain["selectit_sentence_score"])[keep], atol=1e-5
    )


def test_other_runtime_errors_are_not_swallowed(tiny_model_dir):
    class BrokenEngine(Engine):
        def forward(self, *args):
            raise RuntimeError("shape mismatch")

    class Broken(SelectITScorer):
        engine_class = BrokenEngine

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Broken(str(tiny_model_dir))(ALPACA)


# --- fingerprint and datasets cache ---------------------------------------------------------


def test_fingerprint_is_fast_and_config_only(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir))
    scorer(ALPACA)  # model loaded
    Hasher.hash(scorer)
    h = Hasher.hash(scorer)
    # Microseconds because only the config is hashed: a few hundred bytes, never the weights
    # (asserted through the pickled size, not a wall-clock limit on a shared machine).
    assert len(pickle.dumps(scorer)) < 4000
    assert h == Hasher.hash(SelectITScorer(str(tiny_model_dir)))  # loaded or not: same hash
    # Runtime-only options do not change the fingerprint.
    assert h == Hasher.hash(SelectITScorer(str(tiny_model_dir), device="cpu", max_batch_tokens=77))
    # Everything that changes scores does.
    changed = [
        dict(model=str(tiny_model_dir) + "/"), dict(prompts=3),
        dict(prompts=list(RATING_PROMPTS[:5])[::-1]), dict(prompt_set="zero-to-five"), dict(alpha=0.3),
        dict(normalization="selectit-repo"), dict(max_length=512), dict(dtype="bfloat16"),
        dict(columns={"instruction": "instruction", "response": "output"}), dict(column_prefix="m1_"),
        dict(template="chat"),
    ]
    hashes = {Hasher.hash(SelectITScorer(**{"model": str(tiny_model_dir), **kw})) for kw in changed}
    assert h not in hashes and len(hashes) == len(changed)
    # A revision names a Hub commit (a local folder with one is refused): it changes the hash.
    assert Hasher.hash(SelectITScorer("org/model")) != Hasher.hash(SelectITScorer("org/model", revision="v2"))


def test_fingerprint_changes_with_package_version(tiny_model_dir, monkeypatch):
    import hf_selectit.engine as engine_module

    before = Hasher.hash(SelectITScorer(str(tiny_model_dir)))
    monkeypatch.setattr(engine_module, "__version__", "999.0")
    assert Hasher.hash(SelectITScorer(str(tiny_model_dir))) != before


def test_fingerprint_equal_across_processes(tiny_model_dir):
    code = (
        "import sys; from datasets.fingerprint import Hasher; from hf_selectit import SelectITScorer; "
        "print(Hasher.hash(SelectITScorer(sys.argv[1], prompts=3, alpha=0.1)))"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code, str(tiny_model_dir)], capture_output=True, text=True,
                       check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip()
        for seed in (1, 2)
    }
    assert outs == {Hasher.hash(SelectITScorer(str(tiny_model_dir), prompts=3, alpha=0.1))}


def test_pickle_carries_runtime_options(tiny_model_dir):
    import pickle

    scorer = SelectITScorer(str(tiny_model_dir), device="cpu", max_batch_tokens=123)
    scorer(ALPACA)
    payload = pickle.dumps(scorer)
    assert len(payload) < 2000  # config only, no weights
    clone = pickle.loads(payload)
    assert clone.config == scorer.config and clone.forward_calls == 0


def test_second_map_is_served_from_cache(tiny_model_dir, tmp_path):
    Dataset.from_dict(ALPACA).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))  # file-backed, so map results are cached
    first = SelectITScorer(str(tiny_model_dir))
    out1 = ds.map(first, batched=True)
    assert first.forward_calls > 0
    second = SelectITScorer(str(tiny_model_dir))  # a new object, equal config
    out2 = ds.map(second, batched=True)
    assert second.forward_calls == 0
    assert out2.cache_files == out1.cache_files
    assert out2["selectit_sentence_score"] == out1["selectit_sentence_score"]
    changed = SelectITScorer(str(tiny_model_dir), alpha=0.5)
    ds.map(changed, batched=True)
    assert changed.forward_calls > 0


def test_num_proc_2_on_cpu(tiny_model_dir, tmp_path):
    Dataset.from_dict({k: v * 2 for k, v in ALPACA.items()}).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))
    # One text per micro-batch: the two workers see other batch compositions than the single
    # process, and on this steep tiny model that alone moves scores by ~2e-6 (float32 rounding
    # with other padded lengths), more than the 1e-6 checked here.
    scorer = SelectITScorer(str(tiny_model_dir), prompts=2, max_batch_tokens=1)
    par = ds.map(scorer, batched=True, batch_size=4, num_proc=2, with_rank=True)
    seq = ds.map(SelectITScorer(str(tiny_model_dir), prompts=2, max_batch_tokens=1), batched=True,
                 batch_size=4, load_from_cache_file=False)
    assert par.num_rows == ds.num_rows
    assert par["instruction"] == ds["instruction"]  # order kept
    np.testing.assert_allclose(par["selectit_sentence_score"], seq["selectit_sentence_score"], atol=1e-6)
    assert scorer.forward_calls == 0  # the workers scored, not this process


# --- config, chat template, rating tokens -------------------------------------------------


def test_invalid_options_fail_at_construction():
    with pytest.raises(ConfigError, match="alpha"):
        SelectITScorer(alpha=-1)
    with pytest.raises(ConfigError, match="normalization"):
        SelectITScorer(normalization="softmax")
    with pytest.raises(ConfigError):
        SelectITScorer(prompts=12)


def test_from_config_equals_kwargs(tiny_model_dir):
    a = SelectITScorer.from_config(ScorerConfig(model=str(tiny_model_dir), prompts=3))
    b = SelectITScorer(str(tiny_model_dir), prompts=3)
    assert a.config == b.config and Hasher.hash(a) == Hasher.hash(b)


def test_chat_template_mode(tiny_model_dir, tmp_path):
    raw = SelectITScorer(str(tiny_model_dir), prompts=2)(ALPACA)
    chat = SelectITScorer(str(tiny_model_dir), prompts=2, template="chat")(ALPACA)
    assert chat["selectit_status"] == ["ok"] * len(ALPACA["instruction"])
    assert not np.allclose(chat["selectit_sentence_score"], raw["selectit_sentence_score"])
    no_template = build_tiny_model_dir(tmp_path / "plain")
    with pytest.raises(ConfigError, match="chat template"):
        SelectITScorer(str(no_template), template="chat")(ALPACA)


def test_leading_space_rating_tokens_are_used_when_bare_digits_are_not_tokens(tmp_path):
    model_dir = build_tiny_model_dir(tmp_path / "spaced", digits="space")
    scorer = SelectITScorer(str(model_dir), prompts=1)
    out = scorer(ALPACA)
    assert out["selectit_status"][0] == "ok"
    info = scorer.info()["rating_tokens"]
    assert info["variant"] == "space" and info["pieces"] == [" 1", " 2", " 3", " 4", " 5"]


def test_tokenizer_without_digit_tokens_is_a_clear_error(tmp_path):
    model_dir = build_tiny_model_dir(tmp_path / "nodigits", digits="none")
    with pytest.raises(RatingTokenError, match="single token"):
        SelectITScorer(str(model_dir))(ALPACA)


def test_info_provenance(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), prompts=3, alpha=0.1)
    info = scorer.info()
    assert info["model"] == str(tiny_model_dir)
    assert info["prompts"] == list(RATING_PROMPTS[:3]) and info["alpha"] == 0.1
    assert info["rating_tokens"]["variant"] == "bare" and info["rating_tokens"]["pieces"] == ["1", "2", "3", "4", "5"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert info["parameter_count"] == sum(p.numel() for p in model.parameters())
    assert 0 < info["non_embedding_parameter_count"] < info["parameter_count"]
    assert info["dtype"] == "float32" and info["package_version"]
    import json

    json.dumps(info)  # serialisable for the dataset's metadata


@pytest.mark.timeout(240)
def test_num_proc_after_threaded_scoring_in_parent_does_not_hang(tiny_model_dir, tmp_path):
    """Forked workers inherit the parent's OpenMP pool; without one thread per worker they hang."""
    Dataset.from_dict(ALPACA).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))
    torch.set_num_threads(2)
    try:
        SelectITScorer(str(tiny_model_dir), prompts=1)(ALPACA)
        x = torch.randn(300, 300)
        float((x @ x).sum())  # a parallel op in the parent
        out = ds.map(SelectITScorer(str(tiny_model_dir), prompts=1), batched=True, batch_size=2, num_proc=2)
    finally:
        torch.set_num_threads(1)
    assert out.num_rows == ds.num_rows and out["selectit_status"] == ["ok"] * ds.num_rows


def test_chat_mode_truncation_keeps_the_template_tail(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), prompts=1, template="chat", max_length=400)
    data = {"instruction": ["Write filler text."], "output": ["START " + "lorem ipsum " * 100 + "END"]}
    out = scorer(data)
    assert out["selectit_status"] == ["truncated"] and np.isfinite(out["selectit_sentence_score"][0])
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ((ids,),) = scorer.token_ids(data)
    tail = _tokens(tok, "END\nThe answer is: \n\n<|assistant|>\n")
    head = _tokens(tok, f"<|user|>\n{RATING_PROMPTS[0]}\n\nInstruction:Write filler text.")
    assert len(ids) == 400 and ids[-len(tail):] == tail and ids[: len(head)] == head


# --- shared rating-prompt prefix (reuse_prompt_prefix) ----------------------------------------


def _mixed_rows():
    """Alpaca rows plus one the model must truncate and two that are errors (empty response, bad type)."""
    data = {k: list(v) for k, v in ALPACA.items()}
    data["instruction"] += ["Summarise this.", "Empty answer", 5]
    data["input"] += ["", "", ""]
    data["output"] += ["START " + "lorem ipsum " * 60 + "END", "", "x"]
    return data


@pytest.mark.parametrize("template", ["raw", "chat"])
def test_prefix_reuse_equals_full_forward(tiny_model_dir, template):
    data = _mixed_rows()
    kwargs = dict(prompts=3, template=template, max_length=500)
    reused = SelectITScorer(str(tiny_model_dir), **kwargs)
    plain = SelectITScorer(str(tiny_model_dir), reuse_prompt_prefix=False, **kwargs)
    a, b = reused(data), plain(data)
    assert a["selectit_status"] == b["selectit_status"]
    assert a["selectit_status"][7] == "truncated" and a["selectit_status"][8].startswith("error")
    assert a["selectit_status"][9].startswith("error") and a["selectit_status"][:7] == ["ok"] * 7
    for column in ("selectit_token_scores", "selectit_rating_probs", "selectit_sentence_score"):
        np.testing.assert_allclose(np.array(a[column], dtype=float), np.array(b[column], dtype=float),
                                   atol=1e-5, rtol=0, err_msg=column)
    assert np.isnan(a["selectit_sentence_score"][8]) and np.isnan(a["selectit_sentence_score"][9])
    # The prefix path really ran: one cached prefix per prompt, each longer than the rating
    # prompt itself (BOS + prompt + "\n\nInstruction:"), none on the plain scorer.
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cached = sorted(tok.decode(list(ids)) for ids in reused.engine.cached_prefixes())
    assert len(cached) == 3
    for text, rp in zip(cached, sorted(RATING_PROMPTS[:3])):
        assert text.endswith(rp + "\n\nInstruction:") or text.endswith(rp + "\n\nInstruction"), text
    assert plain.engine.cached_prefixes() == [] and plain.engine.stats.prefix_forwards == 0


def test_prefix_reuse_batch_sizes_agree_with_plain(tiny_model_dir):
    data = {k: v * 10 for k, v in ALPACA.items()}
    data["output"] = [o * (1 + i % 4) for i, o in enumerate(data["output"])]
    ds = Dataset.from_dict(data)
    plain = SelectITScorer(str(tiny_model_dir), prompts=2, reuse_prompt_prefix=False)(data)
    for batch_size in (1, 3, 64):
        scored = ds.map(SelectITScorer(str(tiny_model_dir), prompts=2), batched=True,
                        batch_size=batch_size, load_from_cache_file=False)
        np.testing.assert_allclose(np.array(scored["selectit_token_scores"]),
                                   np.array(plain["selectit_token_scores"]), atol=1e-5, rtol=0)


def test_prefix_is_computed_once_per_prompt_and_process(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), prompts=2)
    half = {k: v[:4] for k, v in ALPACA.items()}
    rest = {k: v[4:] for k, v in ALPACA.items()}
    scorer(half)
    first = scorer.forward_calls
    stats = scorer.engine.stats
    assert stats.prefix_forwards == 2 and stats.micro_batches >= 1
    prefixes = scorer.engine.cached_prefixes()
    scorer(rest)
    second = scorer.forward_calls - first
    # The first call also ran the two prefixes; the second reused them (no prefix forward).
    assert first == stats.prefix_forwards + (stats.micro_batches - second) and second >= 1
    assert stats.prefix_forwards == 2 and scorer.engine.cached_prefixes() == prefixes
    assert len(prefixes) == 2


class _OOMAboveTwoOnPrefixEngine(Engine):
    """Out of memory for more than two texts; records whether the micro-batch used the prefix cache."""

    def forward(self, batch, state):
        calls = getattr(self.method, "calls", [])
        self.method.calls = calls + [(int(batch.input_ids.shape[0]), batch.prefix_kv is not None)]
        if batch.input_ids.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(batch, state)


class _OOMAboveTwoOnPrefix(SelectITScorer):
    engine_class = _OOMAboveTwoOnPrefixEngine


def test_oom_halving_on_the_prefix_path(tiny_model_dir):
    plain = SelectITScorer(str(tiny_model_dir), reuse_prompt_prefix=False)(ALPACA)
    scorer = _OOMAboveTwoOnPrefix(str(tiny_model_dir), max_batch_tokens=32768)
    out = scorer(ALPACA)
    assert out["selectit_status"] == ["ok"] * len(ALPACA["instruction"])
    np.testing.assert_allclose(out["selectit_sentence_score"], plain["selectit_sentence_score"], atol=1e-5)
    assert all(used for _, used in scorer.calls)  # every attempt went through the prefix cache
    assert scorer.calls[0][0] == len(ALPACA["instruction"])  # one prompt's texts, too many at once
    assert sum(n for n, _ in scorer.calls if n <= 2) == 5 * len(ALPACA["instruction"])


def test_budget_default_and_options_stay_out_of_the_fingerprint(tiny_model_dir):
    from hf_selectit.scorer import default_batch_tokens

    assert ScorerConfig().max_batch_tokens is None and ScorerConfig().reuse_prompt_prefix is True
    assert default_batch_tokens("cpu") == 512 and default_batch_tokens("cuda:1") == 32768
    base = Hasher.hash(SelectITScorer(str(tiny_model_dir)))
    assert base == Hasher.hash(SelectITScorer(str(tiny_model_dir), reuse_prompt_prefix=False, max_batch_tokens=64))
    for bad in (0, -5, 2.5, "1024", True):
        with pytest.raises(ConfigError, match="max_batch_tokens"):
            ScorerConfig(max_batch_tokens=bad)
    with pytest.raises(ConfigError, match="reuse_prompt_prefix"):
        ScorerConfig(reuse_prompt_prefix="yes")


def test_micro_batches_keep_the_budget_and_the_padding_cap():
    """Every text lands in exactly one micro-batch, longest first; the budget and, when given, the
    padding cap hold in each (a text over the budget alone still runs alone)."""
    import random

    from hf_selectit.engine import micro_batches

    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(0, 40))]
        budget, extra = rng.choice([1, 64, 512, 2048]), rng.choice([0, 30])
        for cap in (None, 0.02, 0.2):
            batches = micro_batches(lengths, budget, extra=extra, max_padding=cap)
            flat = [i for b in batches for i in b]
            assert sorted(flat) == list(range(len(lengths)))
            assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
            for b in batches:
                longest = lengths[b[0]]
                assert len(b) == 1 or len(b) * (longest + extra) <= budget
                if cap is not None:
                    assert sum(longest - lengths[i] for i in b) <= cap * len(b) * longest
