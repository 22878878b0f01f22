"""What every scorer shares: the `map` contract, pickling to its config, fingerprint, provenance.

A method subclasses `BaseScorer` and says which texts to build, what to read and how the read
values become columns (`_score`); the `Engine` (hf_selectit/engine.py) runs the model.
"""

from __future__ import annotations

import inspect
import json
import os
import string
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, fields, is_dataclass
from typing import Any, Optional

import numpy as np

from .._version import __version__
from ..config import suggest
from ..engine import Engine, Item, LastTokenProbs, config_state, local_model_stamp, register_hashing
from ..errors import ConfigError
from ..model_kwargs import has_device_map, numeric_model_kwargs, numeric_vllm_kwargs
from ..models import (hub_commit, model_identity, preloaded_commit, preloaded_name, preloaded_pickle_error,
                      prepare_preloaded, sharded_with_rank_error, shown_name)
from ..prompts import CHAT_COLUMNS, Fields, extract_fields, extract_pairs
from ..provenance import register_scorer
from ..rating_tokens import find_rating_tokens, warn_if_low_rating_mass
from .columns import ScoreColumns, for_method, row_status


class BaseScorer:
    """A plain callable for `ds.map(scorer, batched=True[, with_rank=True, num_proc=N])`.

    Subclasses set `method` (registry name and key of their columns in `columns.SCHEMAS`) and
    `config_class`, and implement `_texts` and `_score` (IFD: its own `_items`).
    """

    method: str = ""
    title: str = ""  #: the method as messages name it ("SelectIT", "DEITA", ...)
    config_class: type = object
    keeps_input: bool = False  #: rows read by `prompts.extract_fields` (input apart), else `extract_pairs`
    ratings: tuple = ()  #: a rating method's digits (`rating_tokens.RATINGS`, ...)
    add_special_tokens: bool = True  #: whether the texts get the tokenizer's special tokens (BOS)
    #: The error of a row whose fixed parts alone are longer than max_length ({group}: its text's group).
    too_long: str = ""
    #: Rows whose texts' variable parts share no character: where a group's texts stop sharing tokens.
    probes: tuple = (Fields("A", "", "B"), Fields("z", "", "y"))
    engine_class: type = Engine
    # Options that do not change the scores (only where or how fast they are computed), left out
    # of the `datasets` fingerprint.
    runtime_options: tuple = ("device", "max_batch_tokens", "reuse_prompt_prefix")

    def __init__(self, model: Any = None, *, tokenizer: Any = None, **options: Any) -> None:
        # The options are the fields of `config_class`, listed once there; `__init_subclass__`
        # gives each scorer class a signature generated from them (help(), IDE completion).
        model_name, preloaded = split_model_argument(model, tokenizer)
        valid = [f.name for f in fields(self.config_class) if f.name != "model"]
        for name in options:
            if name not in valid:
                raise ConfigError(f"{type(self).__name__} got an unknown option {name!r}.{suggest(name, valid)} "
                                  f"Options: {sorted(valid)}.")
        if "column_prefix" in options and options["column_prefix"] is None:
            del options["column_prefix"]  # None: the method's own prefix
        self._setup(self.config_class(model=model_name, **options), preloaded)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not is_dataclass(cls.config_class):
            return

        def __init__(self, model: Any = None, *, tokenizer: Any = None, **options: Any) -> None:
            BaseScorer.__init__(self, model, tokenizer=tokenizer, **options)

        hints = typing.get_type_hints(cls.config_class)
        # self, model, tokenizer, then each option (in place of **options).
        params = list(inspect.signature(BaseScorer.__init__, eval_str=True).parameters.values())[:3]
        params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                     default=f.default_factory() if f.default is MISSING else f.default)  # type: ignore[misc]
                   for f in fields(cls.config_class) if f.name != "model"]
        __init__.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        # help(scorer class) lists each option with its help text, written once in the config.
        __init__.__doc__ = (f"Options: the fields of :class:`{cls.config_class.__name__}`; `model` may "
                            "also be a model object in memory, with its `tokenizer`.\n\n") + "\n".join(
            f"{f.name}: {f.metadata['help'].replace('%%', '%')}" for f in fields(cls.config_class)
            if "help" in f.metadata)
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__  # type: ignore[method-assign]

    @classmethod
    def from_config(cls, config: Any) -> "BaseScorer":
        """Build a scorer from its config dataclass (the YAML/CLI path)."""
        if not isinstance(config, cls.config_class):
            raise ConfigError(f"config={config!r} is invalid: expected a {cls.config_class.__name__}.")
        return cls(**asdict(config))

    def _setup(self, config: Any, preloaded: Optional[tuple] = None) -> None:
        self.config = config
        if preloaded is not None:
            check_preloaded_options(config)
        # Process-local, never pickled (__getstate__): a (model, tokenizer) in memory or None; the engine.
        self._preloaded = preloaded
        engine_class = self.engine_class
        if config.backend == "vllm":
            from ..backends.vllm import VllmEngine as engine_class
        self.engine = engine_class(config, self)
        self.engine.preloaded = preloaded
        register_hashing(type(self))
        # ds.map(scorer) cannot attach provenance to its result: remember this scorer as the
        # source of its columns (the process registry in hf_selectit.provenance).
        register_scorer(self)

    # --- pickling and fingerprinting ---

    def __getstate__(self) -> dict:
        # Refuse to be sent to another process (`num_proc` workers) when that cannot work: a model
        # object in memory cannot follow the config; a `device_map` (one model sharded over this
        # process's devices) and one process per device are two placements that exclude each other.
        if self._preloaded is not None:
            raise preloaded_pickle_error(self._preloaded[0])
        if has_device_map(self.config.model_kwargs):
            raise sharded_with_rank_error(self.config.model)
        return config_state(self.config)

    def __setstate__(self, state: dict) -> None:
        self._setup(self.config_class(**{k: v for k, v in state.items() if k != "version"}))

    def _hash_state(self) -> tuple:
        state = config_state(self.config)
        for name in self.runtime_options:
            state.pop(name, None)
        # Only the from_pretrained options that change the numbers; placement and token never.
        numeric = numeric_model_kwargs(self.config.model_kwargs)
        state["model_kwargs"] = json.dumps(numeric, sort_keys=True) if numeric else None
        state["vllm_kwargs"] = json.dumps(numeric_vllm_kwargs(self.config.vllm_kwargs), sort_keys=True)
        stamp = (local_model_stamp(self.config.model) if self._preloaded is None
                 else repr(sorted(model_identity(*self._preloaded).items())))
        return type(self).__module__, type(self).__qualname__, tuple(sorted(state.items())), stamp

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- public surface ---

    @property
    def columns(self) -> ScoreColumns:
        """This scorer's columns: names, the score to rank by, which end is better, the status."""
        return for_method(self.method, self.config.column_prefix, getattr(self.config, "kind", None))

    @property
    def output_columns(self) -> list:
        """Names of the columns this scorer adds, e.g. ["selectit_token_scores", ...]."""
        return self.columns.columns

    @property
    def forward_calls(self) -> int:
        """Model forwards run by this scorer object in this process (0 after a cache hit)."""
        return self.engine.stats.forward_calls

    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: Optional[int] = None) -> dict:
        """Score one batch (the `map(batched=True[, with_rank=True])` contract): the output columns,
        each with as many entries as the batch has rows; `rank` picks `cuda:{rank % n}`.

        Raises:
            ConfigError: the batch is one row (`map` without `batched=True`).
            SchemaError: the columns match no supported schema (lists the columns and the fix).
            ModelLoadError, RatingTokenError: the model cannot be loaded or used for this method.
        """
        require_batched(batch, type(self).__name__, self.config.columns)
        register_scorer(self, called=True)
        rows = self._rows(batch)
        cols = self.columns
        if not rows:
            return {name: [] for name in cols.columns}
        statuses: list = [None if row.error is None else row_status(row.error) for row in rows]
        values = self._score(rows, statuses, self.engine.state(rank))
        if "rating_mass" in values:
            warn_if_low_rating_mass(values["rating_mass"], column=cols.prefix + "rating_mass",
                                    method=self.title, model_name=self.model_name)
        return {cols.prefix + s: values[s] if isinstance(values[s], list) else values[s].tolist()
                for s in cols.outputs}

    def info(self, *, rank: Optional[int] = None) -> dict:
        """Provenance of this scorer (loads the model), JSON-serialisable: method, options, model,
        sizes, prompts, ... (for `provenance.attach_scorer_info`)."""
        state = self.engine.state(rank)
        facts = self.engine.model_facts(state)
        return {
            "method": self.method,
            "model": self.model_name,
            "revision": self.config.revision,
            "commit": preloaded_commit(state.model) if self._preloaded is not None else hub_commit(
                self.config.model, revision=self.config.revision,
                cache_dir=(self.config.model_kwargs or {}).get("cache_dir")),
            **{k: facts[k] for k in ("parameter_count", "non_embedding_parameter_count", "dtype", "backend")},
            "max_length": state.max_length,
            "column_prefix": self.config.column_prefix,
            "columns": self.config.columns,
            "output_columns": self.output_columns,
            # Of the from_pretrained options only those that change the numbers (attention,
            # quantisation), never placement or the token.
            "options": {**{k: v for k, v in asdict(self.config).items() if k not in self.runtime_options},
                        "model_kwargs": numeric_model_kwargs(self.config.model_kwargs) or None,
                        "vllm_kwargs": numeric_vllm_kwargs(self.config.vllm_kwargs) or None},
            "package_version": __version__,
            **({"model_in_memory": model_identity(*self._preloaded)} if self._preloaded is not None else {}),
            **self._method_info(state),
            **({"rating_tokens": state.method_data.to_dict()} if self.ratings else {}),
        }

    @property
    def model_name(self) -> str:
        """The model's Hub id or path, or the embedded model's id (`models.shown_name`)."""
        return shown_name(self.config.model)

    # --- shared by the methods ---

    def _items(self, rows: list, statuses: list, state: Any) -> list:
        """The engine items of every scorable row's `_texts`. A text longer than max_length is cut
        outside its protected spans (and marked truncated); when its fixed parts alone are too
        long, its row gets the error `too_long` and no items."""
        entries = [(row, slot, group, text, spans) for row, fields in enumerate(rows) if statuses[row] is None
                   for slot, (group, text, spans) in enumerate(self._texts(fields, state))]
        special = self.add_special_tokens
        encoded = self.engine.encode([entry[3] for entry in entries], state, add_special_tokens=special)
        items = []
        for (row, slot, group, text, spans), ids in zip(entries, encoded):
            truncated = len(ids) > state.max_length
            if truncated:
                ids = self.engine.truncate_protected(text, spans, state.max_length, state,
                                                     add_special_tokens=special)
                if ids is None:
                    statuses[row] = row_status(self.too_long.format(max_length=state.max_length, group=group))
                    continue
            items.append(Item(row=row, slot=slot, group=group, ids=list(ids), truncated=truncated))
        return [item for item in items if statuses[item.row] is None]

    def _read_ratings(self, rows: list, statuses: list, state: Any, slots: int, log: bool = True) -> tuple:
        """The rating tokens' log-probabilities (probabilities without `log`) at the last position of
        the `slots` texts of each row, ``[rows, slots, ratings]`` (NaN where none); the status column."""
        items = self._items(rows, statuses, state)
        out = np.full((len(statuses), slots, len(state.method_data.ids)), np.nan)
        readout = LastTokenProbs(tuple(state.method_data.ids), log=log)
        return out, self._read(items, state, readout, out, statuses)

    def _read(self, items: list, state: Any, readout: Any, out: Any, statuses: list, value_of: Any = None) -> list:
        """Run ``items``, each value (or ``value_of(value)``) into ``out[row, slot]``; a row that ran
        out of memory even alone gets that error and NaN. Returns the status column."""
        values, failed = self.engine.run(items, state, readout, n_rows=len(statuses))
        for item, value in zip(items, values):
            if value is not None:
                out[item.row, item.slot] = value if value_of is None else value_of(value)
        for row in failed:
            statuses[row] = row_status("out of memory")
            out[row] = float("nan")
        truncated = {item.row for item in items if item.truncated}
        return [row_status(s, truncated=row in truncated) for row, s in enumerate(statuses)]

    # --- what a method implements ---

    def _rows(self, batch: Mapping[str, Sequence[Any]]) -> list:
        return (extract_fields if self.keeps_input else extract_pairs)(batch, columns=self.config.columns)

    def prepare(self, model: Any, tokenizer: Any, name: str) -> Any:
        """Checked once per device after loading: the method's per-device data (its rating tokens)."""
        if not self.ratings:
            return None
        return find_rating_tokens(tokenizer, model_name=name, ratings=self.ratings, method=self.title)

    def probe_token_ids(self, group: Any, state: Any) -> list:
        """Token ids of two texts of `group` whose variable parts share no character."""
        texts = [text for row in self.probes for g, text, _ in self._texts(row, state) if g == group][:2]
        return self.engine.encode(texts, state, add_special_tokens=self.add_special_tokens)

    def _texts(self, row: Any, state: Any) -> list:
        """``(group, text, cuttable spans)`` of each text scored for one row (`Engine.truncate_protected`)."""
        raise NotImplementedError

    def _score(self, rows: list, statuses: list, state: Any) -> dict:
        """The output columns by suffix (lists or arrays) of a non-empty batch's rows; ``statuses``
        holds each row's error status or None, and is filled in by the method."""
        raise NotImplementedError

    def _method_info(self, state: Any) -> dict:
        return {}


def require_batched(batch: Mapping[str, Any], scorer_name: str, columns: Optional[Mapping] = None) -> None:
    """Refuse a single row (`ds.map(scorer)` without `batched=True`), whose values are not lists:
    a ConfigError naming the column that holds a single value and the fix."""
    chat_columns = {*CHAT_COLUMNS, *(str(v) for k, v in (columns or {}).items() if k in CHAT_COLUMNS)}
    for name, value in batch.items():
        single = isinstance(value, (str, bytes, int, float, bool, Mapping)) or value is None
        if not single and name in chat_columns and isinstance(value, (list, tuple)):
            # A chat column of one row is a list of turn dicts; of a batch, a list of lists.
            first = next((v for v in value if v is not None), None)
            single = isinstance(first, Mapping)
        if single:
            raise ConfigError(f"{scorer_name} got a single row, not a batch (column {name!r} holds "
                              f"{type(value).__name__} {str(value)[:40]!r}, not a list of values). Pass "
                              "batched=True: ds.map(scorer, batched=True).")


def template_segments(template: str, **parts: tuple) -> list:
    """`template` as ``(kind, text)`` pieces (`engine.join_segments`): its own text "fixed", each
    ``{name}`` the ``(kind, text)`` of ``parts[name]``."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(("fixed", literal))
        if name is not None:
            out.append(parts[name])
    return out


def split_model_argument(model: Any, tokenizer: Any) -> tuple:
    """(model id or path for the config, (model, tokenizer) in memory or None) of a scorer's arguments:
    a Hub id, a local path, None (the embedded model), or a model object in memory with `tokenizer`
    (a ConfigError for a tokenizer without a model object, or a model object without its tokenizer)."""
    if model is None or isinstance(model, (str, os.PathLike)):
        if tokenizer is not None:
            raise ConfigError("tokenizer= goes with a model object in memory (model=my_model, tokenizer="
                              f"my_tokenizer); with model={None if model is None else str(model)!r} the "
                              "tokenizer loads from the same place.")
        return (None if model is None else str(model)), None
    model, tokenizer = prepare_preloaded(model, tokenizer)
    return preloaded_name(model), (model, tokenizer)


def check_preloaded_options(config: Any) -> None:
    """Refuse loading options next to a model object: it is used as it is, nothing loads."""
    # backend: vLLM loads its own copy from a path or Hub id.
    given = [name for name in ("revision", "model_kwargs", "device", "vllm_kwargs", "trust_remote_code")
             if getattr(config, name, None)]
    given += [name for name, default in (("dtype", "auto"), ("backend", "transformers"))
              if getattr(config, name, default) != default]
    if given:
        raise ConfigError(f"{sorted(given)} only apply when hf-selectit loads the model; a model in memory "
                          "is used as it is (its dtype, device and attention as you loaded it). Drop them, or "
                          "pass a Hub id or path as model= to have them applied.")
