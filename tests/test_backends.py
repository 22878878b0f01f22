"""The backend switch without vLLM installed: options, their checks, CLI/YAML, fingerprint, errors.

What vLLM computes is tested in tests/test_vllm.py (`make test-vllm`, its own environment).
"""

from __future__ import annotations

import json
import pickle
import sys

import pytest
from datasets.fingerprint import Hasher

from hf_selectit import AlpaGasusScorer, DeitaScorer, IFDScorer, ReverseIFDScorer, SelectITScorer, cli, options
from hf_selectit.config import AlpaGasusConfig, DeitaConfig, IFDConfig, ReverseIFDConfig, ScorerConfig
from hf_selectit.errors import ConfigError, ModelLoadError

CONFIGS = (ScorerConfig, IFDConfig, ReverseIFDConfig, AlpaGasusConfig, DeitaConfig)
SCORERS = (SelectITScorer, IFDScorer, ReverseIFDScorer, AlpaGasusScorer, DeitaScorer)


@pytest.fixture
def no_vllm(monkeypatch):
    # importlib.util.find_spec returns None for a module set to None in sys.modules: vLLM absent.
    monkeypatch.setitem(sys.modules, "vllm", None)


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_scorer_config_has_the_backend_switch(cls):
    assert cls().backend == "transformers" and cls().vllm_kwargs is None
    config = cls(backend="vllm", max_length=512, vllm_kwargs={"tensor_parallel_size": 2, "max_model_len": 1024})
    assert config.backend == "vllm" and config.vllm_kwargs["tensor_parallel_size"] == 2
    with pytest.raises(ConfigError, match=r"backend='vlm' is invalid: expected one of \['transformers', 'vllm'\]"):
        cls(backend="vlm")


@pytest.mark.parametrize("kwargs, words", [
    ({"vllm_kwargs": {"tensor_parallel_size": 2}}, "only apply with backend='vllm'"),
    ({"backend": "vllm", "vllm_kwargs": {"tensor_paralel_size": 2}}, "unknown name 'tensor_paralel_size'"),
    ({"backend": "vllm", "vllm_kwargs": {"dtype": "half"}}, "scorer option 'dtype'"),
    ({"backend": "vllm", "vllm_kwargs": {"trust_remote_code": True}}, "scorer option 'trust_remote_code'"),
    ({"backend": "vllm", "vllm_kwargs": {"model": "x"}}, "scorer option 'model'"),
    ({"backend": "vllm", "vllm_kwargs": {"gpu_memory_utilization": 1.5}}, "share of memory in (0, 1]"),
    ({"backend": "vllm", "vllm_kwargs": {"tensor_parallel_size": "2"}}, "whole number >= 1"),
    ({"backend": "vllm", "vllm_kwargs": {"enforce_eager": "yes"}}, "expected true or false"),
    ({"backend": "vllm", "vllm_kwargs": "tp=2"}, "expected a dict of `vllm.LLM` keyword arguments"),
    ({"backend": "vllm", "model_kwargs": {"attn_implementation": "sdpa"}}, "use vllm_kwargs"),
    ({"backend": "vllm", "max_batch_tokens": 4096}, "max_num_batched_tokens"),
    ({"backend": "vllm", "device": "cpu"}, "CUDA_VISIBLE_DEVICES"),
    ({"backend": "vllm", "vllm_kwargs": {"max_model_len": 1024}}, "at most 1023"),
    ({"backend": "vllm", "max_length": 1024, "vllm_kwargs": {"max_model_len": 1024}}, "at most 1023"),
])
def test_vllm_options_are_checked(kwargs, words):
    with pytest.raises(ConfigError) as err:
        ScorerConfig(**kwargs)
    assert words in str(err.value)


def test_vllm_token_is_hidden_everywhere():
    config = IFDConfig(backend="vllm", vllm_kwargs={"token": "hf_secret_value", "tensor_parallel_size": 2})
    assert "hf_secret_value" not in repr(config) and "hf_secret_value" not in str(config.vllm_kwargs)
    with pytest.raises(ConfigError) as err:
        IFDConfig(backend="vllm", vllm_kwargs={"token": 12345})
    assert "12345" not in str(err.value)


def test_cli_and_yaml_take_backend_and_vllm_kwargs(tmp_path):
    config = cli.parse_command(
        ["score", "d.jsonl", "--method", "ifd", "--backend", "vllm", "--max-length", "512",
         "--vllm-kwargs", '{"tensor_parallel_size": 4, "gpu_memory_utilization": 0.85}']).scorer
    assert isinstance(config, IFDConfig) and config.backend == "vllm"
    assert config.vllm_kwargs == {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.85}
    path = tmp_path / "run.yaml"
    path.write_text("input: d.jsonl\nmodels:\n"
                    "  - {method: alpagasus, backend: vllm, max_length: 2000, vllm_kwargs: {max_model_len: 2048}}\n"
                    "  - {method: deita}\n")
    run = options.load_run_config(path)
    assert run.models[0].backend == "vllm" and run.models[0].vllm_kwargs == {"max_model_len": 2048}
    assert run.models[1].backend == "transformers"
    path.write_text("input: d.jsonl\nmodels: [{method: deita, backend: vllm, vllm_kwargs: {tp: 2}}]\n")
    with pytest.raises(ConfigError, match=r"run.yaml: vllm_kwargs has the unknown name 'tp'"):
        options.load_run_config(path)


@pytest.mark.parametrize("cls", SCORERS)
def test_missing_vllm_is_a_clear_error_at_construction(cls, no_vllm):
    with pytest.raises(ModelLoadError) as err:
        cls(backend="vllm")
    assert 'pip install "hf-selectit[vllm]"' in str(err.value)


def test_fingerprint_keeps_backend_and_quantisation_not_placement(tmp_path, monkeypatch):
    from hf_selectit.backends import vllm as backend

    monkeypatch.setattr(backend, "require_vllm", lambda: None)  # only the config is hashed here
    base = dict(model=str(tmp_path), max_length=512)
    plain = Hasher.hash(IFDScorer(**base))
    on_vllm = IFDScorer(**base, backend="vllm", vllm_kwargs={"tensor_parallel_size": 1})
    assert Hasher.hash(on_vllm) != plain  # another engine, other rounding: scored anew
    placed = IFDScorer(**base, backend="vllm", vllm_kwargs={"tensor_parallel_size": 8, "max_model_len": 4096,
                                                           "gpu_memory_utilization": 0.5, "token": "hf_x"})
    assert Hasher.hash(placed) == Hasher.hash(on_vllm)  # where and how fast: same scores
    quantised = IFDScorer(**base, backend="vllm", vllm_kwargs={"quantization": "fp8"})
    assert Hasher.hash(quantised) != Hasher.hash(on_vllm)
    payload = pickle.dumps(placed)
    assert len(payload) < 2000 and b"hf_x" in payload  # config only; a worker needs the token
    clone = pickle.loads(payload)
    assert clone.config == placed.config and type(clone.engine).__name__ == "VllmEngine"
    assert json.dumps(placed.config.vllm_kwargs, default=str).count("hf_x") == 0


def test_a_vllm_too_old_for_the_read_outs_names_the_minimum_version(tmp_path, monkeypatch):
    # An installed vLLM from before `SamplingParams.logprob_token_ids` (what the rating methods
    # read): a real package on sys.path with that release's SamplingParams fields, no engine.
    package = tmp_path / "old" / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        '__version__ = "0.6.3"\n'
        "class SamplingParams:\n"
        "    def __init__(self, max_tokens=16, logprobs=None, prompt_logprobs=None):\n"
        "        self.max_tokens, self.logprobs, self.prompt_logprobs = max_tokens, logprobs, prompt_logprobs\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "old"))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    scorer = SelectITScorer(model=str(tmp_path / "model"), max_length=512, backend="vllm")
    with pytest.raises(ModelLoadError) as err:
        scorer({"instruction": ["Say hi."], "input": [""], "output": ["Hi."]})
    message = str(err.value)
    assert "vLLM 0.6.3 has no SamplingParams.logprob_token_ids" in message
    assert "vllm>=0.32.0" in message and 'pip install "hf-selectit[vllm]"' in message
