"""`selectit.json`: what a published version was made from and how.

The file is committed next to the data so that a version can be audited and reproduced without
the card: source dataset (id + revision, or the dataset fingerprint when there is no id), every
scorer's provenance (model id, revision, parameter count, prompts, alpha, normalisation), the
selection rule, row counts, the package version and the UTC time. It never holds a token.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from ._version import __version__
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

PROVENANCE_FILENAME = "selectit.json"
FORMAT = "hf-selectit/1"

SourceLike = Union[str, Mapping[str, Any], None]


def parse_source(source: SourceLike) -> dict:
    """Normalise the `source=` argument of `publish` to {"id": ..., "revision": ...}.

    Args:
        source: None, a Hub dataset id ("user/name"), "user/name@revision", or a mapping with
            "id" and optionally "revision".

    Returns:
        A dict with keys "id" and "revision" (either may be None).

    Raises:
        ConfigError: the value is none of the accepted forms.

    Example:
        >>> parse_source("vicgalle/alpaca-gpt4@main")
        {'id': 'vicgalle/alpaca-gpt4', 'revision': 'main'}
    """
    if source is None:
        return {"id": None, "revision": None}
    if isinstance(source, str):
        ident, sep, revision = source.partition("@")
        if not ident:
            raise ConfigError(f"source={source!r} is invalid: expected 'user/name' or 'user/name@revision'.")
        return {"id": ident, "revision": revision if sep else None}
    if isinstance(source, Mapping) and source.get("id"):
        return {"id": str(source["id"]), "revision": source.get("revision")}
    raise ConfigError(
        f"source={source!r} is invalid: expected None, 'user/name', 'user/name@revision' or "
        "{'id': 'user/name', 'revision': '...'}."
    )


def _read_metadata(ds: Optional["Dataset"]) -> dict:
    if ds is None:
        return {}
    from .metadata import read_metadata

    return read_metadata(ds)


def _common(infos: Mapping[str, Mapping], key: str) -> Any:
    """The value of `key` shared by every scorer, or {prefix: value} when they differ."""
    values = {prefix: info.get(key) for prefix, info in infos.items() if key in info}
    if not values:
        return None
    distinct = {json.dumps(v, sort_keys=True, default=str) for v in values.values()}
    return next(iter(values.values())) if len(distinct) == 1 else values


def build_provenance(
    subset: "Dataset",
    *,
    version: str,
    scored: Optional["Dataset"] = None,
    source: SourceLike = None,
    repo_id: Optional[str] = None,
    branch: Optional[str] = None,
    files: Optional[list] = None,
    history: Optional[list] = None,
    now: Optional[_dt.datetime] = None,
) -> dict:
    """Assemble the `selectit.json` content of one published version.

    Args:
        subset: The published (selected) rows.
        version: The version tag, e.g. "v1.0".
        scored: The full scored dataset, when published alongside.
        source: The dataset the rows came from (see `parse_source`); when None, the fingerprint
            of `scored` (or `subset`) identifies it instead.
        repo_id: Where it is published (Hub repo id or local directory).
        branch: The branch committed to, if not the default one.
        files: Paths of the files of this version, relative to the repo root.
        history: Earlier versions (local-directory publishing keeps them here).
        now: The publication time (default: the current UTC time).

    Returns:
        A JSON-serialisable dict.

    Example:
        >>> prov = build_provenance(subset, version="v1.0", scored=ds, source="tatsu-lab/alpaca")
        >>> prov["rows"]
        {'subset': 10400, 'scored': 52002}
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    meta = _read_metadata(scored) or _read_metadata(subset)
    sub_meta = _read_metadata(subset)
    scorers = dict(meta.get("scorers", {}))
    scorers.update(sub_meta.get("scorers", {}))
    from .select import selection_rule

    selection = selection_rule(subset) or (selection_rule(scored) if scored is not None else None)
    fusion = {**meta.get("fusion", {}), **sub_meta.get("fusion", {})} or None
    src = parse_source(source)
    base = scored if scored is not None else subset
    src["fingerprint"] = getattr(base, "_fingerprint", None)
    return {
        "format": FORMAT,
        "version": version,
        "created_at": now.astimezone(_dt.timezone.utc).isoformat(timespec="seconds"),
        "package": {"name": "hf-selectit", "version": __version__},
        "repo_id": repo_id,
        "branch": branch,
        "source": src,
        "scorers": scorers,
        "prompts": _common(scorers, "prompts"),
        "prompt_set": _common(scorers, "prompt_set"),
        "alpha": _common(scorers, "alpha"),
        "normalization": _common(scorers, "normalization"),
        "selection": selection,
        "fusion": fusion,
        "rows": {"subset": subset.num_rows, "scored": scored.num_rows if scored is not None else None},
        "validation": _validation(meta, scored, selection),
        "columns": list(subset.column_names),
        "files": sorted(files or []),
        "history": list(history or []),
    }


def _validation(meta: Mapping, scored: Optional["Dataset"], selection: Optional[Mapping]) -> Optional[dict]:
    """The label validation recorded on the scored rows (``validation.attach_validation``), kept
    only when it covered exactly these rows (the scored dataset, or the one the subset came from)."""
    report = meta.get("validation")
    if not isinstance(report, Mapping):
        return None
    rows = scored.num_rows if scored is not None else (selection or {}).get("rows_in")
    return dict(report) if rows is not None and report.get("n_items") == rows else None


def dumps(provenance: Mapping) -> str:
    """Serialise provenance the way it is committed (stable key order, UTF-8, trailing newline)."""
    return json.dumps(provenance, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
