"""The scoring engine: the only place that runs a model. Methods (hf_selectit/methods/) say what to read.

A method builds `Item`s (token ids of one text of one row, the group it shares a prefix with,
where its read-out span starts) and calls `Engine.run`; it gets one numpy array per item back,
and the rows that could not run.
"""

from __future__ import annotations

import collections
import functools
import inspect
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Hashable, Optional, Sequence

from . import progress
from ._version import __version__
from .model_kwargs import has_device_map
from .models import (input_device, is_oom, load_model_and_tokenizer, model_label, parameter_counts,
                     resolve_device, sharded_with_rank_error)

logger = logging.getLogger(__name__)

# Token budgets used when `max_batch_tokens` is None. CPU: measured with scripts/benchmark.py on
# SmolLM2-135M (larger micro-batches pad more and spill the caches; see docs/scaling.md).
CPU_BATCH_TOKENS = 512
CUDA_BATCH_TOKENS = 32768
# On a CPU padding is pure loss (a micro-batch computes no faster per token than one text): with
# the automatic budget, a micro-batch closes before its padding would pass this share of its tokens
# (docs/scaling.md: IFD on SmolLM2). An explicit `max_batch_tokens` is used as given.
CPU_MAX_PADDING = 0.02
# Positions per chunk when token losses are read: the output head and an fp32 log-softmax run on
# at most this many positions at a time (256 x 128k vocabulary x 4 bytes = 128 MiB).
LOSS_CHUNK_POSITIONS = 256
_PREFIX_CACHE_SIZE = 32  # shared prefixes kept per device (a few MB each even for 8B models)
_PROGRESS_LOG_SECONDS = 10.0

# Set in a process forked after this module was imported (`num_proc` workers of `datasets`).
_FORKED = {"child": False, "threads_set": False}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _FORKED.update(child=True, threads_set=False))


# --- what methods hand to the engine and get back ---------------------------------------------


@dataclass
class Item:
    """One text to run: its token ids (special tokens included), its row, and what to read from it."""

    row: int
    slot: int  # which of the row's texts this is (rating prompt j, conditioned/direct, ...)
    group: Hashable  # texts of one group share their leading template tokens (prefix KV reuse)
    ids: list
    truncated: bool = False  # cut to fit `max_length`
    loss_from: Optional[int] = None  # for `TokenLosses`: the first token whose loss is read (>= 1)


@dataclass(frozen=True)
class LastTokenProbs:
    """Read-out: fp32 full-vocabulary softmax at the last position, at `token_ids` (float64 array).

    With `log=True`, the fp32 log-softmax instead: expected ratings renormalised over a few tokens
    (AlpaGasus, DEITA) stay exact when a model puts almost no probability on them.
    """

    token_ids: tuple
    log: bool = False


@dataclass(frozen=True)
class TokenLosses:
    """Read-out: -log p(token t | tokens < t) for t = item.loss_from .. end (float64 array)."""


@dataclass
class MicroBatch:
    """One forward as the model sees it: left-padded suffixes on top of an optional shared prefix."""

    items: list
    input_ids: Any
    attention_mask: Any
    position_ids: Any
    prefix_kv: Optional[list] = None
    readout: Any = None


@dataclass
class DeviceState:
    """Everything loaded for one device in one process (typed, never pickled)."""

    model: Any
    tokenizer: Any
    device: str  # where inputs go: the device of the model's input embeddings
    max_length: int  # longest text in tokens (option or the model's context)
    method_data: Any = None  # what the method prepared once per device (e.g. its rating tokens)
    prefix_kv: dict = field(default_factory=dict)  # prefix ids -> per-layer (keys, values) or None
    template_prefix: dict = field(default_factory=dict)  # group -> leading tokens its texts share


@dataclass
class EngineStats:
    """Counters of this process's work (public effects for tests, benchmarks and logs)."""

    forward_calls: int = 0
    prefix_forwards: int = 0
    micro_batches: int = 0
    oom_splits: int = 0
    tokens: int = 0  # real tokens fed to the model (shared prefixes once)
    padded_tokens: int = 0  # rows x padded length of the micro-batches (what the model computes)
    head_positions: int = 0  # positions the output head (vocabulary projection) ran on


class Engine:
    """Runs a method's texts through its model. One per scorer object; models are shared per process.

    The engine calls `method.prepare(model, tokenizer, name)` once per device and
    `method.probe_token_ids(group, state)` once per group (two texts whose variable parts share
    no character, to find the template's own prefix).
    """

    def __init__(self, config: Any, method: Any) -> None:
        self.config = config
        self.method = method
        self.stats = EngineStats()
        # A (model, tokenizer) pair the user passed in memory (set by the scorer), else None.
        self.preloaded: Optional[tuple] = None
        self._loaded: dict[str, DeviceState] = {}
        self._lock = threading.Lock()

    def state(self, rank: Optional[int] = None) -> DeviceState:
        """The loaded model, tokenizer and caches for `rank`'s device (loads on first use)."""
        if _FORKED["child"] and not _FORKED["threads_set"]:
            _limit_threads_after_fork()
        sharded = has_device_map(getattr(self.config, "model_kwargs", None))
        # rank 0 alone is a launcher's single process per machine (the runner passes its local rank).
        if sharded and ((rank or 0) > 0 or _FORKED["child"]):
            # One model spread over this process's devices vs one process per device.
            raise sharded_with_rank_error(self.config.model)
        # A model in memory stays where the user put it; a device_map is placed by transformers/accelerate.
        device = ("in-memory" if self.preloaded is not None else "device_map" if sharded
                  else resolve_device(self.config.device, rank=rank))
        with self._lock:
            if device not in self._loaded:
                self._loaded[device] = self._load(device)
            return self._loaded[device]

    def _load(self, device: str) -> DeviceState:
        model, tokenizer = self.preloaded or load_model_and_tokenizer(self.config, device)
        # Inputs go where the input embeddings are: the model's device, or with a device_map
        # (or a model in memory) wherever its first layer was placed. The model is never moved.
        device = input_device(model)
        max_length = self.config.max_length or model_context(model, tokenizer)
        return DeviceState(model=model, tokenizer=tokenizer, device=device, max_length=int(max_length),
                           method_data=self.method.prepare(model, tokenizer, model_label(self.config.model)))

    def model_facts(self, state: DeviceState) -> dict:
        """Provenance of the loaded model: parameter counts, dtype, and this backend with its version."""
        import transformers

        total, non_embedding = parameter_counts(state.model)
        return {
            "parameter_count": int(total),
            "non_embedding_parameter_count": int(non_embedding),
            "dtype": str(next(state.model.parameters()).dtype).replace("torch.", ""),
            "backend": {"name": "transformers", "version": transformers.__version__},
        }

    def cached_prefixes(self, rank: Optional[int] = None) -> list:
        """Token ids of the shared prefixes whose KV cache this process holds for `rank`'s device."""
        return [ids for ids, kv in self.state(rank).prefix_kv.items() if kv is not None]

    def encode(self, texts: Sequence[str], state: DeviceState, *, add_special_tokens: bool = True) -> list:
        """Token ids of each text (one tokenizer call for all)."""
        if not texts:
            return []
        encoded = state.tokenizer(list(texts), add_special_tokens=add_special_tokens)
        return [list(ids) for ids in encoded["input_ids"]]

    def truncate_protected(self, text: str, spans: Any, max_length: int, state: DeviceState,
                           *, add_special_tokens: bool = True) -> Optional[list]:
        """Token ids of `text` cut to `max_length` (special tokens included) as docs/method.md 1 "Long
        rows" says, or None when its fixed parts alone are longer.

        `spans` are the cuttable character spans (`join_segments`), `[(kind, start, end), ...]` in text
        order, kind "x" (instruction and input: lose their tail) or "y" (the response: loses its
        middle). Everything outside them is kept whole.
        """
        tokens = _token_kinds(text, spans, state.tokenizer, add_special_tokens)
        size = collections.Counter(kind for kind, _ in tokens)
        avail, n_y = max_length - size["fixed"], size["y"]
        if avail < 0:
            return None
        x_keep = min(size["x"], avail - min(n_y, avail // 2))
        y_keep = min(n_y, avail - x_keep)
        head_n = (y_keep + 1) // 2
        # Which tokens of its kind each kind keeps, by their index among them.
        kept = {"fixed": range(size["fixed"]), "x": range(x_keep),
                "y": {*range(head_n), *range(n_y - (y_keep - head_n), n_y)}}
        index = collections.defaultdict(itertools.count)
        return [token for kind, token in tokens if next(index[kind]) in kept[kind]]

    def run(self, items: list, state: DeviceState, readout: Any, *, n_rows: int) -> tuple[list, set]:
        """(one numpy array per item, None where its row failed; the rows that ran out of memory even
        alone): every item forwarded in length-sorted micro-batches under the token budget.

        With `reuse_prompt_prefix`, the leading tokens of a group run once per process and every
        micro-batch of the group feeds only its suffixes. `n_rows` counts the rows for progress.
        """
        budget = self.config.max_batch_tokens or default_batch_tokens(state.device)
        # The automatic plan caps padding on CPU; a budget the user set is their plan, kept as given.
        auto_cpu = self.config.max_batch_tokens is None and str(state.device).startswith("cpu")
        results: list = [None] * len(items)
        tracker = _Progress(items, n_rows)
        failed: set = set()
        for prefix_ids, indices in self._prefix_groups(items, state):
            p = len(prefix_ids)
            for batch in micro_batches([len(items[i].ids) - p for i in indices], budget, extra=p,
                                       max_padding=CPU_MAX_PADDING if auto_cpu else None):
                chosen = [indices[i] for i in batch]
                self._run_with_retry(items, chosen, state, readout, results, failed, prefix_ids)
                tracker.done(chosen)
        tracker.finish()
        return [None if item.row in failed else value for item, value in zip(items, results)], failed

    def _prefix_groups(self, items: list, state: DeviceState) -> list:
        """[(shared prefix ids, item indices), ...]: groups whose prefix KV is reused, then ((), the rest)."""
        if not self.config.reuse_prompt_prefix:
            return [((), list(range(len(items))))]
        by_group: dict = {}
        for index, item in enumerate(items):
            by_group.setdefault(item.group, []).append(index)
        prefixed, plain = [], []
        # Also for a group with one text: its prefix is computed once per process and reused,
        # and a row then scores the same whether or not it was alone in its call.
        for group, indices in by_group.items():
            # Every item keeps at least one token of its own (the last shared token at least).
            n = len(os.path.commonprefix([items[i].ids for i in indices])) - 1  # element-wise on lists
            # Capped at the template's own prefix, so that batches whose texts happen to
            # start alike (e.g. "Task 1...") still split at the same token: the prefix's KV
            # cache is then computed once, and every batch and process rounds alike.
            if group not in state.template_prefix:
                probes = self.method.probe_token_ids(group, state)
                state.template_prefix[group] = len(os.path.commonprefix(probes))
            n = min(n, state.template_prefix[group])
            # The logits before the first read token must come from the suffix.
            n = min([n] + [items[i].loss_from - 1 for i in indices if items[i].loss_from is not None])
            prefix_ids = tuple(items[indices[0]].ids[:n])
            if n < 2 or self._prefix_kv(prefix_ids, state) is None:
                plain.extend(indices)
            else:
                prefixed.append((prefix_ids, indices))
        return prefixed + [((), plain)]

    def _prefix_kv(self, prefix_ids: tuple, state: DeviceState) -> Optional[list]:
        """Per-layer (keys, values) [1, heads, len, dim] of `prefix_ids`, cached per process and device.

        A cached longer prefix that starts with `prefix_ids` is sliced (keys of a causal model at
        a position do not depend on later tokens). None when the model's cache is not a plain
        per-layer key/value cache (sliding or linear-attention layers): plain path then.
        """
        import torch

        cache = state.prefix_kv
        p = len(prefix_ids)
        for key, kv in cache.items():
            if key[:p] == prefix_ids:
                return None if kv is None else [(k[:, :, :p], v[:, :, :p]) for k, v in kv]
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        ids, mask, positions = pad_left([list(prefix_ids)], state.tokenizer.pad_token_id, state.device)
        try:
            self.stats.forward_calls += 1
            self.stats.prefix_forwards += 1
            with torch.inference_mode():
                out = state.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                  logits_to_keep=1)
            self.stats.head_positions += 1
        except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one
            if not is_oom(err):
                raise
            logger.info("Out of memory on a shared prefix (%d tokens); running full texts.", p)
            return None
        past = getattr(out, cache_keyword(type(state.model)))
        kv = None
        layers = past.layers if isinstance(past, DynamicCache) else []
        if layers and all(type(layer) is DynamicLayer for layer in layers):
            kv = [(layer.keys, layer.values) for layer in layers]
        else:
            warn_once("no-prefix-cache", f"The model's KV cache ({type(past).__name__}) has layers other "
                      "than plain full-attention ones; shared prompt prefixes are not reused.")
        if len(cache) >= _PREFIX_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[prefix_ids] = kv
        return kv

    def _run_with_retry(self, items: list, indices: list, state: DeviceState, readout: Any, results: list,
                        failed: set, prefix_ids: tuple = ()) -> None:
        """Forward one micro-batch; on out-of-memory halve it and retry, down to single texts."""
        import torch

        p = len(prefix_ids)
        batch_items = [items[i] for i in indices]
        padded = pad_left([item.ids[p:] for item in batch_items], state.tokenizer.pad_token_id, state.device,
                          prefix=p)
        batch = MicroBatch(batch_items, *padded, self._prefix_kv(prefix_ids, state) if p else None, readout)
        del padded
        try:
            self.stats.forward_calls += 1
            self.stats.micro_batches += 1
            self.stats.tokens += sum(len(item.ids) - p for item in batch_items)
            self.stats.padded_tokens += int(batch.input_ids.numel())
            values = self.forward(batch, state)
        except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one
            if not is_oom(err):
                raise
            del batch
            if str(state.device).startswith("cuda"):
                torch.cuda.empty_cache()
            if len(indices) == 1:
                warn_once("oom-row", "A row could not be scored even alone (out of memory); its status "
                          "says 'error: out of memory'. Lower max_length or use a larger device.")
                failed.add(batch_items[0].row)
                return
            half = len(indices) // 2
            self.stats.oom_splits += 1
            logger.info("Out of memory on a micro-batch of %d texts; retrying as %d + %d.",
                        len(indices), half, len(indices) - half)
            for part in (indices[:half], indices[half:]):
                self._run_with_retry(items, part, state, readout, results, failed, prefix_ids)
            return
        for index, value in zip(indices, values):
            results[index] = value

    def forward(self, batch: MicroBatch, state: DeviceState) -> list:
        """The one call into the model: one numpy array per text of `batch` (see the read-outs)."""
        import torch

        past = None
        if batch.prefix_kv is not None:
            from transformers import DynamicCache

            n = batch.input_ids.shape[0]
            # A fresh cache per micro-batch (the forward appends to it); `expand` is a view, the
            # layer's first update copies it once.
            past = DynamicCache([tuple(t.expand(n, -1, -1, -1) for t in kv) for kv in batch.prefix_kv])
        inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      position_ids=batch.position_ids, use_cache=past is not None)
        with torch.inference_mode():
            if isinstance(batch.readout, LastTokenProbs):
                out = state.model(**inputs, logits_to_keep=1, **{cache_keyword(type(state.model)): past})
                logits = out.logits[:, -1, :].float()
                self.stats.head_positions += int(logits.shape[0])
                probs = (torch.log_softmax if batch.readout.log else torch.softmax)(logits, dim=-1)
                ids = torch.tensor(batch.readout.token_ids, device=probs.device)
                return list(probs.index_select(-1, ids).to(torch.float64).cpu().numpy())
            if isinstance(batch.readout, TokenLosses):
                return self._token_losses(batch, inputs, past, state)
        raise TypeError(f"Unknown read-out {batch.readout!r}: expected LastTokenProbs or TokenLosses.")

    def _token_losses(self, batch: MicroBatch, inputs: dict, past: Any, state: DeviceState) -> list:
        import numpy as np
        import torch

        model = state.model
        # The decoder's last hidden states, then the output head on the read positions only, in
        # chunks: logits at every position of a long row are never materialised at once.
        hidden = model.base_model(**inputs, **{cache_keyword(type(model.base_model)): past}).last_hidden_state
        width = batch.input_ids.shape[1]
        starts = [max(int(item.loss_from), 1) for item in batch.items]
        targets = [item.ids[start:] for item, start in zip(batch.items, starts)]
        if not any(targets):
            return [np.zeros(0, dtype=np.float64) for _ in batch.items]
        # Token t sits in column width - len(ids) + t (a shared prefix's columns are in the cache,
        # left of column 0); its logits are one left, so a text's read columns end at width - 1.
        picked = torch.cat([hidden[i, width - len(item.ids) + start - 1:width - 1]
                            for i, (item, start) in enumerate(zip(batch.items, starts))])
        target = torch.tensor([token for ids in targets for token in ids], device=hidden.device)
        head = model.get_output_embeddings()
        self.stats.head_positions += int(picked.shape[0])
        softcap = getattr(model.config, "final_logit_softcapping", None)
        losses = []
        for start in range(0, picked.shape[0], LOSS_CHUNK_POSITIONS):
            logits = head(picked[start:start + LOSS_CHUNK_POSITIONS]).float()
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            logp = torch.log_softmax(logits, dim=-1)
            losses.append(-logp.gather(1, target[start:start + LOSS_CHUNK_POSITIONS, None])[:, 0])
        flat = torch.cat(losses).to(torch.float64).cpu().numpy()
        return np.split(flat, np.cumsum([len(ids) for ids in targets])[:-1])


@functools.lru_cache(maxsize=None)
def cache_keyword(cls: type) -> str:
    """The name under which the forward of model class `cls` takes, and its output returns, the KV cache:
    `cache` since transformers 5.24 (the old name warns there), `past_key_values` before (the floor
    allows those) and in remote-code models that kept it, read from the forward's signature."""
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


class _Progress:
    """Counts rows whose texts are all done; reports them to `progress` and logs slow batches."""

    def __init__(self, items: list, n_rows: int) -> None:
        self.rows = [item.row for item in items]
        self.left = collections.Counter(self.rows)
        self.n_rows, self.rows_done, self.texts_done = n_rows, 0, 0
        self.start = self.last_log = time.monotonic()

    def done(self, indices: list) -> None:
        self.left.subtract(self.rows[i] for i in indices)
        finished = sum(self.left[row] == 0 for row in {self.rows[i] for i in indices})
        self.texts_done += len(indices)
        self.rows_done += finished
        progress.advance(finished)
        now = time.monotonic()
        if now - self.last_log > _PROGRESS_LOG_SECONDS:
            self.last_log = now
            rate = self.texts_done / max(now - self.start, 1e-9)
            logger.info("Scored %d/%d texts (%d/%d rows) of this batch, %.1f texts/s.", self.texts_done,
                        len(self.rows), self.rows_done, self.n_rows, rate)

    def finish(self) -> None:
        progress.advance(self.n_rows - self.rows_done)


# --- helpers --------------------------------------------------------------------------------


def default_batch_tokens(device: Any) -> int:
    """The token budget of a micro-batch when `max_batch_tokens` is None, by device (name)."""
    return CUDA_BATCH_TOKENS if str(device).startswith("cuda") else CPU_BATCH_TOKENS


def micro_batches(lengths: list, budget: int, *, extra: int = 0, max_padding: Optional[float] = None) -> list:
    """Indices grouped into micro-batches, longest first, of rows x (padded length + extra) <= budget.

    A single text longer than the budget still forms its own micro-batch. With `max_padding`, a
    micro-batch also closes before its pad tokens would exceed that share of rows x padded length.

    Example:
        >>> micro_batches([10, 9, 3], 100)
        [[0, 1, 2]]
        >>> micro_batches([10, 9, 3], 100, max_padding=0.1)
        [[0, 1], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches, current, padding = [], [], 0
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        rows = len(current) + 1
        over_budget = rows * (longest + extra) > budget
        too_padded = max_padding is not None and padding + longest - lengths[i] > max_padding * rows * longest
        if current and (over_budget or too_padded):
            batches.append(current)
            current, padding = [], 0
            longest = lengths[i]
        padding += longest - lengths[i]
        current.append(i)
    return batches + [current] if current else batches


def pad_left(sequences: list, pad_id: int, device: Any, *, prefix: int = 0):
    """(input_ids, attention_mask, position_ids) of left-padded sequences behind `prefix` cached tokens.

    The mask is [prefix | left-padded suffix]. Positions count real tokens only and continue from the
    prefix, so a text sees the positions it has alone: transformers' Llama does not derive them from
    the attention mask in a plain forward, and without them results would depend on padding.
    """
    import torch

    longest = max(map(len, sequences))
    rows = [(longest - len(seq), list(seq)) for seq in sequences]
    input_ids = torch.tensor([[int(pad_id)] * pad + seq for pad, seq in rows], dtype=torch.long)
    mask = torch.tensor([[0] * pad + [1] * len(seq) for pad, seq in rows], dtype=torch.long)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0) + prefix
    attention_mask = torch.cat([torch.ones((len(sequences), prefix), dtype=torch.long), mask], dim=1)
    return input_ids.to(device), attention_mask.to(device), position_ids.to(device)


def join_segments(segments: Sequence) -> tuple[str, list]:
    """`[(kind, text), ...]` -> (full text, cuttable spans for `Engine.truncate_protected`).

    Example:
        >>> join_segments([("fixed", "Q: "), ("x", "hi"), ("fixed", "\\nA: "), ("y", "yo")])
        ('Q: hi\\nA: yo', [('x', 3, 5), ('y', 9, 11)])
    """
    text, spans = "", []
    for kind, piece in segments:
        if kind not in ("fixed", "x", "y"):
            raise ValueError(f"segment kind {kind!r} is invalid: expected 'fixed', 'x' or 'y'.")
        if kind != "fixed" and piece:
            spans.append((kind, len(text), len(text) + len(piece)))
        text += piece
    return text, spans


def _token_kinds(text: str, spans: list, tokenizer: Any, add_special: bool) -> list:
    """`text` as [(kind "fixed" | "x" | "y", token id), ...] by character spans: tokenized once and each
    token placed by its offsets with a fast tokenizer, else (no offsets) each region tokenized on its own."""
    spans = [(kind, a, b) for kind, a, b in spans if a < b]
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        kinds, kind = [], "fixed"
        for start, end in enc["offset_mapping"]:
            if start != end:  # special tokens carry no text: they stay with their neighbour
                # outside every span, or straddling a boundary: kept whole
                kind = next((k for k, a, b in spans if a <= start and end <= b), "fixed")
            kinds.append(kind)
        return list(zip(kinds, enc["input_ids"]))
    bounds, pos = [], 0
    for kind, a, b in sorted(spans, key=lambda s: s[1]):
        bounds += [(pos, a, "fixed"), (a, b, kind)]
        pos = b
    bounds.append((pos, len(text), "fixed"))
    pieces = [(kind, text[start:end]) for start, end, kind in bounds if text[start:end]]
    # Special tokens with the first piece only.
    return [(kind, token) for i, (kind, piece) in enumerate(pieces)
            for token in tokenizer(piece, add_special_tokens=add_special and i == 0)["input_ids"]]


def _limit_threads_after_fork() -> None:
    """One torch thread in a forked worker: a process forked after torch ran a parallel CPU op
    inherits a broken OpenMP pool and hangs on its next parallel op (seen with `map(num_proc=2)`
    after scoring in the parent). `num_proc` workers are the parallelism anyway."""
    import torch

    torch.set_num_threads(1)
    _FORKED["threads_set"] = True
    logger.info("Scoring in a forked worker (num_proc > 1): one torch thread per worker.")


def model_context(model: Any, tokenizer: Any) -> int:
    """The model's context length (config, else the tokenizer's limit, else 2048 with a warning)."""
    for name in ("max_position_embeddings", "n_positions"):
        context = getattr(model.config, name, None)
        if isinstance(context, int) and context > 0:
            return context
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    warn_once("no-context", "The model states no context length; using max_length=2048.")
    return 2048


_warned: set = set()


def warn_once(key: Hashable, message: str, *, log: logging.Logger = logger) -> None:
    """Log `message` as a warning to `log` once per process for `key`."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


# --- fingerprint contract -------------------------------------------------------------------


def config_state(config: Any) -> dict:
    """A config's fields plus the package version: what a scorer pickles to."""
    return {**{f.name: getattr(config, f.name) for f in fields(config)}, "version": __version__}


def local_model_stamp(model: Optional[str]) -> tuple:
    """Sizes and mtimes of a local model folder's files (cheap stats), so edits in place re-score."""
    if model is None or not os.path.isdir(model):
        return ()
    stats = {name: os.stat(os.path.join(model, name)) for name in sorted(os.listdir(model))
             if name.endswith((".json", ".safetensors", ".bin", ".model", ".txt", ".gguf"))}
    return tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats.items())


def _rebuild_from_hash_state(*state: Any) -> None:  # pragma: no cover - hashing only, never loaded
    raise RuntimeError("This pickle only fingerprints a scorer; it cannot be loaded.")


@functools.lru_cache(maxsize=None)  # once per class
def register_hashing(cls: type) -> None:
    """Teach `datasets`' fingerprint pickler to hash a scorer class by `obj._hash_state()` only.

    A reducer registered with the Hasher's own dill Pickler affects fingerprints only, so the ordinary
    pickle (to `num_proc` workers) still carries runtime options such as `device`. Without `datasets`
    this is a no-op and the ordinary pickle (`__getstate__`: config only) is hashed instead.
    """
    try:
        # Private module of `datasets`: the only way to register a reducer with its Hasher.
        from datasets.utils._dill import pklregister
    except ImportError:  # datasets absent or its private layout changed: hash the full config
        return

    def _save(pickler: Any, obj: Any) -> None:
        pickler.save_reduce(_rebuild_from_hash_state, obj._hash_state(), obj=obj)

    pklregister(cls)(_save)
