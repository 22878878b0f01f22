"""`selectit.json`: what a published version was made from and how.

The file is committed next to the data so that a version can be audited and reproduced without
the card: source dataset (id + revision, or the dataset fingerprint when there is no id), every
scorer's provenance (model id, revision, parameter count, prompts, alpha, normalisation), the
selection rule, row counts, the package version and the UTC time. It never holds a token.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
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
    """What a data file's ``selectit.json`` holds: its scorers, selection rule and fusion."""
    from .metadata import read_metadata, scorer_infos

    meta = read_metadata(ds)
    return {
        "format": SIDECAR_FORMAT,
        "package": {"name": "hf-selectit", "version": __version__},
        "scorers": scorer_infos(ds),
        "selection": meta.get("selection"),
        "fusion": meta.get("fusion"),
        "rows": ds.num_rows,
        "columns": list(ds.column_names),
    }


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
               scorers: Optional[Any] = None) -> dict:
    """The provenance of every score column of `subset`/`scored`, or a ConfigError naming the
    columns without any (never a card that cannot name the model).

    Args:
        subset, scored: the published rows and the full scored dataset.
        scorers: scorer objects (or their ``info()`` dicts) given explicitly; they win.

    Raises:
        ConfigError: a score column whose scorer is known neither from the data nor from this
            process, with the fix.
    """
    from .metadata import score_prefixes, scorer_infos

    infos: dict = {}
    for ds in (scored, subset):
        if ds is not None:
            infos.update(scorer_infos(ds))
    for item in (scorers or []):
        info = item if isinstance(item, Mapping) else item.info()
        infos[info["column_prefix"]] = dict(info)
    columns = set(subset.column_names) | (set(scored.column_names) if scored is not None else set())
    missing = [p + "sentence_score" for p in score_prefixes(sorted(columns)) if p not in infos]
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
    scorers: Optional[Any] = None,
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
        scorers: Scorers (or their info dicts) to describe score columns with, instead of what
            the data carries or this process registered.

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
    scorers = scorers_of(subset, scored, scorers)
    from .select import selection_rule

    selection = selection_rule(subset) or (selection_rule(scored) if scored is not None else None)
    fusion = {**meta.get("fusion", {}), **sub_meta.get("fusion", {})} or None
    src = parse_source(source)
    base = scored if scored is not None else subset
    from .metadata import dataset_fingerprint

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
