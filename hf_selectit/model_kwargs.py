"""`model_kwargs` and `vllm_kwargs`: keyword arguments passed through to `from_pretrained` or to
`vllm.LLM`, checked once. A bottom-layer module (no torch, no transformers at import).

Each accepted name has a kind: ``numeric`` names change the scores and are part of the `datasets`
fingerprint and the provenance; ``placement`` (where the weights live, how work is batched),
``source`` (where files are read from) and ``secret`` (the token, a :class:`HubToken`) are part of
neither (docs/scaling.md, "A model larger than one GPU").
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any, Mapping, Optional

from .errors import ConfigError

NUMERIC = "numeric"
PLACEMENT = "placement"
SOURCE = "source"
SECRET = "secret"

# name -> (kind, what it is, value check). The one list of accepted names.
ACCEPTED: dict[str, tuple[str, str, str]] = {
    "attn_implementation": (NUMERIC, "attention kernel: 'eager', 'sdpa', 'flash_attention_2', "
                                     "'flash_attention_3', 'flex_attention' or a Hub kernel id", "attn"),
    "quantization_config": (NUMERIC, "a transformers quantization config (BitsAndBytesConfig, ...) "
                                     "or its dict, e.g. {'load_in_4bit': true}", "quantization"),
    "subfolder": (NUMERIC, "folder of the weights inside the repository", "str"),
    "variant": (NUMERIC, "weights variant, e.g. 'fp16' for model.fp16.safetensors", "str"),
    "device_map": (PLACEMENT, "'auto', 'balanced', 'balanced_low_0', 'sequential', one device "
                              "('cuda:1', 'cpu') or an explicit {module: device} map", "device_map"),
    "max_memory": (PLACEMENT, "per-device memory cap with device_map, e.g. {0: '70GiB', 'cpu': '200GiB'}",
                   "max_memory"),
    "offload_folder": (PLACEMENT, "folder for weights offloaded to disk by device_map", "str"),
    "offload_buffers": (PLACEMENT, "also offload buffers with the weights", "bool"),
    "low_cpu_mem_usage": (PLACEMENT, "load without a full extra copy in CPU memory (always on in "
                                     "transformers >= 5)", "bool"),
    "cache_dir": (SOURCE, "Hub cache folder", "str"),
    "local_files_only": (SOURCE, "never reach the Hub", "bool"),
    "token": (SECRET, "Hub token (str) or True for the stored login; never recorded", "token"),
}

# Names that are options of their own: one place each.
REDIRECTED = {
    "dtype": "dtype", "torch_dtype": "dtype", "revision": "revision",
    "trust_remote_code": "trust_remote_code", "device": "device",
}

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE = re.compile(r"^(cpu|disk|meta|cuda|mps|xpu|npu|hpu|mlu|musa|sdaa)(:\d+)?$")
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)

# quant_method -> packages it needs, as (module to find, what to `pip install`). transformers
# checks the same at load time; checking here refuses a config before hours of other work.
# A method not listed is left to transformers (its error is reported with the model's name).
QUANTIZATION_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "bitsandbytes": (("bitsandbytes", "bitsandbytes"), ("accelerate", "accelerate")),
    "gptq": (("optimum", "optimum"),),
    "awq": (("gptqmodel", "gptqmodel"), ("accelerate", "accelerate")),
    "aqlm": (("aqlm", "aqlm[gpu,cpu]"), ("accelerate", "accelerate")),
    "quanto": (("optimum.quanto", "optimum-quanto"), ("accelerate", "accelerate")),
    "hqq": (("hqq", "hqq"),),
    "torchao": (("torchao", "torchao"),),
    "compressed-tensors": (("compressed_tensors", "compressed-tensors"),),
    "eetq": (("kernels", "kernels"), ("accelerate", "accelerate")),
    "fbgemm_fp8": (("fbgemm_gpu", "fbgemm-gpu"), ("accelerate", "accelerate")),
    "higgs": (("flute", "flute-kernel"), ("accelerate", "accelerate")),
    "vptq": (("vptq", "vptq"), ("accelerate", "accelerate")),
    "spqr": (("spqr_quant", "spqr_quant[gpu]"), ("accelerate", "accelerate")),
    "auto-round": (("auto_round", "auto-round"),),
    "quark": (("quark", "amd-quark"),),
    "fp_quant": (("fp_quant", "fp_quant"),),
    "sinq": (("sinq", "sinq"),),
    "fp8": (("accelerate", "accelerate"),),
    "bitnet": (("accelerate", "accelerate"),),
    "nvfp4": (("kernels", "kernels"),),
}
# Attention implementations that need a package of their own.
ATTENTION_PACKAGES = {"flash_attention_2": ("flash_attn", "flash-attn")}


class HubToken:
    """A Hub token that prints as '<hidden>' everywhere (str, repr, JSON with default=str).

    Pickling keeps the value: a `num_proc` worker needs it to download a gated model.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        """The token itself, for `from_pretrained` only."""
        return self._value

    def __repr__(self) -> str:
        return "'<hidden>'"

    def __str__(self) -> str:
        return "<hidden>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HubToken) and other._value == self._value

    def __hash__(self) -> int:
        return hash((HubToken, self._value))

    def __reduce__(self):
        return (HubToken, (self._value,))


# `vllm.LLM` keyword arguments accepted in `vllm_kwargs`: name -> (kind, what it is, value check).
# Model, tokenizer, revision, dtype and trust_remote_code are the scorer's own options.
VLLM_ACCEPTED: dict[str, tuple[str, str, str]] = {
    "tensor_parallel_size": (PLACEMENT, "GPUs one model is split over (a model larger than one GPU)", "int"),
    "pipeline_parallel_size": (PLACEMENT, "pipeline stages (GPUs or nodes) one model is split over", "int"),
    "gpu_memory_utilization": (PLACEMENT, "share of each GPU's memory vLLM may use, in (0, 1]", "share"),
    "max_model_len": (PLACEMENT, "longest sequence vLLM accepts (must exceed max_length)", "int"),
    "max_num_seqs": (PLACEMENT, "sequences per engine step", "int"),
    "max_num_batched_tokens": (PLACEMENT, "tokens per engine step", "int"),
    "enable_prefix_caching": (PLACEMENT, "reuse the KV cache of shared prompt heads (default: reuse_prompt_prefix)", "bool"),
    "enable_chunked_prefill": (PLACEMENT, "split long prompts over engine steps", "bool"),
    "enforce_eager": (PLACEMENT, "no CUDA graphs (faster start-up)", "bool"),
    "block_size": (PLACEMENT, "tokens per KV-cache block", "int"),
    "cpu_offload_gb": (PLACEMENT, "GiB of weights offloaded to CPU memory", "number"),
    "distributed_executor_backend": (PLACEMENT, "'mp' or 'ray' for tensor/pipeline parallelism", "str"),
    "seed": (PLACEMENT, "engine seed (scoring does not sample)", "int"),
    "quantization": (NUMERIC, "vLLM quantisation method: 'awq', 'gptq', 'fp8', 'bitsandbytes', ...", "str"),
    "kv_cache_dtype": (NUMERIC, "KV-cache dtype: 'auto', 'fp8', ...", "str"),
    "tokenizer_mode": (NUMERIC, "'auto' or 'slow' (vLLM's own tokenizer is only used for checks)", "str"),
    "download_dir": (SOURCE, "where vLLM downloads weights", "str"),
    "token": (SECRET, "Hub token (str) or True for the stored login; never recorded", "token"),
}


def check_model_kwargs(value: Any) -> Optional[dict]:
    """Validate `model_kwargs` (:data:`ACCEPTED`) and return a checked copy (None stays None).

    Besides names and value types, checks that a quantisation method's package (and `accelerate`
    for a `device_map`) is installed. A string `token` becomes a :class:`HubToken`; string keys of
    `max_memory` that are GPU indices ("0", as JSON and YAML give them) become ints.
    """
    out = _checked("model_kwargs", value, ACCEPTED, REDIRECTED, "`from_pretrained`",
                   {"attn_implementation": "sdpa"})
    for name, tail in (("max_memory", " (or 'balanced') next to it"), ("offload_folder", "")):
        if out and name in out and "device_map" not in out:
            raise ConfigError(f"model_kwargs[{name!r}] only applies with a device_map; add "
                              f"'device_map': 'auto'{tail}.")
    return out


def check_vllm_kwargs(value: Any) -> Optional[dict]:
    """Validate `vllm_kwargs` (:data:`VLLM_ACCEPTED`) and return a checked copy (None stays None)."""
    own = {**REDIRECTED, "model": "model", "tokenizer": "model", "tokenizer_revision": "model"}
    return _checked("vllm_kwargs", value, VLLM_ACCEPTED, own, "`vllm.LLM`", {"tensor_parallel_size": 2})


def _checked(option: str, value: Any, accepted: Mapping, own: Mapping, target: str, example: dict) -> Optional[dict]:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{option}={_safe(value)} is invalid: expected a dict of {target} keyword arguments, e.g. "
            f"{example!r} (JSON on the command line: --{option.replace('_', '-')} '{json.dumps(example)}')."
        )
    out: dict = {}
    for name, item in value.items():
        if name in own:
            raise ConfigError(f"{option}[{name!r}] is not accepted: it is the scorer option "
                              f"{own[name]!r}; pass {own[name]}=... instead.")
        if name not in accepted:
            raise ConfigError(f"{option} has the unknown name {name!r}. Accepted: {sorted(accepted)}.")
        out[name] = _CHECKS[accepted[name][2]](f"{option}[{name!r}]", item)
    return out


def _numeric(kwargs: Optional[Mapping], accepted: Mapping) -> dict:
    return {k: v for k, v in (kwargs or {}).items() if accepted.get(k, (None,))[0] == NUMERIC}


def numeric_vllm_kwargs(kwargs: Optional[Mapping]) -> dict:
    """The part of `vllm_kwargs` that changes the scores (quantisation, KV-cache dtype)."""
    return _numeric(kwargs, VLLM_ACCEPTED)


def numeric_model_kwargs(kwargs: Optional[Mapping]) -> dict:
    """The part of `model_kwargs` that changes the scores (the quantisation as its dict), JSON-
    serialisable: what fingerprints and provenance record.

    Example:
        >>> numeric_model_kwargs({"attn_implementation": "sdpa", "device_map": "auto", "token": "hf_x"})
        {'attn_implementation': 'sdpa'}
    """
    return {name: quantization_dict(item) if name == "quantization_config" else item
            for name, item in _numeric(kwargs, ACCEPTED).items()}


def has_device_map(kwargs: Optional[Mapping]) -> bool:
    """True when `model_kwargs` places the model with a `device_map` (then never `.to(device)`)."""
    return bool(kwargs) and kwargs.get("device_map") is not None


def quantization_dict(config: Any) -> dict:
    """A quantization config as a plain JSON-serialisable dict, with its `quant_method`."""
    if isinstance(config, Mapping):
        data = dict(config)
    else:
        data = config.to_dict()
        if getattr(config, "quant_method", None) is not None:
            data.setdefault("quant_method", config.quant_method)
    if "quant_method" in data:
        data["quant_method"] = str(getattr(data["quant_method"], "value", data["quant_method"]))
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def quantization_method(config: Any) -> Optional[str]:
    """The `quant_method` of a quantization config (dict or object), or None; a dict with
    `load_in_4bit`/`load_in_8bit` true is bitsandbytes, as transformers reads it."""
    if isinstance(config, Mapping):
        if config.get("load_in_4bit") or config.get("load_in_8bit"):
            return "bitsandbytes"
        method = config.get("quant_method")
    else:
        method = getattr(config, "quant_method", None)
    return None if method is None else str(getattr(method, "value", method))


def missing_packages(modules: tuple) -> list:
    """The (module, pip name) pairs whose module cannot be found (without importing it)."""
    return [(module, pip_name) for module, pip_name in modules if not _installed(module)]


def _installed(module: str) -> bool:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return False
    try:  # a submodule (optimum.quanto): its parent package is imported to find it
        return "." not in module or importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --- per-name checks ---------------------------------------------------------------------------

def _safe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _simple_check(test: Any, expected: str) -> Any:
    """A check that returns the value when `test(value)` holds, else says what was expected."""
    def check(name: str, value: Any) -> Any:
        if not test(value):
            raise ConfigError(f"{name}={_safe(value)} is invalid: expected {expected}.")
        return value
    return check


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_check_str = _simple_check(lambda v: isinstance(v, str) and v, "a non-empty string")


def _check_attn(name: str, value: Any) -> str:
    value = _check_str(name, value)
    needed = ATTENTION_PACKAGES.get(value)
    if needed and missing_packages((needed,)):
        raise ConfigError(f"model_kwargs['attn_implementation']={value!r} needs the package {needed[1]!r}, "
                          f"which is not installed. Install it with `pip install {needed[1]}`, or use "
                          "'sdpa' (PyTorch's own fused attention).")
    return value


def _check_device(name: str, value: Any) -> Any:
    if type(value).__module__ == "torch" and type(value).__name__ == "device":
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DEVICE.match(value):
        return value
    raise ConfigError(f"{name}={_safe(value)} is invalid: expected a GPU index (0, 1, ...) or a device "
                      "name ('cuda:0', 'cpu', 'disk', 'mps').")


def _check_device_map(name: str, value: Any) -> Any:
    if isinstance(value, str) and value in DEVICE_MAP_STRATEGIES:
        checked: Any = value
    elif isinstance(value, Mapping):
        if not value:
            raise ConfigError("model_kwargs['device_map']={} is invalid: an explicit map needs at "
                              "least one entry, e.g. {'': 0} (the whole model on GPU 0).")
        checked = {}
        for module, device in value.items():
            if not isinstance(module, str):
                raise ConfigError(f"model_kwargs['device_map'] key {module!r} is invalid: expected a "
                                  "module name ('' for the whole model, 'model.layers.0', 'lm_head').")
            checked[module] = _check_device(f"model_kwargs['device_map'][{module!r}]", device)
    else:
        try:
            checked = _check_device("model_kwargs['device_map']", value)
        except ConfigError:
            raise ConfigError(
                f"model_kwargs['device_map']={_safe(value)} is invalid: expected one of "
                f"{list(DEVICE_MAP_STRATEGIES)}, one device ('cuda:1', 'cpu', 1), or an explicit "
                "{module: device} map such as {'': 'cpu'}."
            ) from None
    if missing_packages((("accelerate", "accelerate"),)):
        raise ConfigError("model_kwargs['device_map'] needs the package 'accelerate', which is not "
                          "installed. Install it with `pip install accelerate`.")
    return checked


def _check_max_memory(name: str, value: Any) -> dict:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"model_kwargs['max_memory']={_safe(value)} is invalid: expected a dict "
                          "of device -> memory, e.g. {0: '70GiB', 1: '70GiB', 'cpu': '200GiB'}.")
    out: dict = {}
    for device, amount in value.items():
        if isinstance(device, str) and device.isdigit():
            device = int(device)  # JSON and YAML keys are strings; accelerate wants GPU indices
        device = _check_device(f"model_kwargs['max_memory'] key {device!r}", device)
        if isinstance(amount, bool) or not (
            (isinstance(amount, int) and amount > 0) or (isinstance(amount, str) and _MEMORY.match(amount))
        ):
            raise ConfigError(f"model_kwargs['max_memory'][{device!r}]={_safe(amount)} is invalid: "
                              "expected bytes (an int) or a size such as '70GiB' or '500MB'.")
        out[device] = amount
    return out


def _check_quantization(name: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        value = dict(value)
        if (value.get("load_in_4bit") or value.get("load_in_8bit")) and "quant_method" not in value:
            value["quant_method"] = "bitsandbytes"
    elif not (hasattr(value, "to_dict") and hasattr(value, "quant_method")):
        raise ConfigError(
            f"model_kwargs['quantization_config']={_safe(value)} is invalid: expected a transformers "
            "quantization config (BitsAndBytesConfig(load_in_4bit=True), GPTQConfig(...), ...) or its "
            "dict, e.g. {'load_in_4bit': true, 'bnb_4bit_compute_dtype': 'bfloat16'}."
        )
    method = quantization_method(value)
    if method is None:
        raise ConfigError(
            "model_kwargs['quantization_config'] names no method: add 'quant_method' (one of "
            f"{sorted(QUANTIZATION_PACKAGES)}, ...) or 'load_in_4bit'/'load_in_8bit': true for bitsandbytes."
        )
    missing = missing_packages(QUANTIZATION_PACKAGES.get(method, ()))
    if missing:
        names = " ".join(pip for _, pip in missing)
        raise ConfigError(
            f"model_kwargs['quantization_config'] uses {method!r} quantisation, which needs "
            f"{', '.join(repr(pip) for _, pip in missing)} (not installed). Install with "
            f"`pip install {names}`, or drop quantization_config to score in dtype bfloat16/float16."
        )
    return value


def _check_token(name: str, value: Any) -> Any:
    if isinstance(value, (HubToken, bool)):
        return value
    if isinstance(value, str) and value:
        return HubToken(value)
    # The value is a secret: never echo it.
    raise ConfigError(f"{name} is invalid: expected a token string or true (the stored "
                      f"`hf auth login`), got a {type(value).__name__}.")


_CHECKS = {
    "attn": _check_attn, "quantization": _check_quantization, "device_map": _check_device_map,
    "max_memory": _check_max_memory, "token": _check_token, "str": _check_str,
    "bool": _simple_check(lambda v: isinstance(v, bool), "true or false"),
    "int": _simple_check(lambda v: _real(v) and isinstance(v, int) and v >= 1, "a whole number >= 1"),
    "number": _simple_check(lambda v: _real(v) and v >= 0, "a number >= 0"),
    "share": _simple_check(lambda v: _real(v) and 0 < v <= 1, "a share of memory in (0, 1], e.g. 0.9"),
}
