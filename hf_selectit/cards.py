"""Dataset cards of published SelectIT subsets.

The card is rendered with `huggingface_hub.DatasetCard.from_template` from the Jinja template
`selective_dataset.md` shipped in `hf_selectit.dataset_cards`. Its YAML header carries license,
language, task categories, size category, source datasets, tags, pretty name and the `configs`
that make `load_dataset(repo)` read `data/` (default) and `load_dataset(repo, "scores")` read
`scores/`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from .errors import ConfigError
from .models import is_embedded

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset
    from huggingface_hub import DatasetCard

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "selective_dataset.md"
TAGS = ("selectit", "data-selection", "instruction-tuning")
DEFAULT_TASK_CATEGORIES = ("text-generation",)
DEFAULT_LANGUAGE = ("en",)
SCORE_COLUMN_CANDIDATES = ("selectit_model_score", "selectit_sentence_score")

SELECTIT_BIBTEX = """@inproceedings{liu2024selectit,
  title     = {SelectIT: Selective Instruction Tuning for LLMs via Uncertainty-Aware Self-Reflection},
  author    = {Liu, Liangxin and Liu, Xuebo and Wong, Derek F. and Li, Dongfang and Wang, Ziyi and Hu, Baotian and Zhang, Min},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024},
  eprint    = {2402.16705},
  archivePrefix = {arXiv}
}"""

# Keys of `card_data` that steer the body rather than the YAML header.
_BODY_KEYS = ("reproduce_command",)

_SIZE_BOUNDS = (
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"),
)


def template_path() -> str:
    """Path of the card template, from the installed package (wheel or editable install).

    Example:
        >>> template_path().endswith("selective_dataset.md")
        True
    """
    from importlib import resources

    try:
        root = resources.files("hf_selectit.dataset_cards")
    except ModuleNotFoundError:
        # A source checkout on sys.path without `pip install`: the folder sits next to the package.
        root = Path(__file__).resolve().parent.parent / "dataset_cards"
    path = root.joinpath(TEMPLATE_NAME)
    if not path.is_file():
        raise FileNotFoundError(
            f"Card template {TEMPLATE_NAME!r} not found in {root}; reinstall hf-selectit "
            "(`pip install -e .` from a checkout)."
        )
    return os.fspath(path)


def size_category(n_rows: int) -> str:
    """The Hub's `size_categories` bucket of a row count.

    Example:
        >>> size_category(10400)
        '10K<n<100K'
    """
    for bound, label in _SIZE_BOUNDS:
        if n_rows < bound:
            return label
    return "n>1T"


def score_column(*candidates: Optional["Dataset"], rule: Optional[Mapping] = None) -> Optional[str]:
    """The score column a subset was selected by: the rule's, else the fused, else the sentence score."""
    names = set()
    for ds in candidates:
        if ds is not None:
            names.update(ds.column_names)
    if rule and rule.get("column") in names:
        return rule["column"]
    for name in SCORE_COLUMN_CANDIDATES:
        if name in names:
            return name
    custom = sorted(n for n in names if n.endswith("sentence_score"))
    return custom[0] if custom else None


def load_source_card(source_id: Optional[str], *, token: Optional[str] = None) -> Optional["DatasetCard"]:
    """The dataset card of the source dataset, or None when it has none or cannot be reached.

    `source_id` may be a Hub dataset id or a local directory holding a README.md.
    """
    if not source_id:
        return None
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    from .io import is_local_path

    local = Path(os.path.expanduser(source_id))
    try:
        if is_local_path(source_id, for_output=True):
            readme = local / "README.md"
            # A data file (json, parquet, ...) or a missing path carries no card.
            return DatasetCard.load(readme) if readme.is_file() else None
        return DatasetCard.load(source_id, repo_type="dataset", token=token)
    except (EntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        # The source card only supplies defaults (license, language); the user can give them.
        logger.info("No dataset card read from source %r (%s).", source_id, type(exc).__name__)
        return None


def _card_field(card: Optional["DatasetCard"], key: str) -> Any:
    if card is None or card.data is None:
        return None
    return card.data.to_dict().get(key)


def resolve_license(
    *, user_license: Optional[str], source_card: Optional["DatasetCard"], source_id: Optional[str]
) -> tuple[str, str]:
    """Pick the license of the subset: the user's when given, else the source card's.

    Returns:
        (license, where it came from).

    Raises:
        ConfigError: neither the user nor the source card gives one.
    """
    source_license = _card_field(source_card, "license")
    if user_license:
        if source_license and source_license != user_license:
            logger.warning("license=%r differs from the source card's license %r; using %r.",
                           user_license, source_license, user_license)
        return user_license, "given by the publisher"
    if source_license:
        return source_license, f"taken from the card of {source_id}"
    where = (f"No license could be read from the card of the source dataset {source_id!r} (it has "
             "none, or the card could not be reached)") if source_id else (
        "No source dataset was given (source=...), so no license could be read from its card")
    raise ConfigError(
        f"{where}. Pass the license of the subset, e.g. card_data={{'license': 'cc-by-nc-4.0'}} "
        "(or --license on the CLI); it must be compatible with the source's terms."
    )


def _as_dict(card_data: Any) -> dict:
    from huggingface_hub import DatasetCardData

    if isinstance(card_data, DatasetCardData):
        return dict(card_data.to_dict())
    return dict(card_data or {})


def card_defaults(*, source_id: Optional[str], card_data: Any = None, token: Optional[str] = None) -> dict:
    """License and language of the card, from the user's `card_data` or the source dataset's card.

    Called before anything is written, so a missing license fails a publish early.

    Returns:
        {"license": ..., "license_origin": ..., "language": [...]}.

    Raises:
        ConfigError: neither `card_data` nor the source card gives a license.

    Example:
        >>> card_defaults(source_id=None, card_data={"license": "mit"})["license"]
        'mit'
    """
    extra = _as_dict(card_data)
    source_card = load_source_card(source_id, token=token)
    license_, origin = resolve_license(
        user_license=extra.get("license"), source_card=source_card, source_id=source_id)
    language = extra.get("language") or _card_field(source_card, "language") or list(DEFAULT_LANGUAGE)
    return {"license": license_, "license_origin": origin, "language": language}


def split_info(config_name: str, ds: "Dataset", *, download_size: int) -> dict:
    """The YAML `dataset_info` entry of one config: row count and sizes of its `train` split.

    Besides informing the Hub viewer, the sizes make `datasets`' cache key of a local directory
    change when a new version replaces the files in place (its key hashes the card, not the
    file times).
    """
    num_bytes = int(ds.data.nbytes * ds.num_rows / max(1, ds.data.num_rows))
    return {
        "config_name": config_name,
        "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": ds.num_rows}],
        "download_size": int(download_size),
        "dataset_size": num_bytes,
    }


def _scorer_rows(scorers: Mapping[str, Mapping]) -> list[dict]:
    rows = []
    for prefix, info in sorted(scorers.items()):
        params = info.get("parameter_count")
        rows.append({
            "prefix": prefix,
            "model": info.get("model_id") or info.get("model") or "embedded SmolLM2-135M-Instruct",
            "revision": f"`{info['revision']}`" if info.get("revision") else "-",
            "parameters": f"{params:,}" if isinstance(params, int) else (params or "-"),
        })
    return rows


def _selection_summary(rule: Optional[Mapping], n_subset: int, n_scored: Optional[int]) -> str:
    if not rule:
        kept = f"{n_subset} of {n_scored} rows" if n_scored is not None else f"{n_subset} rows"
        return f"{kept} (chosen outside hf-selectit's select step: the rows carry no selection rule)"
    parts = [str(rule.get("rule") or rule.get("method") or "top")]
    for key in ("ratio", "k", "threshold", "seed", "column", "by"):
        if rule.get(key) is not None:
            parts.append(f"{key}={rule[key]}")
    text = ", ".join(parts)
    if n_scored is not None:
        text += f"; kept {n_subset} of {n_scored} rows"
    return text


def row_order_text(rule: Optional[Mapping]) -> str:
    """How the published rows are ordered, in words (METHOD.md section 5 asks the card to say)."""
    order = (rule or {}).get("order")
    if order == "original":
        return "original order of the source dataset (not sorted by score)"
    if order == "score":
        return "by score, best first (ties: higher original index first), as the SelectIT authors"
    return "as given (the rows carry no selection rule)"


def _py(value: Any) -> str:
    return repr(value)


def reproduce_python(provenance: Mapping, *, repo_id: str, version: str) -> str:
    """A Python snippet that re-creates the version from its provenance with the public API."""
    src = provenance.get("source") or {}
    scorers = provenance.get("scorers") or {}
    rule = provenance.get("selection") or {}
    lines = ["from datasets import load_dataset",
             "from hf_selectit import SelectITScorer, fuse_models, publish, select_top", ""]
    load_args = [_py(src.get("id") or "<source dataset>")]
    if src.get("revision"):
        load_args.append(f"revision={_py(src['revision'])}")
    lines.append(f"ds = load_dataset({', '.join(load_args)}, split='train')")
    for prefix, info in sorted(scorers.items()):
        model = info.get("model_id") or info.get("model")
        # The embedded model is the scorer's default: no argument reproduces it.
        args = [] if is_embedded(model) else [_py(model)]
        for key in ("revision", "prompts", "prompt_set", "alpha", "normalization", "template"):
            if info.get(key) is not None:
                value = info[key]
                if key == "prompts" and isinstance(value, (list, tuple)):
                    value = len(value)
                args.append(f"{key}={_py(value)}")
        args.append(f"column_prefix={_py(prefix)}")
        lines.append(f"ds = ds.map(SelectITScorer({', '.join(args)}), batched=True)")
    column = rule.get("column")
    if column and column.endswith("model_score") and len(scorers) > 1:
        cols = [f"{p}sentence_score" for p in sorted(scorers)]
        lines.append(f"ds = fuse_models(ds, columns={_py(cols)}, output={_py(column)})")
    if rule.get("method") == "random":
        sel_args = [f"{k}={_py(rule[k])}" for k in ("ratio", "k", "seed") if rule.get(k) is not None]
        lines[1] = lines[1].replace("select_top", "select_random")
        lines.append(f"subset = select_random(ds, {', '.join(sel_args)})")
    else:
        sel_args = [f"{k}={_py(rule[k])}" for k in ("ratio", "k", "threshold", "column", "by", "order")
                    if rule.get(k) is not None]
        lines.append(f"subset = select_top(ds, {', '.join(sel_args)})")
    lines.append(f"publish(subset, {_py(repo_id)}, version={_py(version)}, scored=ds)")
    return "\n".join(lines)


def build_card(
    subset: "Dataset",
    *,
    repo_id: str,
    version: str,
    provenance: Mapping,
    scored: Optional["Dataset"] = None,
    card_data: Optional[Mapping] = None,
    changelog: Optional[list] = None,
    histogram: Optional[str] = None,
    token: Optional[str] = None,
    defaults: Optional[Mapping] = None,
    is_local: bool = False,
    dataset_info: Optional[list] = None,
) -> "DatasetCard":
    """Render the dataset card of one published version.

    Args:
        subset: The published rows.
        repo_id: Hub repo id or local directory (used in the usage snippet).
        version: The version being published.
        provenance: The `selectit.json` content of this version (`provenance.build_provenance`).
        scored: The full scored dataset, when it is published as the `scores` config.
        card_data: Extra card fields (a dict or `DatasetCardData`): YAML keys such as `license`,
            `language`, `pretty_name`, `task_categories`, extra `tags`; and `reproduce_command`
            (the CLI line shown under "Reproduce").
        changelog: Earlier versions, newest first: dicts with version, date, rows, commit.
        histogram: File name of the histogram PNG in the repo, or None when there is none.
        token: Used only to read the source dataset's card on the Hub.
        defaults: The result of `card_defaults` when already computed.
        is_local: `repo_id` is a local directory (the usage snippet has no revision).
        dataset_info: The YAML `dataset_info` entries (split sizes per config), see
            `split_info`.

    Returns:
        A `huggingface_hub.DatasetCard`.

    Raises:
        ConfigError: no license is given and the source card has none.

    Example:
        >>> card = build_card(subset, repo_id="me/Selective-Alpaca", version="v1.0",
        ...                   provenance=prov, card_data={"license": "cc-by-nc-4.0"})
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    extra = _as_dict(card_data)
    body = {k: extra.pop(k) for k in _BODY_KEYS if k in extra}
    source = provenance.get("source") or {}
    source_id = source.get("id")
    if defaults is None:
        defaults = card_defaults(source_id=source_id, card_data=card_data, token=token)
    extra.pop("license", None)
    extra.pop("language", None)
    license_, license_origin, language = defaults["license"], defaults["license_origin"], defaults["language"]
    tags = list(TAGS) + [t for t in (extra.pop("tags", None) or []) if t not in TAGS]
    name = repo_id.rstrip("/").replace("\\", "/").split("/")[-1]
    pretty_name = extra.pop("pretty_name", None) or name.replace("_", " ").replace("-", " ").strip() or name
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    if scored is not None:
        configs.append({"config_name": "scores", "data_files": [{"split": "train", "path": "scores/train-*"}]})
    if "configs" in extra:
        # The configs must match the files this publisher writes, or load_dataset breaks.
        logger.warning("card_data['configs'] is ignored: the configs follow the published files.")
        extra.pop("configs")
    fields = {
        "license": license_,
        "language": language,
        "task_categories": list(DEFAULT_TASK_CATEGORIES),
        "size_categories": [size_category(subset.num_rows)],
        "source_datasets": [source_id] if source_id else None,
        "pretty_name": pretty_name,
        "tags": tags,
        "configs": configs,
    }
    if dataset_info:
        fields["dataset_info"] = list(dataset_info)
    fields.update(extra)
    data = DatasetCardData(**fields)

    rule = provenance.get("selection")
    scorers = provenance.get("scorers") or {}
    prompts = provenance.get("prompts")
    n_scored = scored.num_rows if scored is not None else None
    report_md = None
    if scored is not None:
        column = score_column(scored, subset, rule=rule)
        if column is not None:
            from .report import selection_report

            report_md = selection_report(scored, subset, column=column,
                                         by=(rule or {}).get("by")).to_markdown()
    entries = [{"version": version, "date": provenance.get("created_at", ""), "rows": subset.num_rows,
                "commit": "this version"}]
    entries += [e for e in (changelog or []) if e.get("version") != version]
    source_url = None
    if source_id and not Path(os.path.expanduser(source_id)).exists():
        from huggingface_hub import constants

        source_url = f"{constants.ENDPOINT}/datasets/{source_id}"
    return DatasetCard.from_template(
        card_data=data,
        template_path=template_path(),
        pretty_name=pretty_name,
        repo_id=repo_id,
        version=version,
        created_at=provenance.get("created_at", ""),
        source_id=source_id,
        source_url=source_url or source_id,
        source_revision=source.get("revision"),
        source_fingerprint=source.get("fingerprint"),
        n_subset=subset.num_rows,
        n_scored=n_scored,
        row_order=row_order_text(rule),
        license=license_,
        license_origin=license_origin,
        scorers=_scorer_rows(scorers),
        n_prompts=len(prompts) if isinstance(prompts, (list, tuple)) else (prompts or "-"),
        prompts=prompts if isinstance(prompts, (list, tuple)) else None,
        prompt_set=provenance.get("prompt_set"),
        alpha=provenance.get("alpha") if provenance.get("alpha") is not None else "-",
        normalization=provenance.get("normalization") or "-",
        selection_summary=_selection_summary(rule, subset.num_rows, n_scored),
        selection_items=sorted((k, v) for k, v in (rule or {}).items()
                               if v is not None and not isinstance(v, (list, dict))),
        report_markdown=report_md,
        histogram=histogram,
        has_scores=scored is not None,
        is_local=is_local,
        changelog=entries,
        reproduce_command=body.get("reproduce_command"),
        reproduce_python=reproduce_python(provenance, repo_id=repo_id, version=version),
        bibtex=SELECTIT_BIBTEX,
        package_version=(provenance.get("package") or {}).get("version", ""),
    )
