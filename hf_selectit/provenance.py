"""Provenance: the identity of a score (model, commit, prompts, options) and what was done with
it (selection rule, fusion, validation). The only reader and writer of it, in memory (a JSON block
in ``ds.info.description`` that `datasets` carries through transforms, the :class:`Selection`
attribute, which a later transform drops, and the process registry of scorers) and on disk
(``selectit.json``, never with a token); docs/architecture.md, "One home per decision".

Nothing here imports `datasets` at module level, nor any module above it (select, methods).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import itertools
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

import numpy as np

from ._version import __version__
from .atomic import write_text
from .errors import ConfigError
from .redaction import redact_mapping

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

PROVENANCE_FILENAME = "selectit.json"
FORMAT = "hf-selectit/1"

SourceLike = Union[str, Mapping[str, Any], None]


def parse_source(source: SourceLike) -> dict:
    """`publish`'s `source=` (None, "user/name", "user/name@revision" or {"id", "revision"}) as
    {"id": ..., "revision": ...}: ``"vicgalle/alpaca-gpt4@main"`` -> revision ``"main"``."""
    if source is None:
        return {"id": None, "revision": None}
    if isinstance(source, str):
        ident, sep, revision = source.partition("@")
        if not ident:
            raise ConfigError(f"source={source!r} is invalid: expected 'user/name' or 'user/name@revision'.")
        return {"id": ident, "revision": revision if sep else None}
    if isinstance(source, Mapping) and source.get("id"):
        return {"id": str(source["id"]), "revision": source.get("revision")}
    raise ConfigError(f"source={source!r} is invalid: expected None, 'user/name', 'user/name@revision' or "
                      "{'id': 'user/name', 'revision': '...'}.")


MARKER = "\n\nselectit-metadata: "


def read(ds: Optional["Dataset"]) -> dict:
    """The provenance block `ds` carries ({} when there is none)."""
    _, sep, block = (ds.info.description or "").partition(MARKER) if ds is not None else ("", "", "")
    try:
        data = json.loads(block) if sep else {}
    except json.JSONDecodeError:  # a hand-edited description: report nothing rather than guess
        return {}
    return data if isinstance(data, dict) else {}


def attach(ds: "Dataset", *, kept_rows: Any = None, **entries: Any) -> "Dataset":
    """A copy of `ds` (same rows, same fingerprint) with `entries` merged into its provenance
    block: dicts one level deep (scorers of several models accumulate), other values replaced.
    `kept_rows` (with a `selection` entry) sets the :class:`Selection` attribute."""
    data = read(ds)
    for key, value in entries.items():
        old = data.get(key)
        data[key] = {**old, **value} if isinstance(value, dict) and isinstance(old, dict) else value
    # A deep copy gives the new info its own object; the Arrow tables are shared (datasets'
    # tables copy no buffers on deepcopy), and no private attribute is touched.
    out = copy.deepcopy(ds)
    head = (out.info.description or "").partition(MARKER)[0]
    # The description is written into every saved copy (dataset_info.json, parquet metadata).
    out.info.description = head + MARKER + json.dumps(redact_mapping(data), sort_keys=True, default=str)
    if kept_rows is not None and isinstance(data.get("selection"), dict):
        out.selection = Selection(rule=dict(data["selection"]), indices=np.asarray(kept_rows, dtype=np.int64))
    return out


@dataclass(frozen=True)
class Selection:
    """``select_top(...).selection``: the recorded rule and the kept rows' indices into the
    scored dataset, in the subset's row order."""

    rule: dict
    indices: np.ndarray


def selection_of(ds: Optional["Dataset"]) -> Optional[Selection]:
    """The selection that made `ds`: with the kept indices when `ds` is the value the select step
    returned (or was loaded from its file), else the recorded rule alone (indices None)."""
    value = getattr(ds, "selection", None)
    if isinstance(value, Selection):
        return value
    rule = read(ds).get("selection")
    return Selection(rule=dict(rule), indices=None) if isinstance(rule, dict) else None


def dataset_fingerprint(ds: Any) -> Optional[str]:
    """The `datasets` fingerprint of `ds` (identifies unnamed sources in selectit.json): only the
    private ``_fingerprint`` exposes it; read here, never written."""
    return getattr(ds, "_fingerprint", None)


def attach_scorer_info(ds: "Dataset", info: dict) -> "Dataset":
    """Record one scorer's provenance (``scorer.info()``) under its "column_prefix"."""
    return attach(ds, scorers={info["column_prefix"]: info})


_LOCK = threading.Lock()
# column prefix -> {config key: entry}; an entry is {"scorer": obj, "info": dict | None,
# "called": bool, "seq": int}. Later seq = more recent use.
_REGISTRY: dict = {}
_SEQ = itertools.count(1)
_WARNED: set = set()


def _config_key(scorer: Any) -> str:
    config = getattr(scorer, "config", None)
    state = asdict(config) if is_dataclass(config) else repr(config)
    payload = json.dumps([type(scorer).__qualname__, type(config).__qualname__, state],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def register_scorer(scorer: Any, *, called: bool = False) -> None:
    """Remember `scorer` (built or called in this process; no model load) as the source of its
    columns. Of several configs with one prefix, the one called last wins (with a warning)."""
    prefix = getattr(getattr(scorer, "config", None), "column_prefix", None)
    if not isinstance(prefix, str):
        return
    key = _config_key(scorer)
    with _LOCK:
        entries = _REGISTRY.setdefault(prefix, {})
        entry = entries.setdefault(key, {"scorer": scorer, "info": None, "called": False})
        entry.update(seq=next(_SEQ), called=entry["called"] or called)


def _chosen(entries: dict) -> dict:
    """Of one prefix's entries, the one used last (a call outranks a mere construction)."""
    return max(entries.values(), key=lambda e: (e["called"], e["seq"]))


def registered_scorers() -> dict:
    """{column prefix: the scorer registered for it in this process} (no model is loaded)."""
    with _LOCK:
        return {prefix: _chosen(entries)["scorer"] for prefix, entries in _REGISTRY.items()}


def registered_info(prefix: str) -> Optional[dict]:
    """The provenance of the scorer registered for `prefix`, or None; loads its model if it
    never ran in this process (e.g. it scored only in ``num_proc`` workers), then cached."""
    with _LOCK:
        entries = _REGISTRY.get(prefix)
        if not entries:
            return None
        entry, count = _chosen(entries), len(entries)
    if count > 1 and (prefix, count) not in _WARNED:
        _WARNED.add((prefix, count))
        logger.warning(
            "%d scorers with column prefix %r were used in this process; recording the one "
            "used last (%r). Pass scorers=[...] to publish to choose, or give each scorer its "
            "own column_prefix.", count, prefix, getattr(entry["scorer"], "config", None))
    if entry["info"] is None:
        entry["info"] = entry["scorer"].info()
    return entry["info"]


def scorer_infos(ds: "Dataset", *, registry: bool = True) -> dict:
    """{column prefix: provenance} of the scorers behind `ds`'s columns: the recorded one, else
    that of a scorer registered in this process whose columns are all in `ds`."""
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
    write_text(path, json.dumps(redact_mapping(describe()), indent=2, sort_keys=True, default=str))
    return json.loads(path.read_text())


SIDECAR_FORMAT = "hf-selectit-data/1"


def sidecar_path(output: Union[str, "os.PathLike[str]"], fmt: str = "") -> Path:
    """``FOLDER/selectit.json`` for a ``save_to_disk`` folder, ``FILE.parquet.selectit.json``
    beside a parquet/jsonl file."""
    out = Path(output)
    if fmt == "disk" or out.is_dir():
        return out / PROVENANCE_FILENAME
    return out.with_name(out.name + "." + PROVENANCE_FILENAME)


def write_sidecar(ds: "Dataset", output: Union[str, "os.PathLike[str]"], fmt: str) -> Optional[Path]:
    """Write the provenance of `ds` (scorers, selection rule with the kept rows' indices when
    known, fusion) beside (or inside) `output`; nothing when there is none."""
    meta, selection, path = read(ds), selection_of(ds), sidecar_path(output, fmt)
    content = {"format": SIDECAR_FORMAT, "package": {"name": "hf-selectit", "version": __version__},
               "scorers": scorer_infos(ds), "selection": meta.get("selection"), "fusion": meta.get("fusion"),
               "rows": ds.num_rows, "columns": list(ds.column_names)}
    if selection is not None and selection.indices is not None:
        content["kept_rows"] = selection.indices.tolist()
    if not content["scorers"] and not content["selection"] and not content["fusion"]:
        if path.is_file():
            path.unlink()  # an older file's provenance must not describe these rows
        return None
    write_text(path, dumps(content))
    return path


def _provenance_entries(data: Any, *, published: bool) -> dict:
    if not isinstance(data, dict):
        return {}
    out = {key: data[key] for key in ("scorers", "fusion") if isinstance(data.get(key), dict) and data[key]}
    # A published version's selection describes its `default` config, not the `scores` config
    # one may be loading; a data file's own sidecar describes exactly its rows.
    if not published and isinstance(data.get("selection"), dict):
        out["selection"] = data["selection"]
        if isinstance(data.get("kept_rows"), list):
            out["kept_rows"] = data["kept_rows"]
    return out


def read_sidecar(path: Union[str, "os.PathLike[str]"]) -> dict:
    """Metadata entries (scorers, fusion, selection) in the :func:`sidecar_path` of a local
    dataset (or a published local directory), or {}."""
    candidate = sidecar_path(path)
    if not candidate.is_file():
        return {}
    fix = "fix or delete it (it holds the scorers' provenance of the data beside it)."
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{candidate}: not valid JSON ({exc.msg}, line {exc.lineno}); {fix}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{candidate}: expected a JSON object, got {type(data).__name__}; {fix}")
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
        return _provenance_entries(read_published(local), published=True)
    except json.JSONDecodeError:
        return {}


def scorers_of(subset: "Dataset", scored: Optional["Dataset"] = None,
               scorers: Optional[Any] = None, *, expected: Any = ()) -> dict:
    """The provenance of every score column of `subset`/`scored`; explicit `scorers` (objects or
    their ``info()``) win. ``expected`` ({column prefix: score column}) must all be known: else a
    ConfigError naming them and the fix (never a card that cannot name the model)."""
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
            "beside the data.")
    return infos


def _common(infos: Mapping[str, Mapping], key: str) -> Any:
    """The value of `key` shared by every scorer, or {prefix: value} when they differ."""
    values = {prefix: info.get(key) for prefix, info in infos.items() if key in info}
    if not values:
        return None
    distinct = {json.dumps(v, sort_keys=True, default=str) for v in values.values()}
    return next(iter(values.values())) if len(distinct) == 1 else values


def build_provenance(subset: "Dataset", *, version: str, scored: Optional["Dataset"] = None,
                     source: SourceLike = None, repo_id: Optional[str] = None, branch: Optional[str] = None,
                     files: Optional[list] = None, history: Optional[list] = None,
                     now: Optional[_dt.datetime] = None, scorers: Optional[Mapping] = None) -> dict:
    """The `selectit.json` content of one published version: `subset` and `scored` (the full
    scored rows, when published alongside); `source` (:func:`parse_source`; else the fingerprint
    of the rows identifies it); `history` (earlier versions, local publishing); `scorers`
    (:func:`scorers_of`; None: what the data carries or this process registered).

    Example:
        >>> prov = build_provenance(subset, version="v1.0", scored=ds, source="tatsu-lab/alpaca")
        >>> prov["rows"]
        {'subset': 10400, 'scored': 52002}
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    meta, sub_meta = read(scored) or read(subset), read(subset)
    if scorers is None:
        scorers = scorers_of(subset, scored)
    chosen = selection_of(subset) or selection_of(scored)
    selection = chosen.rule if chosen is not None else None
    src = parse_source(source)
    src["fingerprint"] = dataset_fingerprint(scored if scored is not None else subset)
    return {
        "format": FORMAT, "version": version,
        "created_at": now.astimezone(_dt.timezone.utc).isoformat(timespec="seconds"),
        "package": {"name": "hf-selectit", "version": __version__},
        "repo_id": repo_id, "branch": branch, "source": src, "scorers": scorers,
        **{key: _common(scorers, key) for key in ("prompts", "prompt_set", "alpha", "normalization")},
        "selection": selection, "fusion": {**meta.get("fusion", {}), **sub_meta.get("fusion", {})} or None,
        "rows": {"subset": subset.num_rows, "scored": scored.num_rows if scored is not None else None},
        "validation": _validation(meta, scored, selection), "columns": list(subset.column_names),
        "files": sorted(files or []), "history": list(history or []),
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
    return json.dumps(redact_mapping(provenance), indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def write_published(provenance: Mapping, folder: Union[str, "os.PathLike[str]"]) -> None:
    """Write a version's ``selectit.json`` into the folder being staged."""
    (Path(folder) / PROVENANCE_FILENAME).write_text(dumps(provenance), encoding="utf-8")


def read_published(path: Union[str, "os.PathLike[str]"]) -> Optional[dict]:
    """A published version's ``selectit.json`` (a folder holding it, or the file), or None; a
    ValueError when it is not valid JSON."""
    p = Path(path)
    p = p / PROVENANCE_FILENAME if p.is_dir() else p
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
