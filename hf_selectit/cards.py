"""Dataset cards of published SelectIT subsets.

This module only renders: it receives the facts (provenance, the source card's license and
language, the selection report, the histogram's file name) that `hf_selectit.publishing` gathers.
The card is `huggingface_hub.DatasetCard.from_template` of the Jinja template
`selective_dataset.md` (shipped in `hf_selectit.dataset_cards`); its YAML header's `configs` make
`load_dataset(repo)` read `data/` (default) and `load_dataset(repo, "scores")` read `scores/`.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import shlex
from dataclasses import MISSING, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from .config import METHOD_CONFIGS
from .errors import ConfigError
# Escaping has one home (the selection and validation reports the card embeds use it too).
from .markdown import code_fence, md_code, md_text  # noqa: F401  (public here too)
from .methods import METHODS
from .methods import columns as schema
from .models import is_embedded
from .select import select_random, select_top

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset
    from huggingface_hub import DatasetCard

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "selective_dataset.md"
TAGS = ("selectit", "data-selection", "instruction-tuning")
# Header fields computed from the published files; `card_data` cannot replace them.
COMPUTED_FIELDS = ("configs", "dataset_info", "size_categories")
RUN_CONFIG_FILENAME = "selectit_run.yaml"
_SIZES = ("1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T")
_cell = partial(md_code, in_table=True)


def template_path() -> str:
    """Path of the card template, from the installed package (wheel or editable install)."""
    from importlib import resources

    try:
        root = resources.files("hf_selectit.dataset_cards")
    except ModuleNotFoundError:
        # A source checkout on sys.path without `pip install`: the folder sits next to the package.
        root = Path(__file__).resolve().parent.parent / "dataset_cards"
    path = root.joinpath(TEMPLATE_NAME)
    if not path.is_file():
        raise FileNotFoundError(f"Card template {TEMPLATE_NAME!r} not found in {root}; reinstall "
                                "hf-selectit (`pip install -e .` from a checkout).")
    return os.fspath(path)


def size_category(n_rows: int) -> str:
    """The Hub's `size_categories` bucket of a row count.

    Example:
        >>> size_category(10400)
        '10K<n<100K'
    """
    for i, label in enumerate(_SIZES):
        if n_rows < 10 ** (i + 3):
            return f"{_SIZES[i - 1]}<n<{label}" if i else f"n<{label}"
    return "n>1T"


def _as_dict(card_data: Any) -> dict:
    from huggingface_hub import DatasetCardData

    return dict(card_data.to_dict() if isinstance(card_data, DatasetCardData) else card_data or {})


def card_defaults(*, source_id: Optional[str], card_data: Any = None,
                  source_card: Optional["DatasetCard"] = None) -> dict:
    """{"license", "license_origin", "language"} of the card, from the user's `card_data` or the
    source dataset's card (read by the publisher: ``publishing.load_source_card``).

    Called before anything is written, so a missing license (ConfigError) fails a publish early.
    Without a language from either, the header has no `language` key (an INFO log says how to set
    it): a wrong language is worse for search than a missing one, and the package cannot tell the
    language of the rows.
    """
    extra, source = _as_dict(card_data), _as_dict(getattr(source_card, "data", None))
    user_license, source_license = extra.get("license"), source.get("license")
    if user_license:
        if source_license and source_license != user_license:
            logger.warning("license=%r differs from the source card's license %r; using %r.",
                           user_license, source_license, user_license)
        license_, origin = user_license, "given by the publisher"
    elif source_license:
        license_, origin = source_license, f"taken from the card of {source_id}"
    else:
        where = (f"No license could be read from the card of the source dataset {source_id!r} (it "
                 "has none, or the card could not be reached)") if source_id else (
            "No source dataset was given (source=...), so no license could be read from its card")
        raise ConfigError(
            f"{where}. Pass the license of the subset, e.g. card_data={{'license': 'cc-by-nc-4.0'}} "
            "(or --license on the CLI); it must be compatible with the source's terms.")
    language = extra.get("language") or source.get("language")
    if not language:
        logger.info("The card gets no `language`: %s. Set it with card_data={'language': ['en']} "
                    "(YAML run config: card_data: {language: [en]}).",
                    "the source card has none" if source_card is not None else "there is no source card")
    return {"license": license_, "license_origin": origin,
            "language": ([language] if isinstance(language, str) else language) or None}


def split_info(config_name: str, ds: "Dataset", *, download_size: int) -> dict:
    """The YAML `dataset_info` entry of one config: features, row count and sizes of its `train`
    split, written by `datasets`' own `DatasetInfosDict.to_dataset_card_data` (as `push_to_hub`
    writes it). The sizes also make `datasets`' cache key of a local directory change when a new
    version replaces its files in place (the key hashes the card, not the file times).
    """
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict
    from huggingface_hub import DatasetCardData

    num_bytes = int(ds.data.nbytes * ds.num_rows / max(1, ds.data.num_rows))
    split = {"name": "train", "num_bytes": num_bytes, "num_examples": ds.num_rows}
    info = DatasetInfo(features=ds.features, splits=SplitDict.from_split_dict([split]),
                       download_size=int(download_size), dataset_size=num_bytes, config_name=config_name)
    holder = DatasetCardData()
    DatasetInfosDict({config_name: info}).to_dataset_card_data(holder)
    entry = holder.to_dict()["dataset_info"]
    entry = dict(entry[0] if isinstance(entry, list) else entry)
    # `datasets` leaves out the name "default"; in a list of configs every entry needs it.
    return {"config_name": config_name, **{k: v for k, v in entry.items() if k != "config_name"}}


# ----------------------------------------------------------------------------- body parts


def _short_model(info: Mapping) -> str:
    return str(info.get("model_id") or info.get("model") or "embedded SmolLM2-135M-Instruct")


def _scorer_row(prefix: str, info: Mapping) -> dict:
    n = info.get("parameter_count")
    return {"prefix": _cell(prefix), "method": md_text(_method_name(info)),
            "model": _cell(_short_model(info)),
            "revision": _cell(info["revision"]) if info.get("revision") else "-",
            "parameters": f"{n:,}" if isinstance(n, int) else md_text(n or "-")}


def _method_name(info: Mapping) -> str:
    method = str(info.get("method") or "selectit")
    if method.lower().startswith("selectit"):
        return "SelectIT"
    return {"alpagasus": "AlpaGasus", "deita": "DEITA", "ifd": "IFD", "rifd": "reversed IFD"}.get(
        method.lower(), method)


def _per_scorer(value: Any, scorers: Mapping[str, Mapping]) -> str:
    """A provenance value shared by every scorer, or `prefix: value; ...` when they differ."""
    if value is None:
        return "not recorded"
    if isinstance(value, dict) and value and set(value) <= set(scorers):
        return "; ".join(f"{md_code(k)}: {md_text(v)}" for k, v in sorted(value.items()))
    return md_text(value)


def _prompt_groups(scorers: Mapping[str, Mapping], prompts: Any) -> list[dict]:
    """Rating prompts as numbered lists: one list when every scorer used the same prompts, else
    one per group of scorers sharing them."""
    groups: dict[tuple, list[str]] = {}
    for prefix, info in sorted(scorers.items()):
        texts = info.get("prompts")
        if isinstance(texts, (list, tuple)) and texts:
            groups.setdefault(tuple(str(t) for t in texts), []).append(prefix)
    if not groups and isinstance(prompts, (list, tuple)) and prompts:
        groups[tuple(str(t) for t in prompts)] = []
    # A prompt's own line breaks are kept visible in the one-line list item.
    return [{"title": "Rating prompts" if len(groups) == 1 else
             "Rating prompts of " + ", ".join(md_code(p) for p in prefixes),
             "items": [md_text(t.replace("\n", " \u23ce ")) for t in texts]}
            for texts, prefixes in groups.items()]


def _n_prompts(scorers: Mapping[str, Mapping], prompts: Any) -> str:
    counts = {prefix: len(info["prompts"]) if isinstance(info.get("prompts"), (list, tuple))
              else info.get("n_prompts") for prefix, info in scorers.items()}
    counts = {prefix: n for prefix, n in counts.items() if n is not None}
    if len(set(counts.values())) > 1:
        return _per_scorer(counts, scorers)
    shared = next(iter(counts.values()), len(prompts) if isinstance(prompts, (list, tuple)) else None)
    return _per_scorer(shared, scorers)


def _fusion_rows(fusion: Optional[Mapping]) -> list[dict]:
    """One table per fused column: each input column with its parameter count and weight."""
    out = []
    for output, spec in sorted((fusion or {}).items()):
        if not isinstance(spec, Mapping):
            continue
        columns, weights = list(spec.get("columns") or []), list(spec.get("weights") or [])
        params = list(spec.get("params") or []) + [None] * len(columns)
        rows = [{"column": _cell(column),
                 "params": f"{params[i]:,.0f}" if isinstance(params[i], (int, float)) else "-",
                 "weight": f"{weights[i]:.6g}" if i < len(weights) else "-"}
                for i, column in enumerate(columns)]
        out.append({"output": md_code(output), "scheme": md_text(spec.get("scheme") or "not recorded"),
                    "rows": rows})
    return out


# What each column the package adds holds, by its method and the part of its name after the
# column prefix (the column schema, hf_selectit/methods/columns.py, gives both). The README's table
# of selectit_* columns is the source; docs/method.md has the formulas.
_SELECTIT_DESCRIPTIONS = {
    "token_scores": "S_token under each rating prompt, in prompt order: S_base x (K x P'max - 1) / "
                    "(K - 1) with K = 5 ratings, in [0, 5].",
    "sentence_score": "S_sent = mean(S_token) / (1 + alpha x std(S_token)): the SelectIT score of "
                      "the row (NaN when it could not be scored).",
    "uncertainty": "Population std of S_token across the rating prompts: the model's disagreement "
                   "with itself.",
    "rating_probs": "P'_1..P'_5 per rating prompt: the next-token probabilities of the ratings 1 "
                    "to 5, normalised over the five.",
}
# Columns every method names alike.
_SHARED_DESCRIPTIONS = {
    "rating_mass": "Full-vocabulary next-token probability on the rating tokens (SelectIT: mean "
                   "over prompts), before renormalisation: far below 1 means the model was not "
                   "answering with a rating, and the renormalised score means little.",
    "status": "`ok`, `truncated` (the text was cut to fit the model's maximum length, response "
              "middle first) or `error: <reason>` (scores NaN; the row is never selected).",
}
_FUSED_DESCRIPTIONS = {
    "score": "S_model = sum over models of w_m x S_sent_m (weights under Fusion): the "
             "model-level SelectIT score (NaN when a model has no score for the row).",
    "status": "`ok`, `truncated` (some model truncated the row) or `error: <column>: "
              "<reason>` (the first model that failed; the row is never selected).",
}
_RIGHT_CUT_STATUS = ("`ok`, `truncated` (a text was cut on the right at max_length, as in the authors' "
                     "code; the same number of {span} tokens is read in both texts) or `error: <reason>` "
                     "(scores NaN; the row is never selected).")
# Columns whose meaning depends on the method that wrote them (method, name after the prefix).
METHOD_COLUMN_DESCRIPTIONS = {
    **{("selectit", k): v for k, v in _SELECTIT_DESCRIPTIONS.items()},
    **{("fusion", k): v for k, v in _FUSED_DESCRIPTIONS.items()},
    ("alpagasus", "score"): "AlpaGasus rating with a local judge: sum_k k x P_k over the judge's "
                            "first reply token, P renormalised over \"0\"..\"5\" (the paper keeps "
                            ">= 4.5).",
    ("alpagasus", "argmax"): "The most probable rating 0..5 of the judge's first reply token "
                             "(ties to the lower; NaN when not scored).",
    ("deita", "quality"): "DEITA quality: sum_i i x softmax(logits of \"1\"..\"6\")_i after DEITA's "
                          "quality prompt.",
    ("deita", "complexity"): "DEITA complexity: sum_i i x softmax(logits of \"1\"..\"6\")_i after "
                             "DEITA's complexity prompt (instruction only).",
    ("deita", "score"): "complexity x quality: DEITA's score of a single-turn row.",
    ("ifd", "score"): "IFD = s(Y|X) / s(Y) (variant loss, Cherry) or exp s(Y|X) / exp s(Y) (variant "
                      "ppl): how much harder the response is without its instruction.",
    ("ifd", "conditioned_loss"): "s(Y|X): mean token loss of the response after the templated "
                                 "instruction.",
    ("ifd", "direct_loss"): "s(Y): mean token loss of the response after the direct prefix alone.",
    ("rifd", "score"): "Reversed IFD = exp s(X|Y) / exp s(X) (default variant ppl): low when the "
                       "response lets the model recover the instruction.",
    ("rifd", "conditioned_loss"): "s(X|Y): mean token loss of the instruction after the reverse "
                                  "prompt holding the response.",
    ("rifd", "direct_loss"): "s(X): mean token loss of the instruction alone.",
    # IFD cuts on the right as the authors do, not the response's middle as the rating methods.
    ("ifd", "status"): _RIGHT_CUT_STATUS.format(span="response"),
    ("rifd", "status"): _RIGHT_CUT_STATUS.format(span="instruction"),
}


def _type_name(feature: Any) -> str:
    from datasets import Value

    if isinstance(feature, Value):
        return feature.dtype
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list[{_type_name(inner)}]"
    if isinstance(feature, dict):
        return "struct{" + ", ".join(f"{k}: {_type_name(v)}" for k, v in feature.items()) + "}"
    return type(feature).__name__


def added_columns(provenance: Mapping, *datasets: Optional["Dataset"]) -> list[dict]:
    """[{"name", "type", "description"}] of the columns hf-selectit added to the published rows, in
    data order: every scorer's columns (its method's column schema, or its own recorded
    `column_descriptions`) and the fused columns of the provenance."""
    features: dict = {}
    for ds in filter(None, datasets):
        for name, feature in ds.features.items():
            features.setdefault(name, feature)
    scorers = sorted((provenance.get("scorers") or {}).items())
    fusion = provenance.get("fusion") or {}
    if not scorers and not fusion:
        # Scores without recorded provenance: recognise SelectIT's default columns.
        scorers = [(schema.SCHEMAS["selectit"].prefix, {})]
    described: dict[str, str] = {}
    for prefix, info in scorers:
        own = info.get("column_descriptions") or {}
        cols = schema.for_info(info, prefix)
        for suffix in cols.outputs:
            name = cols.prefix + suffix
            text = (own.get(name) or METHOD_COLUMN_DESCRIPTIONS.get((cols.method, suffix))
                    or _SHARED_DESCRIPTIONS.get(suffix))
            described[name] = text or (f"Added by the {_method_name(info)} scorer ({_short_model(info)}); "
                                       "see docs/method.md of hf-selectit.")
    for output, spec in fusion.items():
        described[output] = _FUSED_DESCRIPTIONS["score"]
        status = (spec or {}).get("status_column") if isinstance(spec, Mapping) else None
        if status:
            described[status] = _FUSED_DESCRIPTIONS["status"]
    return [{"name": _cell(name), "type": _cell(_type_name(features[name])),
             # Descriptions are the package's own Markdown; only the table syntax is escaped.
             "description": " ".join(described[name].split()).replace("|", "\\|")}
            for name in features if name in described]


_SAMPLE_TEXT = 160
_SAMPLE_ITEMS = 6


def _shorten(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= _SAMPLE_TEXT else value[:_SAMPLE_TEXT] + "\u2026"
    if isinstance(value, float):
        # JSON has no NaN: a row that could not be scored shows null.
        return float(f"{value:.4g}") if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        items = [_shorten(v) for v in value[:_SAMPLE_ITEMS]]
        if len(value) > _SAMPLE_ITEMS:
            items.append(f"\u2026 {len(value) - _SAMPLE_ITEMS} more")
        return items
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    return value


def sample_record(ds: Optional["Dataset"]) -> Optional[str]:
    """The first row of `ds` as short JSON (long texts and lists cut, floats to 4 digits), or None."""
    if ds is None or ds.num_rows == 0:
        return None
    row = ds.with_format(None)[0]
    # One column per line, each value on its own line in compact JSON: short and readable.
    lines = [f"  {json.dumps(k, ensure_ascii=False)}: "
             f"{json.dumps(_shorten(v), ensure_ascii=False, default=str, separators=(', ', ': '))}"
             for k, v in row.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def _selection_summary(rule: Optional[Mapping], n_subset: int, n_scored: Optional[int]) -> str:
    if not rule:
        kept = f"{n_subset} of {n_scored} rows" if n_scored is not None else f"{n_subset} rows"
        return f"{kept} (chosen outside hf-selectit's select step: the rows carry no selection rule)"
    parts = [md_code(rule.get("rule") or rule.get("method") or "top")]
    parts += [f"{key}={md_code(rule[key])}" for key in ("ratio", "k", "threshold", "seed", "column", "by")
              if rule.get(key) is not None]
    kept = f"; kept {n_subset} of {n_scored} rows" if n_scored is not None else ""
    return ", ".join(parts) + kept


# How the published rows are ordered, in words (docs/method.md: the card says which order).
_ROW_ORDER = {"original": "original order of the source dataset (not sorted by score)",
              "score": "by score, best first (ties: higher original index first), as the SelectIT authors"}


def reproduce_python(provenance: Mapping, *, repo_id: str, version: str) -> str:
    """A Python snippet that re-creates the version from its provenance with the public API.

    Values are written with repr(): a valid Python literal for str/int/float/bool/None/lists of
    them, whatever quotes, backslashes or newlines a repo id, path or prompt holds."""
    src = provenance.get("source") or {}
    scorers = provenance.get("scorers") or {}
    rule = provenance.get("selection") or {}
    revision = f", revision={repr(src['revision'])}" if src.get("revision") else ""
    lines = [f"ds = load_dataset({repr(src.get('id') or '<source dataset>')}{revision}, split='train')"]
    classes = {"SelectITScorer"}
    for prefix, info in sorted(scorers.items()):
        model = info.get("model_id") or info.get("model")
        # The embedded model is the scorer's default: no argument reproduces it.
        args = [] if is_embedded(model) else [repr(model)]
        method = str(info.get("method") or "selectit")
        if method.lower().startswith("selectit"):
            cls = "SelectITScorer"
            for key in ("revision", "prompts", "prompt_set", "alpha", "normalization", "template"):
                value = info.get(key)
                value = len(value) if key == "prompts" and isinstance(value, (list, tuple)) else value
                if value is not None:
                    args.append(f"{key}={repr(value)}")
        else:
            cls, options = _other_method_call(method, info)
            args += options
        classes.add(cls)
        args.append(f"column_prefix={repr(prefix)}")
        lines.append(f"ds = ds.map({cls}({', '.join(args)}), batched=True)")
    column = rule.get("column")
    spec = (provenance.get("fusion") or {}).get(column) if column else None
    if isinstance(spec, Mapping):
        cols = [c.split("@", 1)[0] for c in spec.get("columns") or []]
        weight_arg = (f"params={repr(spec['params'])}" if spec.get("params")
                      else f"weights={repr(spec.get('weights'))}")
        lines.append(f"ds = fuse_models(ds, columns={repr(cols)}, {weight_arg}, output={repr(column)})")
    elif column and len(scorers) > 1 and column not in (
            cols := [schema.for_info(scorers[p], p).score for p in sorted(scorers)]):
        # A fused column without its recorded weights: the scorers' own scores, fused again.
        lines.append(f"ds = fuse_models(ds, columns={repr(cols)}, output={repr(column)})")
    select = select_random if rule.get("method") == "random" else select_top
    # The recorded value of each option of the select function (higher_is_better: below).
    sel_args = ", ".join(f"{k}={repr(rule[k])}" for k in inspect.signature(select).parameters
                         if k not in ("ds", "higher_is_better") and rule.get(k) is not None)
    if select is select_top and column and rule.get("higher_is_better") is not None:
        # Written only when the selection overrode the column's own direction, which the default
        # reproduces: the recorded value is the one used, whichever way it was decided.
        owners = [c for p, info in scorers.items() if column in (c := schema.for_info(info, p)).score_columns]
        declared = (spec.get("higher_is_better", True) if isinstance(spec, Mapping)
                    else (owners[0] if owners else schema.guess(column)).higher_is_better(column))
        if rule["higher_is_better"] != declared:
            sel_args += f", higher_is_better={rule['higher_is_better']!r}"
    select_name = select.__name__
    lines.append(f"subset = {select_name}(ds, {sel_args})")
    lines.append(f"publish(subset, {repr(repo_id)}, version={repr(version)}, scored=ds)")
    names = sorted(classes - {"SelectITScorer"}) + ["SelectITScorer", "fuse_models", "publish", select_name]
    return "\n".join(["from datasets import load_dataset", f"from hf_selectit import {', '.join(names)}", ""]
                     + lines)


# Options that do not change scores; a reproduce snippet leaves them at their defaults.
_RUNTIME_OPTIONS = ("model", "device", "max_batch_tokens", "reuse_prompt_prefix", "column_prefix")


def _other_method_call(method: str, info: Mapping) -> tuple[str, list]:
    """(scorer class name, keyword arguments) re-creating a non-SelectIT scorer from its provenance:
    the options that differ from the method's defaults."""
    # Every option has a default (the option parser relies on it too).
    defaults = {f.name: f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
                for f in (fields(METHOD_CONFIGS[method]) if method in METHOD_CONFIGS else ())}
    return METHODS.get(method, f"x:{method}").split(":")[1], [
        f"{k}={repr(v)}" for k, v in sorted((info.get("options") or {}).items())
        if k not in _RUNTIME_OPTIONS and (k not in defaults or defaults[k] != v)]


def reproduce_run_config(repo_id: str, version: str, *, filename: str, is_local: bool) -> str:
    """Shell lines that fetch the uploaded run config of a version and run it again."""
    if is_local:
        return f"hf-selectit run {shlex.quote(os.path.join(repo_id, filename))}"
    return (f"hf download {shlex.quote(repo_id)} {shlex.quote(filename)} --repo-type dataset "
            f"--revision {shlex.quote(version)} --local-dir .\nhf-selectit run {shlex.quote(filename)}")


def _added(base: list, user: Any) -> list:
    """`base` and then the user's values (a string or a list) that it lacks."""
    user = user or []
    return base + [v for v in ([user] if isinstance(user, str) else user) if v not in base]


def build_card(subset: "Dataset", *, repo_id: str, version: str, provenance: Mapping, defaults: Mapping,
               scored: Optional["Dataset"] = None, card_data: Optional[Mapping] = None,
               changelog: Optional[list] = None, histogram: Optional[str] = None,
               report_markdown: Optional[str] = None, is_local: bool = False,
               dataset_info: Optional[list] = None, run_config: Optional[str] = None) -> "DatasetCard":
    """Render the `DatasetCard` of one published version from the facts the publisher gathered.

    `provenance` is this version's `selectit.json`; `card_data` as for `publish` (the computed
    fields, `COMPUTED_FIELDS`, cannot be replaced; `tags` and `source_datasets` add to the computed
    ones); `changelog` lists earlier versions, newest first; `defaults` is `publishing.card_facts`;
    `histogram` and `run_config` are file names in the repo.
    """
    from urllib.parse import quote

    from huggingface_hub import DatasetCard, DatasetCardData, constants

    from .validation import ValidationReport

    extra = {k: v for k, v in _as_dict(card_data).items() if k not in ("license", "language")}
    command = extra.pop("reproduce_command", None)
    for key in [k for k in COMPUTED_FIELDS if k in extra]:
        # They must match the files this publisher writes, or load_dataset and the viewer break.
        logger.warning("card_data[%r] is ignored: the card computes %s from the published files.", key, key)
        del extra[key]
    source = provenance.get("source") or {}
    source_id = source.get("id")
    name = repo_id.rstrip("/").replace("\\", "/").split("/")[-1]
    pretty_name = extra.pop("pretty_name", None) or name.replace("_", " ").replace("-", " ").strip() or name
    configs = [{"config_name": config, "data_files": [{"split": "train", "path": f"{folder}/train-*"}]}
               for config, folder in (("default", "data"), ("scores", "scores"))
               if config == "default" or scored is not None]
    sources = _added([source_id] if source_id else [], extra.pop("source_datasets", None))
    header = {"license": defaults["license"], "language": defaults["language"],
              "task_categories": ["text-generation"], "size_categories": [size_category(subset.num_rows)],
              "source_datasets": sources or None, "pretty_name": str(pretty_name),
              "tags": _added(list(TAGS), extra.pop("tags", None)), "configs": configs,
              "dataset_info": list(dataset_info) if dataset_info else None}
    data = DatasetCardData(**{**header, **extra})  # the user's task_categories etc. win

    rule = provenance.get("selection") or {}
    scorers = provenance.get("scorers") or {}
    prompts, prompt_set = provenance.get("prompts"), provenance.get("prompt_set")
    # The label validation of the same rows recorded in `selectit.json`, and its figure: set by the
    # publisher only when it uploaded it (a repo file name, never a local path).
    validation = provenance.get("validation")
    validation_md = (ValidationReport.from_dict(validation).to_markdown()
                     if isinstance(validation, Mapping) else None)
    n_scored = scored.num_rows if scored is not None else None
    this = {"version": version, "date": provenance.get("created_at", ""), "rows": subset.num_rows,
            "commit": "this version"}
    source_code = md_code(source_id) if source_id else None
    source_link = (f"[{md_text(source_id)}]({constants.ENDPOINT}/datasets/{quote(source_id, safe='/')})"
                   if source_id and not defaults.get("source_is_local") else source_code)
    return DatasetCard.from_template(
        card_data=data,
        template_path=template_path(),
        code_fence=code_fence,
        title=md_text(pretty_name),
        version=md_code(version),
        created_at=md_text(provenance.get("created_at", "")),  # ISO time: nothing to escape
        source_id=source_code,
        source_link=source_link,
        source_revision=md_code(source["revision"]) if source.get("revision") else None,
        source_fingerprint=md_code(source.get("fingerprint")),
        n_subset=subset.num_rows,
        n_scored=n_scored,
        row_order=_ROW_ORDER.get(rule.get("order"), "as given (the rows carry no selection rule)"),
        license=md_text(defaults["license"]),
        license_origin=md_text(defaults["license_origin"]) if defaults["license_origin"] else None,
        language=", ".join(md_code(x) for x in defaults["language"] or ()),  # "": not stated
        scorers=[_scorer_row(prefix, info) for prefix, info in sorted(scorers.items())],
        n_prompts=_n_prompts(scorers, prompts),
        prompt_groups=_prompt_groups(scorers, prompts),
        prompt_set=_per_scorer(prompt_set, scorers) if prompt_set else None,
        alpha=_per_scorer(provenance.get("alpha"), scorers),
        normalization=_per_scorer(provenance.get("normalization"), scorers),
        fusion_tables=_fusion_rows(provenance.get("fusion")),
        has_selectit=not scorers or any(_method_name(i) == "SelectIT" for i in scorers.values()),
        columns=added_columns(provenance, subset, scored),
        samples=[{"config": config, "json": text} for config, ds in (("default", subset), ("scores", scored))
                 if (text := sample_record(ds))],
        selection_summary=_selection_summary(rule, subset.num_rows, n_scored),
        selection_items=[(_cell(k), _cell(v)) for k, v in sorted(rule.items())
                         if v is not None and not isinstance(v, (list, dict))],
        report_markdown=report_markdown,
        validation_markdown=validation_md,
        validation_plot=(validation or {}).get("plot"),
        histogram=histogram,
        has_scores=scored is not None,
        is_local=is_local,
        changelog=[{"version": _cell(e.get("version", "")), "date": md_text(e.get("date", "")),
                    "rows": md_text(e.get("rows", "")),
                    # Commit cells are the publisher's own: "this version" or `abc123`.
                    "commit": str(e.get("commit", "")).replace("|", "\\|")}
                   for e in [this] + [e for e in changelog or [] if e.get("version") != version]],
        run_config=md_code(run_config) if run_config else None,
        run_config_lines=(reproduce_run_config(repo_id, version, filename=run_config, is_local=is_local)
                          if run_config else None),
        reproduce_command=command,
        # Python literals (valid for any repo id) for the Usage section's load_dataset lines.
        repo_literal=repr(repo_id),
        revision_arg="" if is_local else f", revision={repr(version)}",
        latest_python=md_code(f"hf_selectit.load_selective({repr(repo_id)})"),
        reproduce_python=reproduce_python(provenance, repo_id=repo_id, version=version),
        package_version=md_text((provenance.get("package") or {}).get("version", "")),
    )
