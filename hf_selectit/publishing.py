"""Publish a selected subset as a versioned dataset (Hub repo or local directory), and load it back.

One version = one commit holding `data/` (the subset, `default` config), `scores/` (the full
scored dataset, `scores` config), `README.md` (the card), `selectit.json` (provenance) and
`selectit_histogram.png`, plus the tag `version`, created last: a version without its tag does not
exist, and a failure before the tag raises `PublishError` saying what was left behind.

`repo_id` is a local directory by `hf_selectit.io.is_local_path`'s rule (write a new one named like
a repo id as `./user/name`); it holds the latest version in place, earlier ones are recorded in its
`selectit.json` and changelog.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from . import cards, provenance
from .atomic import recover, swap_into_place, temp_name
from .errors import ConfigError, PublishError, VersionExistsError
from .io import is_local_path
from .methods import columns as schema
from .plots import HISTOGRAM_FILENAME, VALIDATION_PLOT_FILENAME, score_histogram, selection_cutoff
from .redaction import redact, redact_mapping, redact_yaml
from .report import selection_report
from .versions import VERSION_RE, check_version, version_key  # noqa: F401  (public here too)

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset, DatasetDict
    from huggingface_hub import DatasetCard, HfApi

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
SPLIT = "train"
SHARD_BYTES = 500 * 1024 * 1024
# Files and folders a publish owns; everything else in a repo or directory is left alone.
MANAGED = ("data", "scores", "README.md", provenance.PROVENANCE_FILENAME, HISTOGRAM_FILENAME,
           VALIDATION_PLOT_FILENAME, cards.RUN_CONFIG_FILENAME)

PathOrId = Union[str, os.PathLike]


@dataclass(frozen=True)
class PublishResult:
    """What a publish created."""

    repo_id: str  # the Hub repo id, or the local directory (absolute path)
    version: str
    local: bool
    commit: Optional[str]  # the commit the tag points to (None for a local directory)
    branch: Optional[str]  # None: the default branch / local
    url: str  # the Hub URL at the tag, or the directory
    files: tuple = field(default_factory=tuple)  # this version's files, relative to the repo root
    rows: int = 0  # rows in the `default` config
    scored_rows: Optional[int] = None  # rows in the `scores` config (None when not published)
    replaced: bool = False  # an existing version was overwritten


@dataclass(frozen=True)
class _Version:
    """One version to publish, checked and prepared by `publish`."""

    subset: "Dataset"
    scored: Optional["Dataset"]
    version: str
    source: Any
    card_data: Any
    defaults: dict  # `card_facts`, plus the run config's text under "run_config"

    def result(self, repo_id: str, **kwargs: Any) -> PublishResult:
        return PublishResult(repo_id=repo_id, version=self.version, rows=self.subset.num_rows,
                             scored_rows=self.scored.num_rows if self.scored is not None else None, **kwargs)


# ----------------------------------------------------------------------------- small helpers


def is_local_target(repo_id: PathOrId) -> bool:
    """Whether `repo_id` names a local directory rather than a Hub repo (`io.is_local_path`)."""
    if not isinstance(repo_id, (str, os.PathLike)) or not os.fspath(repo_id):
        raise ConfigError(f"repo_id={repo_id!r} is invalid: expected 'user/name' or a local directory.")
    return is_local_path(repo_id, for_output=True)


def _resolve_token(token: Optional[str]) -> Optional[str]:
    from huggingface_hub import get_token

    return token or get_token()  # HF_TOKEN first, then the stored `hf auth login` token


def _hub_errors() -> tuple:
    """Exceptions that mean "the Hub request failed" (HTTP status, connection, timeout)."""
    from huggingface_hub.errors import HfHubHTTPError

    # huggingface_hub 1.x uses httpx, 2.x its fork httpx2; transport errors derive from either.
    transport = [importlib.import_module(name).HTTPError for name in ("httpx2", "httpx")
                 if importlib.util.find_spec(name)]
    return (HfHubHTTPError, OSError, *transport)


def _check_dataset(value: Any, name: str) -> None:
    from datasets import Dataset

    if not isinstance(value, Dataset):
        hint = " Pass one split, e.g. ds['train']." if hasattr(value, "keys") else ""
        raise ConfigError(f"{name} must be a datasets.Dataset, got {type(value).__name__}.{hint}")


def _run_config_text(run_config: Any) -> Optional[str]:
    """The text of the run config to upload (read now, so a missing file fails before writing)."""
    if run_config is None:
        return None
    if isinstance(run_config, Mapping):
        import yaml

        return yaml.safe_dump(redact_mapping(dict(run_config)), sort_keys=False, allow_unicode=True)
    if not isinstance(run_config, (str, os.PathLike)):
        raise ConfigError(f"run_config={run_config!r} is invalid: expected a YAML file path, a mapping "
                          "or None.")
    path = Path(os.fspath(run_config)).expanduser()
    if not path.is_file():
        raise ConfigError(f"run_config={os.fspath(run_config)!r} is not a file: pass the YAML file "
                          "the run was made with, a mapping, or None.")
    # Uploaded for readers: a token in it (model_kwargs: {token: ...}) must not be.
    return redact_yaml(path.read_text(encoding="utf-8"))


def _check_not_empty(subset: "Dataset", scored: Optional["Dataset"]) -> None:
    # A version with no rows cannot be loaded back (`load_dataset` finds no data), so it is
    # refused up front instead of being committed and tagged.
    if subset.num_rows == 0:
        chosen = provenance.selection_of(subset)
        rule = chosen.rule if chosen is not None else {}
        keys = ("rule", "ratio", "k", "threshold", "column")
        how = (" (selected by " + ", ".join(f"{k}={rule[k]!r}" for k in keys if rule.get(k) is not None)
               + f" from {rule.get('rows_in')} rows)") if rule else ""
        raise ConfigError(
            f"The subset to publish has no rows{how}; nothing was written. Select with a lower "
            "threshold or a larger ratio/k, and check the status column: rows whose scoring "
            "failed are never selected.")
    if scored is not None and scored.num_rows == 0:
        raise ConfigError("The scored dataset (scored=) has no rows; nothing was written. Pass the "
                          "dataset the subset was selected from, or leave scored out.")


def _refuse_existing(version: str, names: list, where: str, *, overwrite: bool) -> None:
    if version in names and not overwrite:
        raise VersionExistsError(f"Version {version!r} already exists in {where} (versions: {names}). "
                                 "Pass overwrite=True to replace it, or choose a new version.")


def _write_parquet(ds: "Dataset", folder: Path) -> list[str]:
    """Write `ds` as `train-0000i-of-0000n.parquet` shards of about SHARD_BYTES, in row order."""
    folder.mkdir(parents=True, exist_ok=True)
    # A selected subset shares its parent's table; estimate its own size from its share of rows.
    n = max(1, math.ceil(ds.data.nbytes * ds.num_rows / max(1, ds.data.num_rows) / SHARD_BYTES))
    names = []
    for i in range(n):
        name = f"{SPLIT}-{i:05d}-of-{n:05d}.parquet"
        shard = ds.shard(num_shards=n, index=i, contiguous=True) if n > 1 else ds
        shard.to_parquet(os.fspath(folder / name))
        names.append(f"{folder.name}/{name}")
    return names


def _size(root: Path, files: list[str]) -> int:
    return sum((root / f).stat().st_size for f in files)


def _stage(workdir: Path, job: _Version, *, repo_id: str, branch: Optional[str], changelog: list,
           is_local: bool) -> list[str]:
    """Write every file of one version into `workdir`; return their repo-relative paths. A local
    directory's provenance carries the earlier versions (a Hub repo keeps them as tags)."""
    subset, scored, version = job.subset, job.scored, job.version
    files = _write_parquet(subset, workdir / "data")
    info = [cards.split_info("default", subset, download_size=_size(workdir, files))]
    run_config = job.defaults.get("run_config")
    if run_config is not None:
        (workdir / cards.RUN_CONFIG_FILENAME).write_text(run_config, encoding="utf-8")
        files.append(cards.RUN_CONFIG_FILENAME)
    if scored is not None:
        score_files = _write_parquet(scored, workdir / "scores")
        info.append(cards.split_info("scores", scored, download_size=_size(workdir, score_files)))
        files += score_files
    prov = provenance.build_provenance(
        subset, version=version, scored=scored, source=job.source, repo_id=repo_id, branch=branch,
        history=changelog if is_local else [])
    _stage_validation_plot(prov, workdir, files)
    rule = prov.get("selection") or {}
    column = schema.resolve(scored if scored is not None else subset, rule=rule, required=False)
    if column is not None and column in subset.column_names:
        kept_scores = subset[column]
        score_histogram(
            all_scores=scored[column] if scored is not None and column in scored.column_names else None,
            kept_scores=kept_scores, path=workdir / HISTOGRAM_FILENAME, column=column,
            cutoff=selection_cutoff(rule, kept_scores) if rule.get("column") == column else None)
        files.append(HISTOGRAM_FILENAME)
    else:
        logger.warning("No score column in the subset; the card of %s has no histogram.", version)
    report = (selection_report(scored, subset, column=column, by=rule.get("by")).to_markdown()
              if scored is not None and column is not None else None)
    files += ["README.md", provenance.PROVENANCE_FILENAME]
    prov["files"] = sorted(files)
    card = cards.build_card(
        subset, repo_id=repo_id, version=version, provenance=prov, scored=scored, card_data=job.card_data,
        changelog=changelog, histogram=HISTOGRAM_FILENAME if HISTOGRAM_FILENAME in files else None,
        report_markdown=report, defaults=job.defaults, is_local=is_local, dataset_info=info,
        run_config=cards.RUN_CONFIG_FILENAME if run_config is not None else None)
    (workdir / "README.md").write_text(redact(str(card)), encoding="utf-8")
    provenance.write_published(prov, workdir)
    return sorted(files)


def _stage_validation_plot(prov: dict, workdir: Path, files: list) -> None:
    """Publish the recorded validation's figure beside the card: the published provenance names the
    file in the repo, not where it was written here (that says nothing to a reader and is not theirs)."""
    local = (prov.get("validation") or {}).pop("plot", None)
    if local and os.path.isfile(local):
        shutil.copyfile(local, workdir / VALIDATION_PLOT_FILENAME)
        files.append(VALIDATION_PLOT_FILENAME)
        prov["validation"]["plot"] = VALIDATION_PLOT_FILENAME
    elif local:
        logger.warning("The validation figure %s is gone; the card shows the table only.", local)
# ----------------------------------------------------------------------------- local directory


def _read_local_provenance(target: Path) -> Optional[dict]:
    return provenance.read_published(target) if target.is_dir() else None


def _changelog_entry(version: Any, prov: Mapping, commit: str) -> dict:
    return {"version": version, "date": prov.get("created_at", ""),
            "rows": (prov.get("rows") or {}).get("subset", ""), "commit": commit}


def _local_versions(prov: Optional[dict]) -> list[dict]:
    """Versions recorded in a directory: the current one first, then its history."""
    if not prov:
        return []
    return [_changelog_entry(prov.get("version"), prov, "-")] + list(prov.get("history") or [])


def _publish_local(job: _Version, target: Path, *, display: str, overwrite: bool) -> PublishResult:
    target, version = target.expanduser().resolve(), job.version
    # A publish killed between its two renames left the previous version moved aside: put it
    # back (with its history) before reading what the folder holds; drop dead publishes' leftovers.
    recover(target)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"repo_id={os.fspath(target)!r} is a file; expected a directory (or a Hub "
                          "repo id).")
    existing = _read_local_provenance(target)
    if target.is_dir() and existing is None and any(target.iterdir()):
        raise ConfigError(
            f"Directory {os.fspath(target)!r} is not empty and holds no {provenance.PROVENANCE_FILENAME}: "
            "refusing to write into it. Choose a new or empty directory.")
    versions = _local_versions(existing)
    names = [v["version"] for v in versions]
    _refuse_existing(version, names, f"{os.fspath(target)!r}", overwrite=overwrite)
    history = [v for v in versions if v["version"] != version]
    target.parent.mkdir(parents=True, exist_ok=True)
    files = _swap_in_local(target, version=version, previous=names[0] if names else None,
                           build=lambda stage: _stage(stage, job, repo_id=display, branch=None,
                                                      changelog=history, is_local=True))
    logger.info("Published %s (%d rows) to %s", version, job.subset.num_rows, target)
    return job.result(os.fspath(target), local=True, commit=None, branch=None, url=target.as_uri(),
                      files=tuple(files), replaced=version in names)


def _carry_over(source: Path, dest: Path) -> None:
    """Put `source` (a file or folder the publish does not own) into the new version's folder:
    hard links where the filesystem allows (no copy of the data), copies elsewhere."""
    if source.is_symlink():
        os.symlink(os.readlink(source), dest)
    elif source.is_dir():
        shutil.copytree(source, dest, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(os.fspath(source), os.fspath(dest))


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _swap_in_local(target: Path, *, version: str, previous: Optional[str], build: Any) -> list[str]:
    """All-or-nothing local publish: build the new version (and carry over the folder's other
    files) in a temporary sibling folder, then swap the folders (:mod:`hf_selectit.atomic`). A
    failure leaves the previous version complete and raises PublishError saying so."""
    new = temp_name(target, "new")
    step = "writing the files of the version"
    try:
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        files = build(new)
        if target.is_dir():
            step = "carrying over the folder's other files"
            for entry in target.iterdir():
                if entry.name not in MANAGED:
                    _carry_over(entry, new / entry.name)
        step = f"moving the new version into {target}"
        swap_into_place(new, target)
    except BaseException as exc:
        # Not a filesystem failure (a bad card value, Ctrl-C, ...) is raised as it is; either way
        # the previous version is untouched and only the half-built folder goes.
        shutil.rmtree(new, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        if previous is not None:
            state = (f" The previous version {previous} is unchanged and complete in {target} "
                     f"(load_dataset({os.fspath(target)!r}) reads it); nothing of {version} was kept.")
        else:
            state = f" Nothing of {version} was kept; {target} holds no published version."
        raise PublishError(f"Publishing {version} to {target} failed while {step}: "
                           f"{type(exc).__name__}: {exc}.{state}") from exc
    return files


# ----------------------------------------------------------------------------- Hub


def _version_tags(refs: Any) -> dict[str, str]:
    """The version tags (name -> commit) of a repo's `list_repo_refs`."""
    return {t.name: t.target_commit for t in refs.tags if VERSION_RE.fullmatch(t.name)}


def _hub_changelog(api: "HfApi", repo_id: str, tags: Mapping[str, str]) -> list[dict]:
    """Earlier versions, newest first, from each tag's selectit.json (date and row count)."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    entries = []
    for name in sorted(tags, key=version_key, reverse=True):
        prov: dict = {}
        try:
            prov = provenance.read_published(api.hf_hub_download(
                repo_id, provenance.PROVENANCE_FILENAME, repo_type=REPO_TYPE, revision=tags[name])) or {}
        except (EntryNotFoundError, HfHubHTTPError, ValueError) as exc:
            # A tag made by hand (no selectit.json) still belongs in the changelog.
            logger.info("No provenance at tag %s of %s (%s).", name, repo_id, type(exc).__name__)
        entries.append(_changelog_entry(name, prov, f"`{tags[name][:8]}`"))
    return entries


def _publish_hub(job: _Version, repo_id: str, *, private: bool, token: Optional[str], branch: Optional[str],
                 overwrite: bool) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api, version = HfApi(token=token), job.version
    stage = "creating the repo"
    commit: Optional[str] = None
    old_tag_deleted = False
    tags: dict = {}
    try:
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if branch:
            stage = f"creating branch {branch!r}"
            api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
        stage = "reading the repo's tags"
        # One listing of the refs serves the tags and the branch head: nothing below moves them
        # before the commit, whose parent_commit check catches a concurrent writer.
        refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
        tags = _version_tags(refs)
        _refuse_existing(version, sorted(tags, key=version_key), repo_id, overwrite=overwrite)
        stage = "reading earlier versions"
        changelog = _hub_changelog(api, repo_id, {k: v for k, v in tags.items() if k != version})
        stage = "listing the repo's files"
        head = {b.name: b.target_commit for b in refs.branches}.get(branch or "main")
        existing = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=branch)) if head else set()
        with tempfile.TemporaryDirectory(prefix="selectit-stage-") as tmp:
            workdir = Path(tmp)
            stage = "writing the files of the version"
            files = _stage(workdir, job, repo_id=repo_id, branch=branch, changelog=changelog, is_local=False)
            ops: list = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=os.fspath(workdir / f))
                         for f in files]
            # Files of the previous version that this one does not overwrite (shards, figures):
            # the same MANAGED list as a local folder, so both forms of a publish own alike.
            stale = sorted(f for f in existing if f not in files and f.split("/", 1)[0] in MANAGED)
            ops += [CommitOperationDelete(path_in_repo=f) for f in stale]
            stage = "committing"
            info = api.create_commit(
                repo_id, ops, repo_type=REPO_TYPE, revision=branch, parent_commit=head,
                commit_message=f"Publish {version}: {job.subset.num_rows} rows selected with SelectIT",
                commit_description=f"hf-selectit {version}; provenance in {provenance.PROVENANCE_FILENAME}.")
        commit = info.oid
        if version in tags:
            stage = f"deleting the old tag {version}"
            api.delete_tag(repo_id, tag=version, repo_type=REPO_TYPE)
            old_tag_deleted = True
        stage = f"creating the tag {version}"
        api.create_tag(repo_id, tag=version, revision=commit, repo_type=REPO_TYPE,
                       tag_message=f"hf-selectit {version}")
    except _hub_errors() as exc:
        raise _publish_failure(exc, repo_id=repo_id, version=version, stage=stage, commit=commit,
                               branch=branch, endpoint=api.endpoint, token=token,
                               old_tag_deleted=old_tag_deleted, had_tag=version in tags) from None
    logger.info("Published %s (%d rows) to %s at commit %s", version, job.subset.num_rows, repo_id, commit)
    return job.result(repo_id, local=False, commit=commit, branch=branch, files=tuple(files),
                      url=f"{api.endpoint}/datasets/{repo_id}/tree/{version}", replaced=version in tags)


def _publish_failure(exc: BaseException, *, repo_id, version, stage, commit, branch, endpoint, token,
                     old_tag_deleted, had_tag) -> PublishError:
    cause = f"{type(exc).__name__}: {exc}"
    cause = redact(cause.replace(token, "<hidden>") if token and len(token) >= 4 else cause)
    where = f"Publishing {version} to {repo_id} (Hub at {endpoint}) failed while {stage}: {cause}."
    if commit is None:
        left = f"Nothing was committed and no tag {version} was created"
        left += f"; the existing {version} is unchanged." if had_tag else "."
        fix = " Fix the cause and re-run publish."
    else:
        left = f"Commit {commit} exists on {branch or 'main'} without the tag {version}"
        left += (f"; the previous {version} tag was already deleted." if old_tag_deleted else ".")
        fix = (" Re-run publish" + (" with overwrite=True" if had_tag and not old_tag_deleted else "")
               + " to retry; the untagged commit is harmless.")
    return PublishError(where + " " + left + fix)


# ----------------------------------------------------------------------------- public API


def publish(
    subset: "Dataset",
    repo_id: PathOrId,
    *,
    version: str,
    scored: Optional["Dataset"] = None,
    source: Any = None,
    private: bool = False,
    token: Optional[str] = None,
    branch: Optional[str] = None,
    overwrite: bool = False,
    card_data: Any = None,
    scorers: Optional[Sequence[Any]] = None,
    run_config: Union[str, os.PathLike, Mapping, None] = None,
) -> PublishResult:
    """Publish `subset` as version `version` of a dataset repo (or a local directory).

    Args:
        subset: The selected rows (`default` config, split `train`).
        repo_id: Hub dataset repo id (`user/name`) or a local directory (see the module doc).
        version: Version tag: `v1`, `v1.2` or `v1.2.3` (ASCII digits; `1.2` means `v1.2`).
        scored: The full scored dataset, published as the `scores` config and used for the
            selection report and histogram.
        source: The dataset the rows came from: `user/name`, `user/name@revision` or
            {"id": ..., "revision": ...}. Its card supplies the license when it has one.
        private: Create the Hub repo as private (when it does not exist yet).
        token: Hub token; default `HF_TOKEN`, then the stored login. Never written anywhere.
        branch: Commit to this branch (created when missing) instead of the default branch.
        card_data: Extra card fields (dict or `DatasetCardData`): `license` (required when the
            source card has none), `language`, `pretty_name`, `task_categories`, `tags`, and
            `reproduce_command` (the CLI line shown under "Reproduce").
        scorers: The scorers behind the score columns (objects or their `info()` dicts). Rarely
            needed: the provenance travels with data saved by hf-selectit, and a scorer used in
            this process (`ds.map(scorer, batched=True)`) is found by its column prefix.
        run_config: The `hf-selectit run` configuration the version was made with: a YAML file
            path (uploaded verbatim) or a mapping (written as YAML). It is committed as
            `selectit_run.yaml` and the card's Reproduce section runs it. `hf-selectit run`
            passes its config file.

    Raises:
        ConfigError: bad version, repo_id, dataset type, an empty subset, a missing license, or
            score columns whose scorer is unknown; nothing is written.
        VersionExistsError: the version exists and `overwrite` is False.
        PublishError: a Hub request failed; the message says what exists afterwards.

    Example:
        >>> publish(subset, "me/Selective-Alpaca", version="v1.0", scored=ds,
        ...         source="vicgalle/alpaca-gpt4")
    """
    version = check_version(version)
    _check_dataset(subset, "subset")
    if scored is not None:
        _check_dataset(scored, "scored")
    # Every score column's scorer must be known before anything is written (the card and
    # selectit.json name the model, prompts, alpha and normalisation).
    names = list(subset.column_names) + (list(scored.column_names) if scored is not None else [])
    expected = {p: schema.SCHEMAS["selectit"].with_prefix(p).score
                for p in sorted(set(schema.selectit_prefixes(names)))}
    infos = provenance.scorers_of(subset, scored, scorers, expected=expected)
    if infos:
        subset, scored = (provenance.attach(ds, scorers=infos) if ds is not None else None
                          for ds in (subset, scored))
    _check_not_empty(subset, scored)
    local = is_local_target(repo_id)
    if local and branch:
        raise ConfigError(f"branch={branch!r} applies to Hub repos only; {os.fspath(repo_id)!r} is a local "
                          "directory.")
    resolved = _resolve_token(token)
    src = provenance.parse_source(source)
    # License first: a missing one must fail before anything is created or committed.
    defaults = card_facts(source_id=src["id"], card_data=card_data, token=resolved)
    defaults["run_config"] = _run_config_text(run_config)
    job = _Version(subset, scored, version, source, card_data, defaults)
    if local:
        return _publish_local(job, Path(os.fspath(repo_id)), display=os.fspath(repo_id), overwrite=overwrite)
    return _publish_hub(job, repo_id, private=private, token=resolved, branch=branch, overwrite=overwrite)


def load_source_card(source_id: Optional[str], *, token: Optional[str] = None) -> Optional["DatasetCard"]:
    """The dataset card of the source dataset (a Hub dataset id, or a local directory holding a
    README.md), or None when it has none or cannot be reached."""
    if not source_id:
        return None
    import yaml
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        if is_local_path(source_id, for_output=True):
            readme = Path(os.path.expanduser(source_id)) / "README.md"
            # A data file (json, parquet, ...) or a missing path carries no card.
            return DatasetCard.load(readme) if readme.is_file() else None
        return DatasetCard.load(source_id, repo_type="dataset", token=token)
    except yaml.YAMLError as exc:
        # Read with safe_load: a `!!python/...` tag (or broken YAML) is refused, and said so.
        problem = " ".join(str(exc).split())[:200]
        raise ConfigError(f"source={source_id!r}: the YAML header of its dataset card cannot be read "
                          f"safely ({problem}). Fix the card, or leave the source out and give the "
                          "license yourself.") from exc
    except (EntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        # The source card only supplies defaults (license, language); the user can give them.
        logger.info("No dataset card read from source %r (%s).", source_id, type(exc).__name__)
        return None


def card_facts(*, source_id: Optional[str], card_data: Any = None, token: Optional[str] = None) -> dict:
    """What the card needs from outside the data: license and language (``cards.card_defaults``,
    from `card_data` or the source dataset's card, read here) and whether the source is local.

    Raises:
        ConfigError: neither `card_data` nor the source card gives a license.
    """
    facts = cards.card_defaults(source_id=source_id, card_data=card_data,
                                source_card=load_source_card(source_id, token=token))
    facts["source_is_local"] = bool(source_id) and is_local_path(source_id, for_output=True)
    return facts


def list_versions(repo_id: PathOrId, *, token: Optional[str] = None) -> list[str]:
    """Published versions of a repo or local directory, oldest first."""
    if is_local_target(repo_id):
        versions = _local_versions(_read_local_provenance(Path(os.fspath(repo_id)).expanduser()))
        return sorted((v["version"] for v in versions), key=version_key)
    from huggingface_hub import HfApi

    refs = HfApi(token=_resolve_token(token)).list_repo_refs(os.fspath(repo_id), repo_type=REPO_TYPE)
    return sorted(_version_tags(refs), key=version_key)


def load_selective(
    repo_id: PathOrId,
    version: Optional[str] = None,
    config: str = "default",
    *,
    split: Optional[str] = SPLIT,
    token: Optional[str] = None,
) -> Union["Dataset", "DatasetDict"]:
    """Load a published version with `datasets.load_dataset` (the latest version when None).

    `version` None picks the highest (`v1.10` > `v1.9`); `config` is `default` (the subset) or
    `scores` (every scored row); `split` None returns the DatasetDict.

    Raises:
        ConfigError: the version is malformed or not published (the message lists those that are).

    Example:
        >>> subset = load_selective("me/Selective-Alpaca")            # latest version
        >>> scores = load_selective("me/Selective-Alpaca", "v1.0", "scores")
    """
    from datasets import load_dataset

    if version is not None:
        version = check_version(version)
    if is_local_target(repo_id):
        target = Path(os.fspath(repo_id)).expanduser()
        recover(target)  # a publish killed mid-swap: the previous version comes back first
        prov = _read_local_provenance(target)
        if prov is None:
            raise ConfigError(f"{os.fspath(target)!r} holds no {provenance.PROVENANCE_FILENAME}: not a "
                              "directory written by hf_selectit.publish.")
        if version is not None and version != prov.get("version"):
            raise ConfigError(
                f"Version {version!r} is not in {os.fspath(target)!r}: a local directory holds only its "
                f"latest version, {prov.get('version')!r}. Pass version=None or {prov.get('version')!r}.")
        return load_dataset(os.fspath(target), config, split=split)
    resolved = _resolve_token(token)
    available = list_versions(repo_id, token=resolved)
    if not available:
        raise ConfigError(f"{repo_id} has no version tags (v1, v1.2, ...): publish a version first.")
    if version is None:
        version = available[-1]
    elif version not in available:
        raise ConfigError(f"Version {version!r} is not published in {repo_id}; versions: {available}.")
    return load_dataset(os.fspath(repo_id), config, revision=version, split=split, token=resolved)
