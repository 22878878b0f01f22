"""Provenance that travels with a scored dataset in memory, and the scorers seen in this process.

Two sources, one answer (:func:`scorer_infos`):

1. ``ds.info.description``: `datasets` copies it through ``map``/``select``/``filter`` and saves it
   with ``save_to_disk``. It holds one JSON block after a marker line (any description the
   dataset already had stays intact): ``{"scorers": {column_prefix: info}, "selection": ...,
   "fusion": ...}``. Files written by :func:`hf_selectit.io.save_output` carry the same block in
   a ``selectit.json`` beside the data, and :func:`hf_selectit.io.load_input` puts it back here.
2. The process registry. ``ds.map(scorer, batched=True)`` cannot attach anything to its result,
   so every scorer registers itself here when it is built or called
   (:func:`register_scorer`). A dataset whose score columns have no recorded provenance is
   described by the scorer registered for that column prefix; when several scorers with
   different configs used the same prefix in this process, the one called last wins and a
   warning says so (pass ``scorers=`` to ``publish`` to choose).

Nothing here imports `datasets` at module level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

MARKER = "\n\nselectit-metadata: "
# Column-name endings of the score columns a scorer adds (the engine's methods extend this).
SCORE_SUFFIXES = ["sentence_score", "token_scores", "uncertainty", "rating_probs", "status", "model_score"]
MAIN_SCORE_SUFFIX = "sentence_score"


# ----------------------------------------------------------------------- the block


def read_metadata(ds: "Dataset") -> dict:
    """The SelectIT metadata block of `ds` ({} when there is none)."""
    description = ds.info.description or ""
    head, sep, block = description.partition(MARKER)
    if not sep:
        return {}
    try:
        data = json.loads(block)
    except json.JSONDecodeError:
        # A hand-edited description: report nothing rather than guess.
        return {}
    return data if isinstance(data, dict) else {}


def with_metadata(ds: "Dataset", **entries: Any) -> "Dataset":
    """A view of `ds` (same table, same fingerprint) whose metadata block has `entries` merged in.

    Dict-valued entries are merged one level deep (so scorers of several models accumulate);
    other values replace what was there. `ds` itself is not changed.

    Example:
        >>> ds = with_metadata(ds, selection={"rule": "top_ratio", "ratio": 0.2})
    """
    data = read_metadata(ds)
    for key, value in entries.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    info = ds.info.copy()
    head = (info.description or "").partition(MARKER)[0]
    from .redaction import redact_mapping

    # The description is written into every saved copy (dataset_info.json, parquet metadata).
    info.description = head + MARKER + json.dumps(redact_mapping(data), sort_keys=True, default=str)
    return _view_with_info(ds, info)


def _view_with_info(ds: "Dataset", info: Any) -> "Dataset":
    """The same rows (table, indices, fingerprint, format) with another DatasetInfo.

    `datasets` has no public way to give a Dataset new info without copying or re-hashing it:
    assigning to ``ds.info`` would change the caller's dataset in place, and every public
    transform (``select``, ``cast``, ...) computes a new fingerprint or rewrites the table.
    The public constructor takes the indices mapping and the fingerprint, which only the
    private ``_indices``/``_fingerprint`` attributes hold.
    """
    from datasets import Dataset

    new = Dataset(ds.data, info=info, split=ds.split, indices_table=ds._indices,
                  fingerprint=ds._fingerprint)
    # Keep the user's format (e.g. with_format("torch")) on the returned view. set_format
    # records a new fingerprint, but these are the same rows: keep the original one.
    new.set_format(ds.format["type"], columns=ds.format["columns"],
                   output_all_columns=ds.format["output_all_columns"], **ds.format["format_kwargs"])
    new._fingerprint = ds._fingerprint
    return new


def dataset_fingerprint(ds: Any) -> Optional[str]:
    """The `datasets` fingerprint of `ds`, recorded in selectit.json to identify unnamed sources.

    `datasets` exposes the fingerprint only as the private ``_fingerprint`` attribute.
    """
    return getattr(ds, "_fingerprint", None)


def attach_scorer_info(ds: "Dataset", info: dict) -> "Dataset":
    """Record one scorer's provenance (from ``scorer.info()``) under its column prefix.

    Args:
        ds: the dataset the scorer's columns were added to.
        info: the provenance dict; must contain "column_prefix".

    Returns:
        The same rows with the provenance attached (see module docstring).

    Raises:
        KeyError: `info` has no "column_prefix".
    """
    return with_metadata(ds, scorers={info["column_prefix"]: info})


def column_prefix_of(column: str) -> Optional[str]:
    """'selectit_m1_sentence_score' -> 'selectit_m1_' (the prefix a scorer wrote it with)."""
    for suffix in SCORE_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            return column[: -len(suffix)]
    return None


def score_prefixes(column_names: Any) -> list[str]:
    """Column prefixes of the main score columns present (``<prefix>sentence_score``)."""
    out = []
    for column in column_names:
        if column.endswith(MAIN_SCORE_SUFFIX) and len(column) > len(MAIN_SCORE_SUFFIX):
            out.append(column[: -len(MAIN_SCORE_SUFFIX)])
    return out


# -------------------------------------------------------------------- the registry

_LOCK = threading.Lock()
# column prefix -> {config key: entry}; an entry is {"scorer": obj, "info": dict | None,
# "called": bool, "seq": int}. Later seq = more recent use.
_REGISTRY: dict[str, dict[str, dict]] = {}
_SEQ = [0]
_WARNED: set = set()


def config_key(scorer: Any) -> str:
    """A short hash of a scorer's identifying config (its method and every option)."""
    from dataclasses import asdict, is_dataclass

    config = getattr(scorer, "config", None)
    state = asdict(config) if is_dataclass(config) else repr(config)
    payload = json.dumps([type(scorer).__qualname__, type(config).__qualname__, state],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def register_scorer(scorer: Any, *, called: bool = False, info: Optional[dict] = None) -> None:
    """Remember `scorer` (built or called in this process) as the source of its columns.

    Scorers call this from their constructor and from ``__call__``; it is cheap (a dict update,
    no model load). ``info``, when the caller already has it, saves a later ``scorer.info()``.

    Args:
        scorer: any scorer with ``.config.column_prefix`` and ``.info()``.
        called: the scorer has just scored a batch (it wins over ones only built).
        info: its provenance, if known.
    """
    prefix = getattr(getattr(scorer, "config", None), "column_prefix", None)
    if not isinstance(prefix, str):
        return
    key = config_key(scorer)
    with _LOCK:
        _SEQ[0] += 1
        entries = _REGISTRY.setdefault(prefix, {})
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = {"scorer": scorer, "info": None, "called": False, "seq": 0}
        entry["seq"] = _SEQ[0]
        entry["called"] = entry["called"] or called
        if info is not None:
            entry["info"] = info


def registered_info(prefix: str) -> Optional[dict]:
    """The provenance of the scorer registered for `prefix` in this process, or None.

    Loads the scorer's model in this process if it never ran here (e.g. it scored only in
    ``num_proc`` workers); the result is cached.
    """
    with _LOCK:
        entries = list(_REGISTRY.get(prefix, {}).values())
    if not entries:
        return None
    entries.sort(key=lambda e: (e["called"], e["seq"]))
    chosen = entries[-1]
    if len(entries) > 1:
        warn_key = (prefix, len(entries))
        if warn_key not in _WARNED:
            _WARNED.add(warn_key)
            logger.warning(
                "%d scorers with column prefix %r were used in this process; recording the one "
                "used last (%r). Pass scorers=[...] to publish to choose, or give each scorer its "
                "own column_prefix.", len(entries), prefix, getattr(chosen["scorer"], "config", None))
    if chosen["info"] is None:
        chosen["info"] = chosen["scorer"].info()
    return chosen["info"]


def scorer_infos(ds: "Dataset", *, registry: bool = True) -> dict[str, dict]:
    """Provenance of every scorer behind `ds`'s score columns, keyed by column prefix.

    Recorded provenance (the dataset's metadata block) first; for score columns without it,
    the scorer registered in this process for that prefix (see the module docstring).

    Args:
        ds: a scored dataset.
        registry: also consult the process registry.

    Returns:
        {column_prefix: info}; a score column with no known scorer is simply absent.
    """
    infos = dict(read_metadata(ds).get("scorers", {}))
    if registry:
        for prefix in score_prefixes(ds.column_names):
            if prefix not in infos:
                info = registered_info(prefix)
                if info is not None:
                    infos[prefix] = info
    return infos
