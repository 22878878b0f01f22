"""Does the score separate good answers from bad ones? Checks on labelled data, with baselines:
pairwise accuracy on preference pairs (:func:`pair_datasets`), ROC-AUC or Spearman against a label
column, and the agreement between score columns; every figure with a bootstrap interval and its
number of items (:mod:`hf_selectit.metrics`), beside random scores, the response length (the
SelectIT paper reports that selected answers are longer) and the other score columns. Usage:
README.md, "Does the score work on your data?".
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from .atomic import write_text
from .config import ScorerConfig
from .errors import ConfigError, ModelLoadError, SchemaError, ScoreColumnError
from .markdown import md_code, md_text
from .methods import make_scorer, scorer_class
from .methods.columns import columns_of, for_scorer, is_numeric, score_like
from .metrics import load_metric
from .plots import validation_plot
from .provenance import attach, scorer_infos
from .report import char_lengths, response_texts, valid_scores
from .select import selectit_ranking

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

PAIR_LAYOUTS = ("text", "sharegpt", "messages")
_PROMPT_COLUMNS = ("prompt", "instruction", "question")
LENGTH_CHARS = "length_chars"
LENGTH_TOKENS = "length_tokens"
RANDOM = "random"
BASELINE_DESCRIPTIONS = {LENGTH_CHARS: "response length (characters)",
                         LENGTH_TOKENS: "response length (tokens)", RANDOM: "random scores (expected 0.5)"}
METRIC_TITLES = {"pairwise_accuracy": "Pairwise accuracy", "roc_auc": "ROC-AUC", "spearman": "Spearman"}
_FIGURE = ("value", "ci_low", "ci_high", "n")
_TOKEN_BATCH = 1000


@dataclass
class ValidationReport:
    """How well each score separates good from bad items, beside the baselines.

    `mode` is "pairs" or "labels"; `metric` "pairwise_accuracy", "roc_auc" or "spearman";
    `n_items` counts pairs or rows. `target`: for pairs ``{"layout", "pairs", "answers"}``, for
    labels ``{"column", "kind" ("binary"/"numeric"), "positive", "n_positive", "n_negative",
    "n_unlabelled"}``. `results`: one dict per score and baseline (``name``, ``role``,
    ``description``, ``value``, ``ci_low``, ``ci_high``, ``n``, ``n_missing``; the random baseline's
    ``expected``). `agreement`: None or ``{"columns", "top_ratio", "spearman", "jaccard"}``, the two
    matrices ``{a: {b: {"value", "ci_low", "ci_high", "n"}}}``. `notes`: baselines left out and
    why, rows dropped. `plot`: the PNG written, or None.
    """

    mode: str
    metric: str
    n_items: int
    target: dict
    results: list
    agreement: Optional[dict] = None
    settings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    plot: Optional[str] = None

    def to_dict(self) -> dict:
        """The report as a JSON-serialisable dict (what ``--json`` writes and selectit.json keeps)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ValidationReport":
        """Rebuild a report from :meth:`to_dict` output."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def result(self, name: str) -> dict:
        """The result row called `name` (a score column, or a baseline name)."""
        for row in self.results:
            if row["name"] == name:
                return row
        raise KeyError(f"No result {name!r}; results: {[r['name'] for r in self.results]}.")

    def headline(self) -> str:
        """One line for a summary of the first score, e.g. ``ROC-AUC of `s` 0.612 [0.471, 0.748] (n=61)``."""
        row = next(r for r in self.results if r["role"] == "score")
        return (f"{METRIC_TITLES[self.metric]} of `{row['name']}` {_fmt(row['value'])} "
                f"{_ci(row)} (n={row['n']})")

    def to_markdown(self) -> str:
        """The tables: each score and baseline with its interval and items; then agreement."""
        conf = int(round(100 * self.settings.get("confidence", 0.95)))
        title = METRIC_TITLES[self.metric]
        lines = [f"**Validation:** {self._what()} Figure: {title}, with a bootstrap "
                 f"{conf}% interval ({self.settings.get('n_boot')} resamples, seed "
                 f"{self.settings.get('seed')}).", ""]
        lines += [f"| Score | {title} | {conf}% interval | Items |", "|---|---:|---|---:|"]
        for row in self.results:
            # Column names are the user's: a code span that escapes `|` (a table cell).
            name = md_code(row["name"], in_table=True)
            if row["role"] == "baseline":  # a built-in baseline, or another score column of the data
                builtin = row["name"] in BASELINE_DESCRIPTIONS
                name = f"baseline: {md_text(row['description']) if builtin else name}"
            if row.get("higher_is_better") is False:
                name += " (lower is better)"
            lines.append(f"| {name} | {_fmt(row['value'])} | {_ci(row)} | {row['n']:,} |")
        if self.agreement and len(self.agreement["columns"]) > 1:
            cols = self.agreement["columns"]
            short = [_short(c) for c in cols]
            for key, label in (("spearman", "Spearman correlation between columns"),
                               ("jaccard", f"Jaccard overlap of the top {self.agreement['top_ratio']:.0%} "
                                           "each column selects")):
                lines += ["", f"{label} ({conf}% interval; items: "
                              f"{self.agreement[key][cols[0]][cols[1]]['n']:,}):", "",
                          "| | " + " | ".join(short) + " |", "|---|" + "---:|" * len(cols)]
                for a, sa in zip(cols, short):
                    row = self.agreement[key][a]
                    cells = ["1" if a == b else f"{_fmt(row[b]['value'], 2)} {_ci(row[b], 2)}" for b in cols]
                    lines.append(f"| {sa} | " + " | ".join(cells) + " |")
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def _what(self) -> str:
        t = self.target
        if self.mode == "pairs":
            return (f"{t['pairs']:,} preference pairs ({t['layout']} layout); each answer scored "
                    "on its own, a pair counts 1 when the chosen answer scores higher, 0.5 on a tie.")
        if t["kind"] == "numeric":
            return f"{self.n_items:,} rows, numeric rating `{t['column']}`."
        pos = ", ".join(repr(p) for p in t["positive"])
        return (f"{self.n_items:,} rows, label `{t['column']}` (positive: {pos}; "
                f"{t['n_positive']:,} positive, {t['n_negative']:,} negative).")


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(figure: Mapping, digits: int = 3) -> str:
    return f"[{_fmt(figure['ci_low'], digits)}, {_fmt(figure['ci_high'], digits)}]"


def _short(column: str) -> str:
    if column in BASELINE_DESCRIPTIONS:
        return BASELINE_DESCRIPTIONS[column].replace("response length ", "length ")
    return md_code(column, in_table=True)


def pair_layout(ds: "Dataset") -> str:
    """Which preference-pair layout `ds` has: "text", "sharegpt" or "messages" (a SchemaError
    without chosen/rejected columns, or for a layout this module does not read)."""
    names = ds.column_names
    if "chosen" not in names or "rejected" not in names:
        raise SchemaError(f"Preference pairs need 'chosen' and 'rejected' columns. Columns: {names}. For a "
                          "scored dataset with a label column pass label=<column> instead.")
    if len(ds) == 0:
        raise ConfigError("The preference-pair dataset has no rows.")
    first = ds[0]["chosen"]
    if "conversations" in names:
        return "sharegpt"
    if isinstance(first, list):
        return "messages"
    if isinstance(first, str):
        if not any(c in names for c in _PROMPT_COLUMNS):
            raise SchemaError(f"Plain-text pairs need a prompt column (one of {list(_PROMPT_COLUMNS)}) "
                              f"beside 'chosen' and 'rejected'. Columns: {names}.")
        return "text"
    raise SchemaError(f"'chosen' holds {type(first).__name__} values; expected text (with a 'prompt' "
                      "column), a list of {'role', 'content'} turns, or a ShareGPT turn with a "
                      "'conversations' column.")


def pair_datasets(ds: "Dataset", *, layout: Optional[str] = None) -> tuple["Dataset", "Dataset", str]:
    """Split preference pairs into (chosen, rejected, layout): row i of both datasets is pair i.

    Layouts (None = :func:`pair_layout`): ``prompt``/``chosen``/``rejected`` as plain text (read
    as Alpaca ``instruction``/``input``/``output``); ShareGPT-style ``conversations`` + ``chosen``
    + ``rejected`` (a turn dict or a string each); messages-style ``chosen``/``rejected`` lists of
    ``{"role", "content"}`` turns, with an optional ``prompt`` column of leading turns or user text.

    Example:
        >>> chosen, rejected, layout = pair_datasets(Dataset.from_dict(
        ...     {"prompt": ["2+2?"], "chosen": ["4"], "rejected": ["5"]}))
        >>> chosen[0]
        {'instruction': '2+2?', 'input': '', 'output': '4'}
    """
    layout = layout or pair_layout(ds)
    if layout not in PAIR_LAYOUTS:
        raise ConfigError(f"layout={layout!r} is invalid: expected one of {list(PAIR_LAYOUTS)}.")
    names = ds.column_names

    if layout == "text":
        prompt_col = next(c for c in _PROMPT_COLUMNS if c in names)
        input_col = "input" if prompt_col == "instruction" and "input" in names else None

        def build(batch, side):
            inputs = batch[input_col] if input_col else [""] * len(batch[side])
            return {"instruction": batch[prompt_col], "input": inputs, "output": batch[side]}
        needed = [c for c in (prompt_col, input_col) if c]
    elif layout == "sharegpt":
        def build(batch, side):
            rows = []
            for conv, answer in zip(batch["conversations"], batch[side]):
                turns = conv or []
                openai = bool(turns) and turns[0].get("role") is not None
                role, text, who = ("role", "content", "assistant") if openai else ("from", "value", "gpt")
                # The answer: {"from": "gpt", "value": ...}, {"role", "content"}, or a string.
                if isinstance(answer, Mapping):
                    answer = answer.get("value", answer.get("content"))
                rows.append([{role: t.get(role), text: t.get(text)} for t in turns]
                            + [{role: who, text: answer}])
            return {"conversations": rows}
        needed = ["conversations"]
    else:
        prompt_col = "prompt" if "prompt" in names else None

        def build(batch, side):
            rows = []
            prompts = batch[prompt_col] if prompt_col else [None] * len(batch[side])
            for prompt, turns in zip(prompts, batch[side]):
                turns = _role_content(turns or [])
                if not any(str(t["role"]).lower() in ("user", "human") for t in turns):
                    if isinstance(prompt, list):
                        turns = _role_content(prompt) + turns
                    elif isinstance(prompt, str):
                        turns = [{"role": "user", "content": prompt}] + turns
                rows.append(turns)
            return {"messages": rows}
        needed = [prompt_col] if prompt_col else []

    chosen, rejected = (ds.select_columns([*needed, side]).map(
        build, batched=True, fn_kwargs={"side": side}, remove_columns=[*needed, side],
        desc=f"Building {side} answers") for side in ("chosen", "rejected"))
    return chosen, rejected, layout


def _role_content(turns: Sequence[Mapping]) -> list[dict]:
    return [{"role": t.get("role"), "content": t.get("content")} for t in turns]


def _as_scorer(scorer: Any) -> Any:
    """A scorer object from a scorer, a method's config or a model id/path (SelectIT)."""
    if isinstance(scorer, str):
        return scorer_class("selectit")(model=None if scorer == "embedded" else scorer)
    try:
        scorer = make_scorer(scorer)
    except ConfigError:
        raise ConfigError(f"scorers contains {scorer!r}: expected a scorer (e.g. SelectITScorer()), a "
                          "ScorerConfig, or a model id/path.") from None
    config = getattr(scorer, "config", None)
    if getattr(config, "columns", None) and hasattr(type(scorer), "from_config"):
        # The pair datasets built here have standard columns; the user's mapping is for theirs.
        scorer = type(scorer).from_config(replace(config, columns=None))
    return scorer


def score_columns_of(scorer: Any) -> list[str]:
    """The per-row score columns a scorer adds (DEITA: ``deita_score``, ``deita_quality``, ...)."""
    cols = for_scorer(scorer)
    return cols.score_columns if cols is not None else []


def _apply_scorers(ds: "Dataset", scorers: Sequence[Any], *, batch_size: int,
                   desc: str) -> tuple["Dataset", list[str]]:
    columns: list[str] = []
    for scorer in scorers:
        cols = score_columns_of(scorer)
        # Before the data's own columns: an earlier scorer's columns are in the data by now.
        clash = [c for c in cols if c in columns]
        if clash:
            raise ConfigError(f"Two scorers write the column(s) {clash}. Give each scorer its own "
                              "column_prefix (e.g. column_prefix='m1_').")
        present = [c for c in cols if c in ds.column_names]
        if present and all(is_numeric(ds, c, strict=True) for c in present):
            raise ConfigError(f"The data already has the score column(s) {present} from an earlier scoring, "
                              "and a scorer was given to score it again. To validate the scores it has, "
                              "leave the scorer out (CLI: --no-score-first); to score again beside them, give "
                              "the scorer another column_prefix.")
        if present:  # there, but not as scores it could use (all null, text)
            what = "; ".join(f"{c!r} is {_column_kind(ds, c)}" for c in present)
            raise ConfigError(f"The data already has the score column(s) {present}, but not as numbers: "
                              f"{what}. Drop or fill them to score the rows again, or give the scorer "
                              "another column_prefix to score beside them.")
        ds = ds.map(scorer, batched=True, batch_size=batch_size, desc=desc)
        columns += [c for c in cols if is_numeric(ds, c, strict=True)]
    return ds, columns


def _column_kind(ds: "Dataset", column: str) -> str:
    """'all 6 values null', or the column's type: why it is not a usable score column."""
    feature = ds.features[column]
    if getattr(feature, "dtype", None) == "null":
        return f"all {len(ds)} values null"
    nulls = sum(v is None for v in ds.with_format("arrow")[column].to_pylist())
    return f"of type {getattr(feature, 'dtype', type(feature).__name__)}" + (
        f" with {nulls} of {len(ds)} values null" if nulls else "")


def _directions(ds: Optional["Dataset"], columns: Sequence[str], given: Optional[bool]) -> dict:
    """{column: higher is better}: `given` for every column, else as each column's method declares."""
    if given is not None and not isinstance(given, bool):
        raise ConfigError(f"higher_is_better={given!r} is invalid: expected True, False or None.")
    return {c: given if given is not None else columns_of(ds, c).higher_is_better(c) for c in columns}


def _oriented(values: Mapping[str, np.ndarray], higher: Mapping[str, bool]) -> dict:
    """The values with every lower-is-better score negated, so "larger" means "better" for the metrics."""
    return {c: (v if higher.get(c, True) else -v) for c, v in values.items()}


def _tokenizer_for(tokenizer: Any, scorers: Sequence[Any], ds: Optional["Dataset"]) -> tuple[Any, str]:
    """(tokenizer, description): an object, a model id/path, the first scorer's, or the recorded one."""
    from .models import hub_options, is_embedded, load_tokenizer, model_source, shown_name

    if tokenizer is not None and not isinstance(tokenizer, str):
        return tokenizer, getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    if isinstance(tokenizer, str):
        config = ScorerConfig(model=None if is_embedded(tokenizer) else tokenizer)
    elif scorers and hasattr(getattr(scorers[0], "config", None), "model"):
        config = scorers[0].config
    else:
        infos = list(scorer_infos(ds).values()) if ds is not None else []
        model = infos[0].get("model") if infos else None
        config = ScorerConfig(model=None if is_embedded(model) else model)
    # The tokenizer alone, as both backends load it: not a transformers copy of the weights
    # (beside vLLM's, or for a tokenizer named on its own).
    name = shown_name(config.model)
    kwargs = {**(getattr(config, "vllm_kwargs", None) or {}), **(getattr(config, "model_kwargs", None) or {})}
    return load_tokenizer(model_source(config.model), name, hub_options(config, kwargs)), name


def token_lengths(texts: Sequence[Optional[str]], tokenizer: Any) -> np.ndarray:
    """Tokens of each text without special tokens (NaN where the text is None)."""
    out = np.full(len(texts), np.nan)
    idx = [i for i, t in enumerate(texts) if t is not None]
    for start in range(0, len(idx), _TOKEN_BATCH):
        chunk = idx[start:start + _TOKEN_BATCH]
        ids = tokenizer([texts[i] for i in chunk], add_special_tokens=False)["input_ids"]
        out[chunk] = [len(x) for x in ids]
    return out


def _add_lengths(tokenizer: Any, scorers: Sequence[Any], ds: Optional["Dataset"],
                 targets: Sequence[tuple[dict, Sequence[Optional[str]]]], notes: list) -> Optional[str]:
    """Add the length baselines (characters, then tokens) to each (values, texts) target; returns
    the tokenizer's name, None when the token baseline was left out (said in `notes`)."""
    for values, texts in targets:
        values[LENGTH_CHARS] = char_lengths(texts)
    # "none" as in the CLI and YAML (`tokenizer: none`), so every entry point spells it alike.
    if tokenizer is False or (isinstance(tokenizer, str) and tokenizer.lower() == "none"):
        notes.append("The token-length baseline was left out (tokenizer=False).")
        return None
    try:
        tok, name = _tokenizer_for(tokenizer, scorers, ds)
    except ModelLoadError as err:
        if tokenizer is not None:
            raise
        logger.warning("No tokenizer for the token-length baseline: %s", err)
        notes.append(f"The token-length baseline was left out: no tokenizer could be loaded ({err}). "
                     "Pass tokenizer=<model id or path>.")
        return None
    for values, texts in targets:
        values[LENGTH_TOKENS] = token_lengths(texts, tok)
    return name


def _metric(name: str, *, n_boot: int, seed: int, confidence: float, **inputs: Any) -> dict:
    result = dict(load_metric(name).compute(**inputs, n_boot=n_boot, seed=seed, confidence=confidence))
    result["value"] = result.pop(name if name != "top_overlap" else "jaccard")
    return result


def check_measurable(column: str, scores: Any, other: Any, *, other_name: str = "labels",
                     binary: bool = False) -> None:
    """Refuse (ConfigError) a score column no figure can be computed from against `other` (labels,
    or the rejected answers' scores, one per item), saying why: the lengths differ, no item has a
    score, or (with `binary`) only one 0/1 class is left among the scored items."""
    s, o = np.asarray(scores, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if len(s) != len(o):
        raise ConfigError(f"Score column {column!r} has {len(s)} values but there are {len(o)} "
                          f"{other_name}: they must be one per item.")
    usable = np.isfinite(s) & np.isfinite(o)
    missing = int((~np.isfinite(s)).sum())
    if not usable.any():
        raise ConfigError(f"Score column {column!r} has no usable score: {missing} of {len(s)} values "
                          "are missing (null/NaN, or an error status). Score the rows first, or pick "
                          "another column.")
    if binary:
        left = o[usable]
        n_pos, n_neg = int((left == 1).sum()), int((left == 0).sum())
        if not n_pos or not n_neg:
            raise ConfigError(f"Score column {column!r}: after leaving out the {missing} row(s) without a "
                              f"score, only the {'positive' if n_pos else 'negative'} class is left ({n_pos} "
                              f"positive, {n_neg} negative of {int(usable.sum())} rows); an AUC needs both. "
                              "Score the missing rows, or validate more rows.")


def _row(name: str, tested: Sequence[str], result: Mapping[str, Any], higher: Mapping[str, bool],
         expected: float) -> dict:
    """A result row; a pairwise-accuracy result also gives its wins, ties and losses."""
    row = {"name": name, "role": "score" if name in tested else "baseline",
           "description": BASELINE_DESCRIPTIONS.get(name, name), **{k: result[k] for k in _FIGURE},
           "n_missing": result.get("n_missing", 0)}
    if name == RANDOM:
        row["expected"] = expected
    if name in higher:
        row["higher_is_better"] = higher[name]
    return {**row, **{k: result[k] for k in ("wins", "ties", "losses") if k in result}}


def top_mask(values: np.ndarray, ratio: float) -> np.ndarray:
    """Rows SelectIT's rule keeps at `ratio`: the top ``int(N * ratio)`` finite values, ties to
    the higher index (``select.selectit_ranking``), N counting every row."""
    keep = selectit_ranking(values, np.isfinite(values))[: int(len(values) * ratio)]
    return np.isin(np.arange(len(values)), keep)


def score_agreement(columns: Mapping[str, np.ndarray], *, top_ratio: float = 0.2, n_boot: int = 1000,
                    seed: int = 0, confidence: float = 0.95) -> dict:
    """Spearman matrix and top-ratio Jaccard overlaps between score columns (name -> per-item
    values, NaN = missing, all the same length): ``{"columns", "top_ratio", "spearman", "jaccard"}``
    with ``{a: {b: {"value", "ci_low", "ci_high", "n"}}}`` matrices."""
    if not 0 < top_ratio <= 1:
        raise ConfigError(f"top_ratio={top_ratio!r} is invalid: expected 0 < top_ratio <= 1.")
    names = list(columns)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"The score columns have different lengths {sizes}: they must hold one "
                          "value per item each.")
    masks = {k: top_mask(v, top_ratio) for k, v in arrays.items()}
    opts = {"n_boot": n_boot, "seed": seed, "confidence": confidence}
    rho: dict = {a: {} for a in names}
    jac: dict = {a: {} for a in names}
    for i, a in enumerate(names):
        rho[a][a] = jac[a][a] = {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0,
                                 "n": int(np.isfinite(arrays[a]).sum())}
        for b in names[i + 1:]:
            for matrix, metric, data in ((rho, "spearman", arrays), (jac, "top_overlap", masks)):
                res = _metric(metric, predictions=data[a], references=data[b], **opts)
                matrix[a][b] = matrix[b][a] = {k: res[k] for k in _FIGURE}
    return {"columns": names, "top_ratio": top_ratio, "spearman": rho, "jaccard": jac}


def _validate_pairs(ds: "Dataset", scorers: list, *, tokenizer: Any, opts: dict, batch_size: int,
                    higher_is_better: Optional[bool]) -> tuple[ValidationReport, dict, dict]:
    """The pairwise-accuracy report (settings: the tokenizer only), the columns to compare for
    agreement, and the plot's arguments."""
    if not scorers:
        raise ConfigError("Preference pairs need a scorer: pass scorers=SelectITScorer() (or a list).")
    chosen_ds, rejected_ds, layout = pair_datasets(ds)
    chosen_ds, columns = _apply_scorers(chosen_ds, scorers, batch_size=batch_size, desc="Scoring chosen")
    rejected_ds, _ = _apply_scorers(rejected_ds, scorers, batch_size=batch_size, desc="Scoring rejected")
    chosen = {c: valid_scores(chosen_ds, c) for c in columns}
    rejected = {c: valid_scores(rejected_ds, c) for c in columns}
    notes: list[str] = []
    texts = [(chosen, response_texts(chosen_ds)), (rejected, response_texts(rejected_ds))]
    tok_name = _add_lengths(tokenizer, scorers, None, texts, notes)
    n = len(ds)
    chosen[RANDOM] = np.random.default_rng(opts["seed"]).random(n)
    rejected[RANDOM] = np.random.default_rng(opts["seed"] + 1).random(n)

    higher = _directions(chosen_ds, columns, higher_is_better)
    better_c, better_r = _oriented(chosen, higher), _oriented(rejected, higher)
    for name in columns:
        check_measurable(name, chosen[name], rejected[name], other_name="rejected answers' scores")
    results = [_row(c, columns, _metric("pairwise_accuracy", chosen=better_c[c], rejected=better_r[c],
                                        **opts), higher, 0.5) for c in chosen]
    missing = max(r["n_missing"] for r in results if r["role"] == "score")
    if missing:
        notes.append(f"{missing} pair(s) without a score on one side (error status or unreadable "
                     "answer) are left out of the score rows.")
    report = ValidationReport(mode="pairs", metric="pairwise_accuracy", n_items=n,
                              target={"layout": layout, "pairs": n, "answers": 2 * n}, results=results,
                              settings={"tokenizer": tok_name}, notes=notes)
    agree = {c: np.concatenate([better_c[c], better_r[c]]) for c in chosen if c != RANDOM}
    plot = {"series": {c: (chosen[c], rejected[c]) for c in columns},
            "labels": ("chosen", "rejected"), "title": f"{n:,} preference pairs"}
    return report, agree, plot


def _binary_labels(values: list, positive: Any, feature: Any) -> tuple[np.ndarray, list, str]:
    """(y as float with NaN for unlabelled rows, positive values, kind)."""
    from datasets import ClassLabel

    if isinstance(feature, ClassLabel):
        values = [None if v is None else feature.int2str(int(v)) for v in values]
    present = sorted({v for v in values if v is not None}, key=str)

    def y(code: Any) -> np.ndarray:
        return np.array([np.nan if v is None else code(v) for v in values])

    if isinstance(positive, Mapping):
        mapping = {k: float(bool(v)) for k, v in positive.items()}
        unknown = [k for k in mapping if k not in present]
        if unknown:
            raise ConfigError(f"positive mapping has value(s) {unknown} that the label column "
                              f"does not hold. Values present: {present[:20]}.")
        return y(lambda v: mapping.get(v, np.nan)), [k for k, v in mapping.items() if v], "binary"
    if positive is not None:
        pos = list(positive) if isinstance(positive, (list, tuple, set)) else [positive]
        # A CLI value arrives as text: match it against the values' text too.
        by_text = {str(v): v for v in present}
        pos = [p if p in present else by_text.get(str(p), p) for p in pos]
        absent = [p for p in pos if p not in present]
        if absent:
            raise ConfigError(f"positive={positive!r}: {absent} not found in the label column. "
                              f"Values present: {present[:20]}.")
        return y(lambda v: float(v in pos)), pos, "binary"
    if set(present) <= {0, 1, True, False} and len(present) == 2:
        return y(lambda v: float(bool(v))), [max(present)], "binary"
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and len(present) > 2:
        return y(float), [], "numeric"
    raise ConfigError(f"The label column holds {len(present)} distinct non-numeric value(s) {present[:20]}; "
                      "say which count as good: positive='good' (or a list), or a mapping "
                      "{'good': 1, 'wrong': 0, ...}.")


def _validate_labels(ds: "Dataset", label: str, *, positive: Any, columns: Optional[Sequence[str]],
                     scorers: list, tokenizer: Any, opts: dict, batch_size: int,
                     higher_is_better: Optional[bool]) -> tuple[ValidationReport, dict, dict]:
    """The ROC-AUC or Spearman report (settings: the tokenizer only), the columns to compare for
    agreement, and the plot's arguments."""
    ds, added = _apply_scorers(ds, scorers, batch_size=batch_size, desc="Scoring")
    detected = [c for c in score_like(ds) if c != label and is_numeric(ds, c, strict=True)]
    tested = (detected if columns is None and not added
              else added + [c for c in (columns or []) if c not in added])
    others = [c for c in detected if c not in tested]
    if not tested:
        raise ScoreColumnError(f"No score column in the dataset (columns: {ds.column_names}). Score it "
                               "first (ds.map(SelectITScorer(), batched=True)), pass scorers=..., or "
                               "columns=[...].")
    y, positives, kind = _binary_labels(ds.with_format("arrow")[label].to_pylist(), positive,
                                        ds.features[label])
    labelled, binary = np.isfinite(y), kind == "binary"
    if binary and len({float(v) for v in y[labelled]}) < 2:
        raise ConfigError(f"Every labelled row is {'positive' if (y[labelled] == 1).all() else 'negative'} "
                          f"({int(labelled.sum())} rows of {label!r}): an AUC needs both classes. Validate "
                          "more rows (no --limit, or a shuffled sample) or check positive=.")
    values = {c: valid_scores(ds, c) for c in tested + others}
    notes: list[str] = []
    tok_name = None
    try:
        texts = response_texts(ds)
    except SchemaError as err:
        notes.append(f"The length baselines were left out: no response text recognised ({err}).")
    else:
        tok_name = _add_lengths(tokenizer, scorers, ds, [(values, texts)], notes)
    values[RANDOM] = np.random.default_rng(opts["seed"]).random(len(ds))

    metric = "roc_auc" if binary else "spearman"
    for name in tested:
        check_measurable(name, values[name][labelled], y[labelled], binary=binary)
    higher = {**_directions(ds, others, None), **_directions(ds, tested, higher_is_better)}
    better = _oriented(values, higher)
    refs = y[labelled].astype(np.int32) if binary else y[labelled]
    results = [_row(name, tested, _metric(metric, predictions=v[labelled], references=refs, **opts),
                    higher, 0.5 if binary else 0.0) for name, v in better.items()]
    if (~labelled).any():
        notes.append(f"{int((~labelled).sum())} row(s) without a usable label are left out.")
    n_pos, n_neg = (int((y[labelled] == v).sum()) if binary else None for v in (1, 0))
    target = {"column": label, "kind": kind, "positive": positives, "n_positive": n_pos, "n_negative": n_neg,
              "n_unlabelled": int((~labelled).sum())}
    report = ValidationReport(mode="labels", metric=metric, n_items=len(ds), target=target, results=results,
                              settings={"tokenizer": tok_name}, notes=notes)
    if binary:
        pos_mask, neg_mask = labelled & (y == 1), labelled & (y == 0)
        plot = {"series": {c: (values[c][pos_mask], values[c][neg_mask]) for c in tested},
                "labels": (" / ".join(str(p) for p in positives) or "positive", "the rest"),
                "title": f"{len(ds):,} rows by `{label}`"}
    else:
        plot = {"series": {c: (values[c][labelled], y[labelled]) for c in tested}, "labels": (label,),
                "scatter": True, "title": f"{len(ds):,} rows, rating `{label}`"}
    return report, {c: v for c, v in better.items() if c != RANDOM}, plot


def validate(ds: "Dataset", *, scorers: Any = None, label: Optional[str] = None, positive: Any = None,
             columns: Optional[Sequence[str]] = None, tokenizer: Any = None, top_ratio: float = 0.2,
             n_boot: int = 1000, seed: int = 0, confidence: float = 0.95, batch_size: int = 64,
             plot: Optional[str] = None, higher_is_better: Optional[bool] = None) -> ValidationReport:
    """Validate scores on labelled data: preference pairs (pairwise accuracy) when `ds` has
    chosen/rejected columns and no `label` is given, otherwise a label column (ROC-AUC for a
    binary or categorical label, Spearman for a numeric rating).

    Args:
        scorers: one scorer or a list (any method), ScorerConfigs or model ids/paths, each writing
            its own columns (``column_prefix``); they add the score columns. Pairs need one.
        positive: for a categorical label: the value (or list of values) that counts as good, or
            a mapping ``{value: 1/0}`` (values left out of it are not counted). None: 0/1 and
            booleans are binary, other numbers a rating (Spearman); text needs `positive`.
        columns: the score columns tested against a label; None = every numeric column whose
            name ends in "score" (with `scorers`: their columns).
        tokenizer: for the token-length baseline: a tokenizer, a model id/path, False (or
            "none") to leave the baseline out; None = the first scorer's, else the model
            recorded on `ds`, else the embedded one.
        top_ratio: share selected by each column for the agreement overlaps.
        plot: write the score distributions (chosen vs rejected, positive vs the rest, or a
            scatter against the rating) to this PNG.
        higher_is_better: which end of every tested score is better; None = as each column's
            method declares (r-IFD and losses: lower).

    Raises:
        ConfigError: no scorer for pairs, two scorers writing the same columns, a text label
            without `positive`, or `positive` values not in the column.
        SchemaError: not a supported pair layout, or `label` is not a column.
        ScoreColumnError: no score column."""
    opts = {"n_boot": n_boot, "seed": seed, "confidence": confidence}
    common = dict(tokenizer=tokenizer, opts=opts, batch_size=batch_size, higher_is_better=higher_is_better)
    if label is None and not {"chosen", "rejected"} <= set(ds.column_names):
        raise ConfigError(f"Nothing to validate against: pass label=<column> (columns: {ds.column_names}), "
                          "or preference pairs with 'chosen' and 'rejected' columns.")
    if label is None and (columns is not None or positive is not None):
        raise ConfigError("columns= and positive= apply to a label column; preference pairs "
                          "are scored with scorers=.")
    if label is not None and label not in ds.column_names:
        raise SchemaError(f"Label column {label!r} not found. Columns: {ds.column_names}. "
                          "Pass label=<column>.")
    given = scorers if isinstance(scorers, (list, tuple)) else [] if scorers is None else [scorers]
    scorer_list = [_as_scorer(s) for s in given]
    if label is None:
        report, agree, figure = _validate_pairs(ds, scorer_list, **common)
    else:
        report, agree, figure = _validate_labels(ds, label, positive=positive, columns=columns,
                                                 scorers=scorer_list, **common)
    report.agreement = score_agreement(agree, top_ratio=top_ratio, **opts)
    report.settings = {**opts, **report.settings, "top_ratio": top_ratio,
                       "scorers": [_describe_scorer(s) for s in scorer_list]}
    if plot:
        report.plot = validation_plot(path=plot, figures={r["name"]: r for r in report.results},
                                      metric=METRIC_TITLES[report.metric], **figure)
    return report


def _describe_scorer(scorer: Any) -> dict:
    out = {"class": type(scorer).__name__, "columns": score_columns_of(scorer)}
    if hasattr(getattr(scorer, "config", None), "model"):
        out["model"] = scorer.config.model
    return out


def attach_validation(ds: "Dataset", report: ValidationReport) -> "Dataset":
    """`ds` with a label-column report recorded in its metadata, so a publish of it (or of a
    subset selected from it) writes the report to ``selectit.json`` and the card shows it. A
    "pairs" report (about other data), or one on a different number of rows, is a ConfigError."""
    if report.mode != "labels":
        raise ConfigError("Only a label-column validation describes the scored rows; a "
                          "preference-pair validation is about other data (keep its --json).")
    if report.n_items != len(ds):
        raise ConfigError(f"The validation covered {report.n_items} rows but the dataset has "
                          f"{len(ds)}: run validate on the same scored dataset.")
    return attach(ds, validation=report.to_dict())


def run_validation(ds: "Dataset", config: Any, scorers: Sequence[Any] = ()) -> ValidationReport:
    """:func:`validate` as a :class:`~hf_selectit.config.ValidateConfig` says (the CLI and a run's
    ``validate:`` section); writes ``config.json`` and ``config.plot`` when set. `scorers` are
    always used for pairs, for labels when ``config.score_first`` is True, or is None and `ds` has
    no score column."""
    tokenizer: Any = config.tokenizer
    if tokenizer is None or tokenizer.lower() in ("none", "null", "false"):
        tokenizer = False
    elif tokenizer.lower() == "auto":
        tokenizer = None
    use = list(scorers)
    if config.label is not None:
        has_scores = any(is_numeric(ds, c, strict=True) for c in score_like(ds) if c != config.label)
        if config.score_first is False or (config.score_first is None and has_scores):
            use = []
    report = validate(ds, scorers=use or None, label=config.label, positive=config.positive, plot=config.plot,
                      columns=config.score_columns, tokenizer=tokenizer, top_ratio=config.top_ratio,
                      n_boot=config.n_boot, seed=config.seed, confidence=config.confidence,
                      higher_is_better=config.higher_is_better)
    if config.json:
        write_text(config.json, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report
