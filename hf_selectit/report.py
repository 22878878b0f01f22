"""What a selection did, in the numbers a curator (and the dataset card) needs, beside the cheap
baselines (large studies find that many selectors do no better than these).

The kept rows' statistics come from the subset itself, so any subset of the scored rows works (a
hand-made ``filter`` too); the baseline overlaps need the rows kept, which ``select_top`` and
``select_random`` return with the subset (``subset.selection``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np

from . import provenance
from .errors import ConfigError, SchemaError
from .markdown import md_code, md_text
from .methods import columns as schema
from .metrics import stats
from .prompts import detect_schema, extract_pairs
from .select import group_codes, scores_and_errors, selection_rule, selectit_ranking

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

QUANTILES = (("min", 0.0), ("p10", 0.10), ("p25", 0.25), ("p50", 0.50), ("p75", 0.75),
             ("p90", 0.90), ("max", 1.0))
_LENGTH_BATCH = 10_000


@dataclass
class SelectionReport:
    """Numbers describing one selection (all plain Python values, JSON-serialisable). The paper
    reports that selected samples are longer: hence the lengths and the length baselines.

    Attributes:
        excluded: reasons, summing to `rows_excluded`: ``error_status`` (status starts with
            "error"), ``nan_score`` (NaN/null score, status not an error) and ``below_cut``.
        scores: ``{"all": {...}, "kept": {...}}``, each :func:`quantiles` of the valid scores.
        lengths: ``{"all": {...}, "kept": {...}}``, each :func:`mean_lengths` (instruction = the
            text scored as X); None without a recognised instruction/response schema (see
            `lengths_note`).
        groups: per group of the column `by`: ``{"value", "rows_in", "kept", "share"}``.
        rule: the rule recorded on the subset (:func:`hf_selectit.select.selection_rule`).
        length_correlation: Spearman of the score with the response length in characters
            (``value``, ``ci_low``, ``ci_high`` (bootstrap 95%), ``n``), or None without text.
        baselines: ``{"size", "rows_in", "length": {...}, "random": {...}}``: the kept set
            against a selection of the same size by length, and a random one: ``both`` (rows in
            both), ``share`` (of the kept rows), ``jaccard``, ``jaccard_ci_low``/``_high``;
            ``random`` also ``seed`` and ``expected_share``. None when the subset does not carry
            the rows it kept (see `baselines_note`).
    """

    column: str
    rows_in: int
    rows_kept: int
    rows_excluded: int
    excluded: dict
    scores: dict
    lengths: Optional[dict]
    lengths_note: Optional[str]
    by: Optional[str]
    groups: Optional[list]
    rule: Optional[dict]
    length_correlation: Optional[dict] = None
    baselines: Optional[dict] = None
    baselines_note: Optional[str] = None

    def to_dict(self) -> dict:
        """The report as a JSON-serialisable dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """A compact Markdown summary (what the dataset card embeds)."""
        lines = [f"**Selection:** {describe_rule(self.rule, self.column)}", ""]
        lines += ["| | All rows | Selected |", "|---|---:|---:|",
                  f"| Rows | {self.rows_in:,} | {self.rows_kept:,} |"]
        lines += [f"| Score {name} | {_num(self.scores['all'][name])} | {_num(self.scores['kept'][name])} |"
                  for name in ("mean", *(q for q, _ in QUANTILES))]
        if self.lengths is not None:
            for part in ("instruction", "response"):
                lines.append(f"| Mean {part} length (chars) | {_num(self.lengths['all'][part], 1)} | "
                             f"{_num(self.lengths['kept'][part], 1)} |")
        ex = self.excluded
        rest = "not drawn" if self.rule and self.rule.get("method") == "random" else "below the cut"
        lines += ["", f"Excluded: {self.rows_excluded:,} rows ({ex['error_status']:,} with an error "
                      f"status, {ex['nan_score']:,} without a score, {ex['below_cut']:,} {rest})."]
        lines += self._baseline_lines()
        if self.groups:
            # Group values and column names are the user's data: escaped for a table cell (no raw
            # HTML, no `|` or newline that would break the row).
            lines += ["", f"| {md_text(self.by)} | Rows | Selected | Share |", "|---|---:|---:|---:|"]
            lines += [f"| {md_text(g['value'])} | {g['rows_in']:,} | {g['kept']:,} | {_share(g['share'])} |"
                      for g in self.groups]
        return "\n".join(lines) + "\n"

    def _baseline_lines(self) -> list[str]:
        lines = []
        corr = self.length_correlation
        if corr is not None:
            lines += ["", f"Score vs response length (characters): Spearman {_num(corr['value'], 3)} "
                          f"[{_num(corr['ci_low'], 3)}, {_num(corr['ci_high'], 3)}] (bootstrap 95%, "
                          f"{corr['n']:,} rows)."]
        b = self.baselines
        if b is not None:
            lines += ["", f"| Kept set vs another selection of {b['size']:,} rows | In both | "
                          "Share of kept | Jaccard [95%] |", "|---|---:|---:|---|"]
            for key, label in (("length", "longest responses (length only)"),
                               ("random", f"random (seed {b['random']['seed']}; expected share "
                                          f"{b['random']['expected_share']:.1%})")):
                o = b[key]
                lines.append(f"| {label} | {o['both']:,} | {_share(o['share'])} | {_num(o['jaccard'], 3)} "
                             f"[{_num(o['jaccard_ci_low'], 3)}, {_num(o['jaccard_ci_high'], 3)}] |")
        elif self.baselines_note:
            lines += ["", f"Baseline overlaps: not computed ({md_text(self.baselines_note)})."]
        return lines


def describe_rule(rule: Optional[dict], column: str) -> str:
    """One sentence describing a recorded selection rule."""
    if not rule:
        return f"a subset of the scored rows (no recorded rule); statistics of {md_code(column)}."
    kind = rule.get("rule")
    lower = rule.get("higher_is_better") is False
    best = " (lower is better)" if lower else ""
    if kind == "top_ratio":
        text = f"top {rule['ratio']:.4g} ({rule['ratio']:.2%}) of rows by {md_code(rule['column'])}{best}"
    elif kind == "top_k":
        text = f"top {rule['k']:,} rows by {md_code(rule['column'])}{best}"
    elif kind == "threshold":
        text = f"rows with {md_code(rule['column'])} {'<=' if lower else '>='} {rule['threshold']:.6g}"
    elif kind in ("random_ratio", "random_k"):
        size = f"{rule['ratio']:.2%} of rows" if kind == "random_ratio" else f"{rule['k']:,} rows"
        return f"random {size} (seed {rule['seed']}), original order."
    else:
        return f"rule {kind!r}."
    if rule.get("by"):
        text += f", within each group of {md_code(rule['by'])}"
    order = "original row order" if rule.get("order") == "original" else "score order (best first)"
    return f"{text}; ties go to the higher original index; {order}."


def selection_report(scored: "Dataset", subset: "Dataset", *, column: Optional[str] = None,
                     by: Optional[str] = None, n_boot: int = 1000, seed: int = 0) -> SelectionReport:
    """Compare a scored dataset with a subset selected from it (by :func:`~hf_selectit.select.select_top`
    or any other way). `column` (None: the one recorded on the subset, else as
    :func:`hf_selectit.methods.columns.resolve` finds it) and `by` (None: the recorded one) name
    the score and grouping columns; `n_boot` and `seed` serve the intervals and the random
    baseline selection.

    Raises:
        ConfigError: the subset has more rows than `scored`, or its recorded rule says it came
            from a dataset of another length; a `by` column missing from either dataset.
        ScoreColumnError: the score column is missing from either dataset."""
    rule = selection_rule(subset)
    column = schema.resolve(scored, column, rule=rule)
    if by is None:
        by = (rule or {}).get("by")
    if len(subset) > len(scored):
        raise ConfigError(f"The subset has {len(subset)} rows, more than the scored dataset ({len(scored)}). "
                          "Pass the scored dataset the subset was selected from.")
    if rule and rule.get("rows_in") is not None and rule["rows_in"] != len(scored):
        raise ConfigError(f"The subset was selected from {rule['rows_in']} rows but `scored` has "
                          f"{len(scored)}. Pass the scored dataset the subset was selected from.")

    all_scores, all_err, all_nan = _score_stats(scored, column)
    kept_scores, kept_err, kept_nan = _score_stats(subset, column)
    rows_in, rows_kept = len(scored), len(subset)
    excluded = {"error_status": all_err - kept_err, "nan_score": all_nan - kept_nan}
    excluded["below_cut"] = rows_in - rows_kept - sum(excluded.values())
    lengths = length_corr = baselines = note = baselines_note = None
    try:
        lengths = {"all": mean_lengths(scored), "kept": mean_lengths(subset)}
    except SchemaError as err:
        note = baselines_note = f"no instruction/response columns recognised: {err}"
        logger.info("Selection report without text lengths: %s", note)
    else:
        response_chars = char_lengths(response_texts(scored))
        scores = valid_scores(scored, column)
        ok = stats.finite_mask(scores, response_chars)
        length_corr = stats.estimate(stats.spearman_statistic(scores[ok], response_chars[ok]), int(ok.sum()),
                                     n_boot=n_boot, seed=seed)
        baselines, baselines_note = _baseline_overlaps(scored, subset, response_chars,
                                                       n_boot=n_boot, seed=seed)
    groups = None
    if by is not None:
        kept = dict(_group_sizes(subset, by))
        groups = [{"value": label, "rows_in": n, "kept": kept.get(label, 0),
                   "share": kept.get(label, 0) / n if n else None}
                  for label, n in _group_sizes(scored, by)]
    return SelectionReport(
        column=column, rows_in=rows_in, rows_kept=rows_kept, rows_excluded=rows_in - rows_kept,
        excluded=excluded, scores={"all": quantiles(all_scores), "kept": quantiles(kept_scores)},
        lengths=lengths, lengths_note=note, by=by, groups=groups, rule=rule,
        length_correlation=length_corr, baselines=baselines, baselines_note=baselines_note)


def _group_sizes(ds: "Dataset", by: str) -> list[tuple[Any, int]]:
    codes, labels = group_codes(ds, by)
    return list(zip(labels, np.bincount(codes, minlength=len(labels)).tolist()))


def kept_rows(scored: "Dataset", subset: "Dataset") -> Optional[np.ndarray]:
    """Indices into `scored` of the subset's rows, as the select step returned them
    (``subset.selection``); None when the subset does not carry them or came from other rows."""
    chosen = provenance.selection_of(subset)
    if (chosen is None or chosen.indices is None or len(chosen.indices) != len(subset)
            or chosen.rule.get("rows_in") not in (None, len(scored))):
        return None
    return chosen.indices


def _overlap(kept: np.ndarray, other: np.ndarray, n_rows: int, *, n_boot: int, seed: int) -> dict:
    a, b = (np.isin(np.arange(n_rows), rows) for rows in (kept, other))
    both = int((a & b).sum())
    jac = stats.estimate(stats.jaccard_statistic(a, b), n_rows, n_boot=n_boot, seed=seed)
    return {"both": both, "share": both / len(kept) if len(kept) else None, "jaccard": jac["value"],
            "jaccard_ci_low": jac["ci_low"], "jaccard_ci_high": jac["ci_high"]}


def _baseline_overlaps(scored: "Dataset", subset: "Dataset", response_chars: np.ndarray, *, n_boot: int,
                       seed: int) -> tuple[Optional[dict], Optional[str]]:
    kept = kept_rows(scored, subset)
    if kept is None:
        return None, ("the subset has no recorded selection rule with the rows it kept of the scored "
                      "rows (select with select_top/select_random)")
    n_rows, size = len(scored), len(kept)
    # Same size, same tie rule as select_top, ranked by response length alone.
    by_length = selectit_ranking(response_chars, np.isfinite(response_chars))[:size]
    drawn = np.random.default_rng(seed).choice(n_rows, size=size, replace=False)
    return {"size": size, "rows_in": n_rows,
            "length": _overlap(kept, by_length, n_rows, n_boot=n_boot, seed=seed),
            "random": {**_overlap(kept, drawn, n_rows, n_boot=n_boot, seed=seed), "seed": seed,
                       "expected_share": size / n_rows if n_rows else None}}, None


def response_texts(ds: "Dataset") -> list[Optional[str]]:
    """The response of each row as a scorer reads it (None where the row is unreadable); a
    SchemaError when the columns match no instruction/response schema."""
    return [p.response if p.error is None else None for p in _pairs(ds)]


def _pairs(ds: "Dataset") -> Iterator[Any]:
    """The (instruction, response) Pair of each row, read in batches of the text columns only."""
    text_schema = detect_schema(ds.column_names)
    for batch in ds.select_columns(list(text_schema.columns)).iter(batch_size=_LENGTH_BATCH):
        yield from extract_pairs(batch, columns=text_schema)


def char_lengths(texts: Sequence[Optional[str]]) -> np.ndarray:
    """Length in characters of each text (NaN where it is None)."""
    return np.array([np.nan if t is None else float(len(t)) for t in texts])


def valid_scores(ds: "Dataset", column: str) -> np.ndarray:
    """The score column as float64 with the rows of an error status set to NaN."""
    scores, errors = scores_and_errors(ds, column)
    return np.where(errors, np.nan, scores)


def _score_stats(ds: "Dataset", column: str) -> tuple[np.ndarray, int, int]:
    """(valid scores, rows with an error status, rows with a NaN score and no error)."""
    scores, errors = scores_and_errors(ds, column)
    nan_rows = np.isnan(scores) & ~errors
    return scores[~errors & ~nan_rows], int(errors.sum()), int(nan_rows.sum())


def quantiles(values: np.ndarray) -> dict[str, Any]:
    """min, p10, p25, p50, p75, p90, max, mean (numpy's linear interpolation) and n."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "mean": None, **{name: None for name, _ in QUANTILES}}
    qs = np.quantile(values, [q for _, q in QUANTILES])
    return {"n": int(values.size), "mean": float(values.mean()),
            **{name: float(v) for (name, _), v in zip(QUANTILES, qs)}}


def mean_lengths(ds: "Dataset") -> dict[str, Any]:
    """Mean instruction (X as scored) and response length in characters over readable rows."""
    sizes = [(len(p.instruction), len(p.response)) for p in _pairs(ds) if p.error is None]
    instruction, response = np.mean(sizes, axis=0).tolist() if sizes else (None, None)
    return {"instruction": instruction, "response": response, "rows": len(sizes)}


def _num(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _share(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1%}"
