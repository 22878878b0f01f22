"""Provenance that travels with a scored dataset.

`Dataset.map` cannot change a dataset's info, yet the selection step needs to know, say, the
parameter count of the model behind `selectit_m1_sentence_score`, and the publisher needs the
scorer configs for `selectit.json`. This module keeps that provenance in `ds.info.description`
(which `datasets` copies through `map`/`select`/`filter` and saves with `save_to_disk`) as one
JSON block after a marker line, leaving any description the dataset already had intact.

Layout of the block: `{"scorers": {column_prefix: info, ...}, "selection": {...}}`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

MARKER = "\n\nselectit-metadata: "


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
    other values replace what was there.

    Example:
        >>> ds = with_metadata(ds, selection={"rule": "top_ratio", "ratio": 0.2})
    """
    from datasets import Dataset

    data = read_metadata(ds)
    for key, value in entries.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    info = ds.info.copy()
    head = (info.description or "").partition(MARKER)[0]
    info.description = head + MARKER + json.dumps(data, sort_keys=True, default=str)
    new = Dataset(ds.data, info=info, split=ds.split, indices_table=ds._indices, fingerprint=ds._fingerprint)
    # Keep the user's format (e.g. with_format("torch")) on the returned view.
    new.set_format(ds.format["type"], columns=ds.format["columns"],
                   output_all_columns=ds.format["output_all_columns"], **ds.format["format_kwargs"])
    return new


def attach_scorer_info(ds: "Dataset", info: dict) -> "Dataset":
    """Record one scorer's provenance (from `SelectITScorer.info()`) under its column prefix.

    Args:
        ds: the dataset the scorer's columns were added to.
        info: the provenance dict; must contain "column_prefix".

    Returns:
        The same rows with the provenance attached (see module docstring).

    Raises:
        KeyError: `info` has no "column_prefix".
    """
    return with_metadata(ds, scorers={info["column_prefix"]: info})


def scorer_infos(ds: "Dataset") -> dict[str, dict]:
    """Provenance of every scorer recorded on `ds`, keyed by column prefix."""
    return dict(read_metadata(ds).get("scorers", {}))


def column_prefix_of(column: str) -> Optional[str]:
    """'selectit_m1_sentence_score' -> 'selectit_m1_' (the prefix a scorer wrote it with)."""
    for suffix in ("sentence_score", "token_scores", "uncertainty", "rating_probs", "status", "model_score"):
        if column.endswith(suffix) and len(column) > len(suffix):
            return column[: -len(suffix)]
    return None
