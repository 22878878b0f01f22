"""Provenance: the identity of a score (model, commit, prompts, options) and what was done with
it (selection rule, fusion, validation). This module is its one home: the only reader and writer of
`selectit.json` and of whatever travels with a Dataset in memory.

Routes, and why each exists:

- **In memory, through `datasets` transforms**: one JSON block after a marker line in
  ``ds.info.description`` (any description the dataset had stays intact). `datasets` copies the
  info through ``map``/``select``/``filter``/``concatenate`` and ``save_to_disk`` keeps it:
  ``{"scorers": {column_prefix: info}, "selection": rule, "fusion": ..., "validation": ...}``.
  :func:`attach` returns a copy of the dataset (``copy.deepcopy``: Arrow buffers are shared, not
  copied) with the block updated; the caller's object is never changed.
- **Which rows a selection kept**: ``select_top``/``select_random`` return the subset with a
  :class:`Selection` (rule and kept indices into the scored rows) as its ``selection``
  attribute; :func:`selection_of` reads it. An attribute, not the description block: it must
  not survive a later transform that changes the rows.
- **The process registry**: ``ds.map(scorer, batched=True)`` cannot attach anything to its
  result, so every scorer registers itself here when built or called
  (:func:`register_scorer`); score columns without recorded provenance are described by the
  scorer registered for their column prefix. It lives only here.
- **Files**: ``selectit.json`` beside written data (:func:`write_sidecar`, read back by
  :func:`read_sidecar`), inside a published version (:func:`build_provenance`,
  :func:`write_published`) and on the Hub (:func:`read_hub_provenance`). It never holds a token.

Nothing here imports `datasets` at module level, nor any module above it (select, methods).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

import numpy as np

from ._version import __version__
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

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


MARKER = "\n\nselectit-metadata: "


# ----------------------------------------------------------------------- in memory


def read(ds: Optional["Dataset"]) -> dict:
    """The provenance block `ds` carries ({} when there is none)."""
    if ds is None:
        return {}
    description = ds.info.description or ""
    _, sep, block = description.partition(MARKER)
    if not sep:
        return {}
    try:
        data = json.loads(block)
    except json.JSONDecodeError:
        # A hand-edited description: report nothing rather than guess.
        return {}
    return data if isinstance(data, dict) else {}


def attach(ds: "Dataset", *, kept_rows: Any = None, **entries: Any) -> "Dataset":
    """A copy of `ds` (same rows, same fingerprint) whose provenance block has `entries` merged in.

    Dict-valued entries are merged one level deep (so scorers of several models accumulate);
    other values replace what was there. `ds` itself is not changed. `kept_rows` (with a
    `selection` entry) records which rows of the scored dataset the subset holds.

    Example:
        >>> ds = attach(ds, selection={"rule": "top_ratio", "ratio": 0.2})
    """
    data = read(ds)
    for key, value in entries.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    # A deep copy gives the new info its own object; the Arrow tables are shared (datasets'
    # tables copy no buffers on deepcopy), and no private attribute is touched.
    out = copy.deepcopy(ds)
    head = (out.info.description or "").partition(MARKER)[0]
    from .redaction import redact_mapping

    # The description is written into every saved copy (dataset_info.json, parquet metadata).
    out.info.description = head + MARKER + json.dumps(redact_mapping(data), sort_keys=True, default=str)
    if kept_rows is not None and isinstance(data.get("selection"), dict):
        out.selection = Selection(rule=dict(data["selection"]), indices=np.asarray(kept_rows, dtype=np.int64))
    return out


@dataclass(frozen=True)
class Selection:
    """What a selection kept: the recorded rule and the kept rows' indices into the scored
    dataset, in the subset's row order. ``select_top(...).selection``.

    Example:
        >>> subset = select_top(ds, ratio=0.2)
        >>> subset.selection.indices[:3], subset.selection.rule["rule"]
        (array([ 4, 17, 20]), 'top_ratio')
    """

    rule: dict
    indices: np.ndarray


def record_selection(subset: "Dataset", rule: dict, indices: np.ndarray) -> "Dataset":
    """`subset` with its selection recorded (block and :class:`Selection` attribute)."""
    return attach(subset, selection=rule, kept_rows=indices)


def selection_of(ds: Optional["Dataset"]) -> Optional[Selection]:
    """The selection that made `ds`: with the kept indices when `ds` is the value the select step
    returned (or was loaded from its file), else the recorded rule alone (indices None)."""
    if ds is None:
        return None
    value = getattr(ds, "selection", None)
    if isinstance(value, Selection):
        return value
    rule = read(ds).get("selection")
    return Selection(rule=dict(rule), indices=None) if isinstance(rule, dict) else None


def dataset_fingerprint(ds: Any) -> Optional[str]:
    """The `datasets` fingerprint of `ds`, recorded in selectit.json to identify unnamed sources.

    `datasets` exposes the fingerprint only as the private ``_fingerprint`` attribute (read here,
    never written).
    """
    return getattr(ds, "_fingerprint", None)


def attach_scorer_info(ds: "Dataset", info: dict) -> "Dataset":
    """Record one scorer's provenance (from ``scorer.info()``) under its column prefix.

    Raises:
        KeyError: `info` has no "column_prefix".
    """
    return attach(ds, scorers={info["column_prefix"]: info})


# -------------------------------------------------------------------- the registry

_LOCK = threading.Lock()
# column prefix -> {config key: entry}; an entry is {"scorer": obj, "info": dict | None,
# "called": bool, "seq": int}. Later seq = more recent use.
_REGISTRY: dict = {}
_SEQ = [0]
_WARNED: set = set()


def _config_key(scorer: Any) -> str:
    from dataclasses import asdict, is_dataclass

    config = getattr(scorer, "config", None)
    state = asdict(config) if is_dataclass(config) else repr(config)
    payload = json.dumps([type(scorer).__qualname__, type(config).__qualname__, state],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def register_scorer(scorer: Any, *, called: bool = False) -> None:
    """Remember `scorer` (built or called in this process) as the source of its columns.

    Scorers call this from their constructor and from ``__call__``; it is cheap (a dict update,
    no model load). When several scorers with different configs used the same prefix, the one
    called last wins and a warning says so (pass ``scorers=`` to ``publish`` to choose).
    """
    prefix = getattr(getattr(scorer, "config", None), "column_prefix", None)
    if not isinstance(prefix, str):
        return
    key = _config_key(scorer)
    with _LOCK:
        _SEQ[0] += 1
        entries = _REGISTRY.setdefault(prefix, {})
        entry = entries.setdefault(key, {"scorer": scorer, "info": None, "called": False, "seq": 0})
        entry["seq"] = _SEQ[0]
        entry["called"] = entry["called"] or called


def _chosen(prefix: str) -> Optional[dict]:
    with _LOCK:
        entries = list(_REGISTRY.get(prefix, {}).values())
    if not entries:
        return None
    entries.sort(key=lambda e: (e["called"], e["seq"]))
    return entries[-1] | {"count": len(entries)}


def registered_scorers() -> dict:
    """{column prefix: the scorer registered for it in this process} (no model is loaded)."""
    with _LOCK:
        prefixes = list(_REGISTRY)
    return {p: c["scorer"] for p in prefixes if (c := _chosen(p)) is not None}


def registered_info(prefix: str) -> Optional[dict]:
    """The provenance of the scorer registered for `prefix` in this process, or None.

    Loads the scorer's model in this process if it never ran here (e.g. it scored only in
    ``num_proc`` workers); the result is cached.
    """
    chosen = _chosen(prefix)
    if chosen is None:
        return None
    if chosen["count"] > 1 and (prefix, chosen["count"]) not in _WARNED:
        _WARNED.add((prefix, chosen["count"]))
        logger.warning(
            "%d scorers with column prefix %r were used in this process; recording the one "
            "used last (%r). Pass scorers=[...] to publish to choose, or give each scorer its "
            "own column_prefix.", chosen["count"], prefix, getattr(chosen["scorer"], "config", None))
    with _LOCK:
        entry = _REGISTRY[prefix][_config_key(chosen["scorer"])]
    if entry["info"] is None:
        entry["info"] = chosen["scorer"].info()
    return entry["info"]


def scorer_infos(ds: "Dataset", *, registry: bool = True) -> dict:
    """Provenance of every scorer behind `ds`'s score columns, keyed by column prefix.

    Recorded provenance first; then, for a scorer registered in this process whose columns are
    all in `ds` and that has no recorded provenance, that scorer's.

    Returns:
        {column_prefix: info}; a score column with no known scorer is simply absent.
    """
    infos = dict(read(ds).get("scorers", {}))
    if registry:
        names = set(ds.column_names)
        for prefix, scorer in registered_scorers().items():
            if prefix not in infos and set(getattr(scorer, "output_columns", None) or [None]) <= names:
                info = registered_info(prefix)
                if info is not None:
                    infos[prefix] = info
    return infos


def cached_info(describe: Callable[[], dict], folder: Union[str, "os.PathLike[str]"]) -> dict:
    """``describe()`` (a scorer's ``info``, which loads the model), kept in
    ``folder/scorer_info.json`` so a fully resumed run does not load the model only to describe it
    (the folder's name fixes the scorer config). Secrets are hidden before it is written."""
    path = Path(folder) / "scorer_info.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            logger.warning("Unreadable %s: describing the scorer again.", path)
    from .atomic import write_text
    from .redaction import redact_mapping

    write_text(path, json.dumps(redact_mapping(describe()), indent=2, sort_keys=True, default=str))
    return json.loads(path.read_text())


# ------------------------------------------------------------- beside the data files

SIDECAR_FORMAT = "hf-selectit-data/1"


def sidecar_path(output: Union[str, "os.PathLike[str]"], fmt: str) -> Path:
    """Where the provenance of a written dataset goes: ``FOLDER/selectit.json`` for a
    ``save_to_disk`` folder, ``FILE.parquet.selectit.json`` beside a parquet/jsonl file."""
    out = Path(output)
    if fmt == "disk" or out.is_dir():
        return out / PROVENANCE_FILENAME
    return out.with_name(out.name + "." + PROVENANCE_FILENAME)


def sidecar_content(ds: "Dataset") -> dict:
    """What a data file's ``selectit.json`` holds: its scorers, selection rule (with the kept
    rows' indices into the scored rows, when known) and fusion."""
    meta = read(ds)
    selection = selection_of(ds)
    content = {
        "format": SIDECAR_FORMAT,
        "package": {"name": "hf-selectit", "version": __version__},
        "scorers": scorer_infos(ds),
        "selection": meta.get("selection"),
        "fusion": meta.get("fusion"),
        "rows": ds.num_rows,
        "columns": list(ds.column_names),
    }
    if selection is not None and selection.indices is not None:
        content["kept_rows"] = selection.indices.tolist()
    return content


def write_sidecar(ds: "Dataset", output: Union[str, "os.PathLike[str]"], fmt: str) -> Optional[Path]:
    """Write the provenance of `ds` beside (or inside) `output`; nothing when there is none."""
    content = sidecar_content(ds)
    path = sidecar_path(output, fmt)
    if not content["scorers"] and not content["selection"] and not content["fusion"]:
        if path.is_file():
            path.unlink()  # an older file's provenance must not describe these rows
        return None
    from .atomic import write_text

    write_text(path, dumps(content))
    return path


def _provenance_entries(data: Any, *, published: bool) -> dict:
    if not isinstance(data, dict):
        return {}
    out = {}
    if isinstance(data.get("scorers"), dict) and data["scorers"]:
        out["scorers"] = data["scorers"]
    if isinstance(data.get("fusion"), dict) and data["fusion"]:
        out["fusion"] = data["fusion"]
    # A published version's selection describes its `default` config, not the `scores` config
    # one may be loading; a data file's own sidecar describes exactly its rows.
    if not published and isinstance(data.get("selection"), dict):
        out["selection"] = data["selection"]
        if isinstance(data.get("kept_rows"), list):
            out["kept_rows"] = data["kept_rows"]
    return out


def read_sidecar(path: Union[str, "os.PathLike[str]"]) -> dict:
    """Metadata entries (scorers, fusion, selection) stored with a local dataset, or {}.

    Reads ``FOLDER/selectit.json`` (a save_to_disk folder, or a published local directory) or
    ``FILE.selectit.json`` beside a data file.
    """
    p = Path(path)
    candidate = p / PROVENANCE_FILENAME if p.is_dir() else p.with_name(p.name + "." + PROVENANCE_FILENAME)
    if not candidate.is_file():
        return {}
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{candidate}: not valid JSON ({exc.msg}, line {exc.lineno}); fix or delete "
                          "it (it holds the scorers' provenance of the data beside it).") from exc
    return _provenance_entries(data, published=data.get("format") == FORMAT)


def read_hub_provenance(repo_id: str, *, revision: Optional[str] = None) -> dict:
    """Metadata entries from the ``selectit.json`` of a Hub dataset repo, or {} when it has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = hf_hub_download(repo_id, PROVENANCE_FILENAME, repo_type="dataset", revision=revision)
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError):
        # Most Hub datasets were not made by hf-selectit; the file is optional.
        return {}
    try:
        data = json.loads(Path(local).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return _provenance_entries(data, published=True)


def scorers_of(subset: "Dataset", scored: Optional["Dataset"] = None,
               scorers: Optional[Any] = None, *, expected: Any = ()) -> dict:
    """The provenance of every score column of `subset`/`scored`, or a ConfigError naming the
    columns without any (never a card that cannot name the model).

    Args:
        subset, scored: the published rows and the full scored dataset.
        scorers: scorer objects (or their ``info()`` dicts) given explicitly; they win.
        expected: {column prefix: score column} whose scorer must be known (from the column
            schema, ``methods.columns``).

    Raises:
        ConfigError: a score column whose scorer is known neither from the data nor from this
            process, with the fix.
    """
    infos: dict = {}
    for ds in (scored, subset):
        if ds is not None:
            infos.update(scorer_infos(ds))
    for item in (scorers or []):
        info = item if isinstance(item, Mapping) else item.info()
        infos[info["column_prefix"]] = dict(info)
    missing = [column for prefix, column in dict(expected).items() if prefix not in infos]
    if missing:
        raise ConfigError(
            f"No scorer provenance for the score column(s) {missing}: the data does not carry it "
            "(it was not saved with hf-selectit, or the selectit.json beside it is gone) and no "
            "scorer with that column prefix ran in this process. Python: pass scorers=[scorer] "
            "to publish. CLI: score with `hf-selectit score` and keep the selectit.json it writes "
            "beside the data."
        )
    return infos


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
    scorers: Optional[Mapping] = None,
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
        scorers: {column prefix: scorer info} (from :func:`scorers_of`); None = what the data
            carries or this process registered.

    Returns:
        A JSON-serialisable dict.

    Example:
        >>> prov = build_provenance(subset, version="v1.0", scored=ds, source="tatsu-lab/alpaca")
        >>> prov["rows"]
        {'subset': 10400, 'scored': 52002}
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    meta = read(scored) or read(subset)
    sub_meta = read(subset)
    if scorers is None:
        scorers = scorers_of(subset, scored)
    chosen = selection_of(subset) or selection_of(scored)
    selection = chosen.rule if chosen is not None else None
    fusion = {**meta.get("fusion", {}), **sub_meta.get("fusion", {})} or None
    src = parse_source(source)
    base = scored if scored is not None else subset
    src["fingerprint"] = dataset_fingerprint(base)
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
    """Serialise provenance the way it is committed (stable key order, UTF-8, trailing newline;
    any token hidden)."""
    from .redaction import redact_mapping

    return json.dumps(redact_mapping(provenance), indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def write_published(provenance: Mapping, folder: Union[str, "os.PathLike[str]"]) -> None:
    """Write a version's ``selectit.json`` into the folder being staged."""
    (Path(folder) / PROVENANCE_FILENAME).write_text(dumps(provenance), encoding="utf-8")


def read_published(path: Union[str, "os.PathLike[str]"]) -> Optional[dict]:
    """A published version's ``selectit.json`` (a folder holding it, or the file), or None.

    Raises:
        ValueError: the file is not valid JSON.
    """
    p = Path(path)
    p = p / PROVENANCE_FILENAME if p.is_dir() else p
    if not p.is_file():
        return None
    return json.loads(p.read_text(encoding="utf-8"))
