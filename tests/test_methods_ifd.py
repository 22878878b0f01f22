"""IFD and reversed IFD against a plain batch-1 reference of the authors' computation (tiny model).

The reference below is written from METHOD.md 7.1/7.2 and the authors' scripts, independently of
the package: templates typed out, one text at a time, `model(ids, labels=labels)` with full
logits at every position (transformers' own loss), the read span starting at
`len(tokenizer.encode(text[:text.rfind(target)]))`.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from datasets.fingerprint import Hasher
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_selectit import IFDScorer, ReverseIFDScorer
from hf_selectit.config import IFDConfig, ReverseIFDConfig
from hf_selectit.errors import ConfigError

from tests.test_scorer import _OOMAboveTwoEngine  # out of memory above two texts, on any method
from tests.tiny_lm import build_tiny_model_dir, build_tiny_tokenizer

ALPACA_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                     "{instruction}\n\n### Input:\n{input}\n\n### Response:")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n{instruction}\n\n### Response:")
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the user's questions. ")
REVERSE = ("Below is the response to an instruction, please guess the corresponding instruction for the given "
           "response.\n{}\nGenerate the instruction for the above response.")

ROWS = {
    "instruction": ["Add two and two.", "Name a colour.", "Translate the word.", "Give three uses of a brick.",
                    "Explain why the sky is blue in one or two sentences, for a child.", "Say hi"],
    "input": ["", "", "chat (French)", "", "", "friendly"],
    "output": ["4", "Blue.", "cat", "A doorstop, a paperweight, and a step.",
               "Sunlight scatters off the air, and blue light scatters the most, so we see blue.", "hi!"],
}
MESSAGES = {"messages": [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add two and two."},
     {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Red."},
     {"role": "user", "content": "Another one?"}, {"role": "assistant", "content": "Blue, like the sea."}],
]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prompt(template, instruction, inp):
    if template == "alpaca":
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=inp) if inp else \
            ALPACA_NO_INPUT.format(instruction=instruction)
    if template == "vicuna":
        if inp:
            return VICUNA_SYSTEM + f"USER: {instruction}\nInput:\n{inp} ASSISTANT:"
        return VICUNA_SYSTEM + f"USER: {instruction} ASSISTANT:"
    return f"{instruction}\n{inp}\n" if inp else f"{instruction}\n"


def _x_parts(row):
    """(instruction, input) as METHOD.md section 1 / 7.1 keep them (chat: X and no input)."""
    instruction, inp = row
    if inp and instruction.strip() and inp.strip():
        return instruction, inp
    return instruction, ""


def reference(model_dir, rows, *, template="alpaca", direct_prefix=None, variant="loss", max_length=None,
              reverse=False):
    """Batch-1 IFD / r-IFD, the authors' way. rows: (instruction, input, response)."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if direct_prefix is None:
        direct_prefix = "" if reverse else {"alpaca": "### Response:", "vicuna": "ASSISTANT:", "none": ""}[template]
    limit = max_length or model.config.max_position_embeddings
    out = []
    for instruction, inp, response in rows:
        instruction, inp = _x_parts((instruction, inp))
        if reverse:
            target = instruction + inp
            whole = _prompt(template, REVERSE.format(response), "") + target
        else:
            target = response
            whole = _prompt(template, instruction, inp) + target
        direct = direct_prefix + target
        encoded = []
        for text in (whole, direct):
            ids = tok.encode(text)
            start = len(tok.encode(text[:text.rfind(target)]))
            encoded.append((ids, start))
        keep = min(min(len(ids), limit) - start for ids, start in encoded)
        truncated = any(len(ids) - start > keep for ids, start in encoded)
        if keep <= 0 or any(start + keep <= max(start, 1) for _, start in encoded):
            # nothing of the target left in one of the texts (or, without BOS, only its first
            # token, which has no context): HF's loss would be NaN; the scorer says why
            out.append((math.nan, math.nan, math.nan, "error"))
            continue
        losses = []
        for ids, start in encoded:
            ids = torch.tensor([ids[:start + keep]])
            labels = ids.clone()
            labels[0, :start] = -100
            with torch.no_grad():
                losses.append(float(model(ids, labels=labels).loss))  # full logits, HF's own loss
        cond, alone = losses
        score = math.exp(cond) / math.exp(alone) if variant == "ppl" else cond / alone
        out.append((score, cond, alone, "truncated" if truncated else "ok"))
    return out


def _rows(data):
    return list(zip(data["instruction"], data["input"], data["output"]))


def _chat_rows():
    return [("Be brief.\nAdd two and two.", "", "4"),
            ("User: Name a colour.\nAssistant: Red.\nUser: Another one?", "", "Blue, like the sea.")]


def _check(out, ref, prefix):
    np.testing.assert_allclose(out[prefix + "score"], [r[0] for r in ref], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out[prefix + "conditioned_loss"], [r[1] for r in ref], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out[prefix + "direct_loss"], [r[2] for r in ref], atol=1e-4, rtol=0)
    assert [s if r[3] != "error" else s.split(":")[0] for s, r in zip(out[prefix + "status"], ref)] == \
        [r[3] for r in ref]


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "none"])
@pytest.mark.parametrize("variant", ["loss", "ppl"])
def test_ifd_equals_reference(tiny_model_dir, template, variant):
    out = IFDScorer(str(tiny_model_dir), template=template, variant=variant)(ROWS)
    _check(out, reference(tiny_model_dir, _rows(ROWS), template=template, variant=variant), "ifd_")
    # Scores differ by row, so equality above is not vacuous.
    assert len({round(s, 6) for s in out["ifd_score"]}) == len(ROWS["output"])


@pytest.mark.parametrize("preset", ["cherry", "superfiltering", "reflection"])
def test_presets_equal_reference(tiny_model_dir, preset):
    combo = {"cherry": ("alpaca", "### Response:", "loss"), "superfiltering": ("none", "", "ppl"),
             "reflection": ("vicuna", "", "ppl")}[preset]
    out = IFDScorer(str(tiny_model_dir), preset=preset)(ROWS)
    ref = reference(tiny_model_dir, _rows(ROWS), template=combo[0], direct_prefix=combo[1], variant=combo[2])
    _check(out, ref, "ifd_")


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "none"])
def test_reverse_ifd_equals_reference(tiny_model_dir, template):
    out = ReverseIFDScorer(str(tiny_model_dir), template=template)(ROWS)
    _check(out, reference(tiny_model_dir, _rows(ROWS), template=template, variant="ppl", reverse=True), "rifd_")
    loss = ReverseIFDScorer(str(tiny_model_dir), template=template, variant="loss")(ROWS)
    _check(loss, reference(tiny_model_dir, _rows(ROWS), template=template, variant="loss", reverse=True), "rifd_")


def test_multi_turn_rows(tiny_model_dir):
    for cls, prefix, reverse in ((IFDScorer, "ifd_", False), (ReverseIFDScorer, "rifd_", True)):
        out = Dataset.from_dict(MESSAGES).map(cls(str(tiny_model_dir)), batched=True, load_from_cache_file=False)
        template = "vicuna" if reverse else "alpaca"
        ref = reference(tiny_model_dir, _chat_rows(), template=template, variant="ppl" if reverse else "loss",
                        reverse=reverse)
        _check(out.to_dict(), ref, prefix)


def test_truncated_rows_count_the_same_tokens_in_both_texts(tiny_model_dir):
    data = {k: list(v) for k, v in ROWS.items()}
    data["output"][1] = "START " + "lorem ipsum " * 30 + "END"
    data["instruction"][3] = "BEGIN " + "words " * 20
    for cls, prefix, reverse, limit in ((IFDScorer, "ifd_", False, 300), (ReverseIFDScorer, "rifd_", True, 420)):
        out = cls(str(tiny_model_dir), max_length=limit)(data)
        ref = reference(tiny_model_dir, _rows(data), max_length=limit, reverse=reverse,
                        template="vicuna" if reverse else "alpaca", variant="ppl" if reverse else "loss")
        _check(out, ref, prefix)
        assert "truncated" in out[prefix + "status"]
    ids = IFDScorer(str(tiny_model_dir), max_length=300).token_ids(data)
    cond, direct, (c0, d0) = ids[1]
    assert len(cond) == 300 and len(cond) - c0 == len(direct) - d0  # same number of response tokens


def test_max_length_that_leaves_no_response_is_a_row_error(tiny_model_dir):
    out = IFDScorer(str(tiny_model_dir), max_length=60)(ROWS)
    assert all(s.startswith("error: max_length=60") for s in out["ifd_status"])
    assert all(math.isnan(v) for v in out["ifd_score"])


def _no_bos_model_dir(path):
    """A tiny model whose tokenizer adds no BOS (GPT-2 style)."""
    from tokenizers import processors

    model_dir = build_tiny_model_dir(path)
    tok = build_tiny_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
    tok.save_pretrained(model_dir)
    return model_dir


def test_tokenizer_without_bos(tmp_path):
    model_dir = _no_bos_model_dir(tmp_path / "nobos")
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.encode("ab") == tok.encode("ab", add_special_tokens=False)  # really no BOS
    for preset in ("superfiltering", "cherry"):
        out = IFDScorer(str(model_dir), preset=preset)(ROWS)
        combo = {"cherry": ("alpaca", "### Response:", "loss"), "superfiltering": ("none", "", "ppl")}[preset]
        ref = reference(model_dir, _rows(ROWS), template=combo[0], direct_prefix=combo[1], variant=combo[2])
        _check(out, ref, "ifd_")
    # Superfiltering's direct text is the response alone: its first token is read only in the
    # conditioned text; a one-token response then has nothing to read alone: an error, not a value.
    cond, direct, (c0, d0) = IFDScorer(str(model_dir), preset="superfiltering").token_ids(ROWS)[1]
    assert d0 == 1 and len(direct) - 1 == len(cond) - c0 - 1
    one = IFDScorer(str(model_dir), preset="superfiltering")({"instruction": ["Add"], "output": ["4"]})
    assert one["ifd_status"][0].startswith("error: ") and math.isnan(one["ifd_score"][0])


def test_batching_prefix_and_chunking_do_not_change_scores(tiny_model_dir, monkeypatch):
    import hf_selectit.engine as engine

    data = {k: v * 4 for k, v in ROWS.items()}
    data["output"] = [o * (1 + i % 3) for i, o in enumerate(data["output"])]
    ds = Dataset.from_dict(data)
    base = IFDScorer(str(tiny_model_dir), reuse_prompt_prefix=False, max_batch_tokens=1)(data)
    for kwargs in ({}, {"max_batch_tokens": 64}, {"max_batch_tokens": 100000}):
        for batch_size in (1, 5, 64):
            out = ds.map(IFDScorer(str(tiny_model_dir), **kwargs), batched=True, batch_size=batch_size,
                         load_from_cache_file=False)
            np.testing.assert_allclose(out["ifd_score"], base["ifd_score"], atol=1e-5, rtol=0)
    # The output head runs on chunks of positions: a tiny chunk gives the same losses.
    monkeypatch.setattr(engine, "LOSS_CHUNK_POSITIONS", 7)
    small = IFDScorer(str(tiny_model_dir))(data)
    np.testing.assert_allclose(small["ifd_direct_loss"], base["ifd_direct_loss"], atol=1e-5, rtol=0)


def test_long_row_never_runs_the_head_on_every_position_at_once(tiny_model_dir):
    from hf_selectit.engine import LOSS_CHUNK_POSITIONS
    from hf_selectit.models import load_model_and_tokenizer

    row = {"instruction": ["Write filler."], "output": ["lorem ipsum " * 170]}  # ~2,050 tokens
    scorer = IFDScorer(str(tiny_model_dir), max_length=2048)
    model, _ = load_model_and_tokenizer(scorer.config, "cpu")
    seen = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        out = scorer(row)
    finally:
        hook.remove()
    assert out["ifd_status"] == ["truncated"]
    ref = reference(tiny_model_dir, [("Write filler.", "", row["output"][0])], max_length=2048)
    _check(out, ref, "ifd_")
    heads = [s for s in seen if s[-2] > 1]  # leave out prefix forwards (logits at one position)
    assert heads and max(s[-2] for s in heads) <= LOSS_CHUNK_POSITIONS
    cond, direct, (c0, d0) = scorer.token_ids(row)[0]
    assert len(cond) == 2048 and len(cond) - c0 > 1800
    # Every read token of both texts went through the head, and nothing else.
    assert sum(s[-2] for s in heads) == (len(cond) - c0) + (len(direct) - d0)


class _OOMIFD(IFDScorer):
    engine_class = _OOMAboveTwoEngine


def test_oom_halving(tiny_model_dir):
    plain = IFDScorer(str(tiny_model_dir))(ROWS)
    scorer = _OOMIFD(str(tiny_model_dir), max_batch_tokens=100000)
    out = scorer(ROWS)
    assert out["ifd_status"] == ["ok"] * len(ROWS["output"])
    np.testing.assert_allclose(out["ifd_score"], plain["ifd_score"], atol=1e-5)
    assert scorer.engine.stats.oom_splits > 0


def test_bad_rows_keep_their_place(tiny_model_dir):
    data = {"instruction": ["Name a colour.", None, "Say hi", ""], "input": ["", "", "", ""],
            "output": ["Blue.", "x", "", "y"]}
    for cls, prefix in ((IFDScorer, "ifd_"), (ReverseIFDScorer, "rifd_")):
        out = Dataset.from_dict(data).map(cls(str(tiny_model_dir)), batched=True, load_from_cache_file=False)
        status = out[prefix + "status"]
        assert status[0] == "ok" and all(s.startswith("error: ") for s in status[1:])
        assert np.isfinite(out[prefix + "score"][0]) and all(math.isnan(v) for v in out[prefix + "score"][1:])
        assert out["instruction"] == data["instruction"]
        empty = cls(str(tiny_model_dir))({"instruction": [], "output": []})
        assert empty == {c: [] for c in cls(str(tiny_model_dir)).output_columns}


def test_single_row_asks_for_batched(tiny_model_dir):
    with pytest.raises(ConfigError, match="batched=True"):
        Dataset.from_dict(ROWS).map(IFDScorer(str(tiny_model_dir)), load_from_cache_file=False)


def test_options_presets_and_errors():
    assert IFDConfig(preset="superfiltering").template == "none"
    assert IFDConfig(template="vicuna").direct_prefix == "ASSISTANT:"
    assert IFDConfig(template="vicuna", direct_prefix="").direct_prefix == ""
    assert (ReverseIFDConfig().template, ReverseIFDConfig().variant, ReverseIFDConfig().direct_prefix) == \
        ("vicuna", "ppl", "")
    with pytest.raises(ConfigError, match="contradicts preset"):
        IFDScorer(preset="cherry", variant="ppl")
    for bad in (dict(template="llama"), dict(variant="log"), dict(preset="alpagasus"), dict(max_length=0),
                dict(direct_prefix=3), dict(max_batch_tokens=0)):
        with pytest.raises(ConfigError):
            IFDScorer(**bad)
    assert IFDScorer().output_columns == ["ifd_score", "ifd_conditioned_loss", "ifd_direct_loss", "ifd_status"]
    assert ReverseIFDScorer(column_prefix="r_").output_columns[0] == "r_score"


def test_map_contract_fingerprint_cache_and_info(tiny_model_dir, tmp_path):
    Dataset.from_dict({k: v * 2 for k, v in ROWS.items()}).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))
    first = IFDScorer(str(tiny_model_dir), max_batch_tokens=1)
    out1 = ds.map(first, batched=True, batch_size=4)
    assert first.forward_calls > 0
    again = IFDScorer(str(tiny_model_dir), max_batch_tokens=1)
    out2 = ds.map(again, batched=True, batch_size=4)
    assert again.forward_calls == 0 and out2.cache_files == out1.cache_files
    # num_proc workers with ranks: same rows, same order, same scores.
    par = ds.map(IFDScorer(str(tiny_model_dir), max_batch_tokens=1), batched=True, batch_size=4, num_proc=2,
                 with_rank=True, load_from_cache_file=False)
    assert par["instruction"] == ds["instruction"]
    np.testing.assert_allclose(par["ifd_score"], out1["ifd_score"], atol=1e-6)
    # Fingerprint: microseconds, config only; runtime options left out; method options in.
    scorer = IFDScorer(str(tiny_model_dir))
    Hasher.hash(scorer)
    h = Hasher.hash(scorer)
    # Microseconds because only the config is hashed: a few hundred bytes, never the weights
    # (asserted through the pickled size, not a wall-clock limit on a shared machine).
    assert len(pickle.dumps(scorer)) < 4000
    assert h == Hasher.hash(IFDScorer(str(tiny_model_dir), device="cpu", max_batch_tokens=7, reuse_prompt_prefix=False))
    others = {Hasher.hash(IFDScorer(str(tiny_model_dir), **kw)) for kw in (
        dict(template="vicuna"), dict(variant="ppl"), dict(direct_prefix=""), dict(max_length=300),
        dict(column_prefix="a_"))}
    others.add(Hasher.hash(ReverseIFDScorer(str(tiny_model_dir), template="alpaca", variant="loss",
                                            column_prefix="ifd_", direct_prefix="### Response:")))
    assert h not in others and len(others) == 6
    assert len(pickle.dumps(scorer)) < 2000 and pickle.loads(pickle.dumps(scorer)).config == scorer.config
    info = ReverseIFDScorer(str(tiny_model_dir), preset="reflection").info()
    assert info["method"] == "rifd" and info["options"]["template"] == "vicuna"
    assert info["options"]["preset"] == "reflection" and info["variant"] == "ppl"
    assert "guess the corresponding instruction" in info["reverse_instruction"]
    assert info["output_columns"] == ["rifd_score", "rifd_conditioned_loss", "rifd_direct_loss", "rifd_status"]


# --- the embedded SmolLM2 (slow) -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cls, kwargs, reverse", [
    (IFDScorer, dict(preset="cherry"), False),
    (IFDScorer, dict(preset="superfiltering", max_length=20), False),
    (ReverseIFDScorer, dict(), True),
])
def test_embedded_smollm2_equals_reference(cls, kwargs, reverse):
    from hf_selectit.models import embedded_model_path

    model_dir = embedded_model_path()
    rows = {
        "instruction": ["Give three tips for staying healthy.", "Translate to French.", "Write a sentence."],
        "input": ["", "Good morning", ""],
        "output": ["1. Eat a balanced diet. 2. Exercise regularly. 3. Sleep well.", "Bonjour",
                   "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."],
    }
    scorer = cls(**kwargs)
    out = scorer(rows)
    prefix = scorer.config.column_prefix
    c = scorer.config
    ref = reference(model_dir, _rows(rows), template=c.template, direct_prefix=c.direct_prefix, variant=c.variant,
                    max_length=c.max_length, reverse=reverse)
    _check(out, ref, prefix)
    if c.max_length:
        assert "truncated" in out[prefix + "status"]
    chat = cls(**kwargs)(MESSAGES)
    ref_chat = reference(model_dir, _chat_rows(), template=c.template, direct_prefix=c.direct_prefix,
                         variant=c.variant, max_length=c.max_length, reverse=reverse)
    _check(chat, ref_chat, prefix)


def test_each_config_class_names_its_method():
    from hf_selectit.config import METHOD_CONFIGS
    from hf_selectit.methods import scorer_class
    from hf_selectit.pipeline import make_scorer

    assert not isinstance(ReverseIFDConfig(), IFDConfig) and not isinstance(IFDConfig(), ReverseIFDConfig)
    assert type(make_scorer(ReverseIFDConfig(preset="reflection"))) is ReverseIFDScorer
    assert type(make_scorer(IFDConfig(preset="cherry"))) is IFDScorer
    for method in ("ifd", "rifd"):
        cls = scorer_class(method)
        assert cls.config_class is METHOD_CONFIGS[method] and cls.method == method
    with pytest.raises(ConfigError):
        IFDScorer.from_config(ReverseIFDConfig())


def test_run_yaml_scores_selectit_and_ifd_side_by_side(tiny_model_dir, tmp_path, capsys):
    import json

    from hf_selectit.provenance import scorer_infos
    from hf_selectit.options import load_run_config
    from hf_selectit.pipeline import run_pipeline

    rows = [dict(instruction=i, input=c, output=o) for i, c, o in _rows(ROWS)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "run.yaml").write_text(
        f"input: {tmp_path / 'data.jsonl'}\noutput: {tmp_path / 'scored'}\n"
        "models:\n"
        f"  - {{model: {tiny_model_dir}, column_prefix: selectit_tiny_, prompts: 2}}\n"
        f"  - {{method: ifd, model: {tiny_model_dir}, preset: cherry}}\n"
        f"  - {{method: rifd, model: {tiny_model_dir}}}\n"
        "select: {ratio: 0.5, column: ifd_score}\n")
    summary, scored, subset = run_pipeline(load_run_config(str(tmp_path / "run.yaml")))
    assert {"selectit_tiny_sentence_score", "ifd_score", "rifd_score"} <= set(scored.column_names)
    direct = IFDScorer(str(tiny_model_dir), preset="cherry")(ROWS)
    np.testing.assert_allclose(scored["ifd_score"], direct["ifd_score"], atol=1e-5)
    valid = [s for s in scored["ifd_score"] if s <= 1]
    assert len(subset) == int(len(valid) * 0.5)  # the IFD cut-off at 1, then the top half
    # The summary says how many rows the cut-off took, so "kept" adds up for the user.
    assert summary.rows_cut == len(scored) - len(valid)
    from dataclasses import replace

    from hf_selectit.cli import print_summary

    for cut in (summary.rows_cut, 2, 0):
        print_summary(replace(summary, rows_cut=cut))
        said = "the IFD cut-off at 1 dropped" in capsys.readouterr().out
        assert said == (cut > 0)
    infos = scorer_infos(scored)
    assert {i["method"] for i in infos.values()} == {"selectit", "ifd", "rifd"}
    assert infos["ifd_"]["options"]["preset"] == "cherry"
