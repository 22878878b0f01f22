"""What a selection did, in the numbers a curator (and the dataset card) needs.

:func:`selection_report` compares a scored dataset with a subset chosen from it: rows in, kept and
excluded (by reason), score quantiles of both, mean instruction and response lengths of both
(the paper reports that selected samples are longer), and per-group counts.

The subset is not matched row by row to the scored dataset (``select_top`` adds no column): the
statistics of the kept rows are computed from the subset itself and the exclusion counts from
the difference of the two, so any subset of the scored rows works (``select_top``,
``select_random``, a hand-made ``filter``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .errors import ConfigError, SchemaError
from .select import (error_mask, group_codes, resolve_score_column, score_array, selection_rule,
                     status_column_for)

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

DEFAULT_COLUMN = "selectit_sentence_score"
QUANTILES = (("min", 0.0), ("p10", 0.10), ("p25", 0.25), ("p50", 0.50), ("p75", 0.75),
             ("p90", 0.90), ("max", 1.0))
_LENGTH_BATCH = 10_000


@dataclass
class SelectionReport:
    """Numbers describing one selection (all plain Python values, JSON-serialisable).

    Attributes:
        column: the score column the statistics are about.
        rows_in: rows of the scored dataset.
        rows_kept: rows of the subset.
        rows_excluded: ``rows_in - rows_kept``.
        excluded: reasons, summing to `rows_excluded`: ``error_status`` (status starts with
            "error"), ``nan_score`` (NaN/null score, status not an error) and ``below_cut``
            (valid rows the rule did not keep).
        scores: ``{"all": {...}, "kept": {...}}``: min, p10, p25, p50, p75, p90, max, mean and
            the count ``n`` of valid scores (error and NaN rows left out); values None when empty.
        lengths: ``{"all": {...}, "kept": {...}}`` with the mean ``instruction`` and
            ``response`` length in characters (instruction = the text scored as X, i.e.
            instruction plus input) and ``rows`` measured; None when the rows have no
            recognised instruction/response schema (see `lengths_note`).
        lengths_note: why `lengths` is None, else None.
        by: the grouping column, or None.
        groups: per group ``{"value", "rows_in", "kept", "share"}`` when `by` is set.
        rule: the rule recorded on the subset (:func:`hf_selectit.select.selection_rule`).
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

    def to_dict(self) -> dict:
        """The report as a JSON-serialisable dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """A compact Markdown summary (what the dataset card embeds)."""
        lines = [f"**Selection:** {describe_rule(self.rule, self.column)}", ""]
        lines += ["| | All rows | Selected |", "|---|---:|---:|",
                  f"| Rows | {self.rows_in:,} | {self.rows_kept:,} |"]
        for name in ("mean", *(q for q, _ in QUANTILES)):
            label = "mean" if name == "mean" else name
            lines.append(f"| Score {label} | {_num(self.scores['all'][name])} | "
                         f"{_num(self.scores['kept'][name])} |")
        if self.lengths is not None:
            for part in ("instruction", "response"):
                lines.append(f"| Mean {part} length (chars) | "
                             f"{_num(self.lengths['all'][part], 1)} | "
                             f"{_num(self.lengths['kept'][part], 1)} |")
        ex = self.excluded
        random = bool(self.rule) and str(self.rule.get("method")) == "random"
        rest = "not drawn" if random else "below the cut"
        lines += ["", f"Excluded: {self.rows_excluded:,} rows ({ex['error_status']:,} with an error "
                      f"status, {ex['nan_score']:,} without a score, {ex['below_cut']:,} {rest})."]
        if self.groups:
            lines += ["", f"| `{self.by}` | Rows | Selected | Share |", "|---|---:|---:|---:|"]
            for g in self.groups:
                share = "-" if g["share"] is None else f"{g['share']:.1%}"
                lines.append(f"| {g['value']} | {g['rows_in']:,} | {g['kept']:,} | {share} |")
        return "\n".join(lines) + "\n"


def describe_rule(rule: Optional[dict], column: str) -> str:
    """One sentence describing a recorded selection rule."""
    if not rule:
        return f"a subset of the scored rows (no recorded rule); statistics of `{column}`."
    kind = rule.get("rule")
    if kind == "top_ratio":
        text = f"top {rule['ratio']:.4g} ({rule['ratio']:.2%}) of rows by `{rule['column']}`"
    elif kind == "top_k":
        text = f"top {rule['k']:,} rows by `{rule['column']}`"
    elif kind == "threshold":
        text = f"rows with `{rule['column']}` >= {rule['threshold']:.6g}"
    elif kind in ("random_ratio", "random_k"):
        size = f"{rule['ratio']:.2%} of rows" if kind == "random_ratio" else f"{rule['k']:,} rows"
        return f"random {size} (seed {rule['seed']}), original order."
    else:
        return f"rule {kind!r}."
    if rule.get("by"):
        text += f", within each group of `{rule['by']}`"
    order = ("original row order" if rule.get("order") == "original"
             else "score order (best first)")
    return f"{text}; ties go to the higher original index; {order}."


def selection_report(
    scored: "Dataset",
    subset: "Dataset",
    *,
    column: Optional[str] = None,
    by: Optional[str] = None,
) -> SelectionReport:
    """Compare a scored dataset with a subset selected from it.

    Args:
        scored: the full scored dataset the subset was selected from.
        subset: the selected rows (from :func:`~hf_selectit.select.select_top` or any subset).
        column: score column; None: the column recorded by ``select_top`` on the subset, else
            ``selectit_sentence_score``.
        by: grouping column for per-group counts; None: the ``by`` recorded on the subset.

    Returns:
        A :class:`SelectionReport`.

    Raises:
        ConfigError: the subset has more rows than `scored`, or its recorded rule says it came
            from a dataset of another length; a `by` column missing from either dataset.
        ScoreColumnError: the score column is missing from either dataset.

    Example:
        >>> subset = select_top(ds, ratio=0.2)
        >>> print(selection_report(ds, subset).to_markdown())
    """
    rule = selection_rule(subset)
    if column is None or (column == DEFAULT_COLUMN and column not in scored.column_names):
        column = (rule or {}).get("column") or resolve_score_column(scored, column)
    if by is None:
        by = (rule or {}).get("by")
    if len(subset) > len(scored):
        raise ConfigError(
            f"The subset has {len(subset)} rows, more than the scored dataset ({len(scored)}). "
            f"Pass the scored dataset the subset was selected from."
        )
    if rule and rule.get("rows_in") is not None and rule["rows_in"] != len(scored):
        raise ConfigError(
            f"The subset was selected from {rule['rows_in']} rows but `scored` has {len(scored)}. "
            f"Pass the scored dataset the subset was selected from."
        )

    all_scores, all_err, all_nan = _score_stats(scored, column)
    kept_scores, kept_err, kept_nan = _score_stats(subset, column)
    rows_in, rows_kept = len(scored), len(subset)
    excluded_error = all_err - kept_err
    excluded_nan = all_nan - kept_nan
    excluded = {
        "error_status": excluded_error,
        "nan_score": excluded_nan,
        "below_cut": rows_in - rows_kept - excluded_error - excluded_nan,
    }
    lengths, note = None, None
    try:
        lengths = {"all": mean_lengths(scored), "kept": mean_lengths(subset)}
    except SchemaError as err:
        note = f"no instruction/response columns recognised: {err}"
        logger.info("Selection report without text lengths: %s", note)

    groups = None
    if by is not None:
        codes_all, labels_all = group_codes(scored, by)
        codes_kept, labels_kept = group_codes(subset, by)
        kept_count = dict(zip(labels_kept, np.bincount(codes_kept, minlength=len(labels_kept)).tolist()))
        groups = []
        for label, n in zip(labels_all, np.bincount(codes_all, minlength=len(labels_all)).tolist()):
            kept = int(kept_count.get(label, 0))
            groups.append({"value": label, "rows_in": int(n), "kept": kept,
                           "share": kept / n if n else None})
    return SelectionReport(
        column=column, rows_in=rows_in, rows_kept=rows_kept, rows_excluded=rows_in - rows_kept,
        excluded=excluded, scores={"all": quantiles(all_scores), "kept": quantiles(kept_scores)},
        lengths=lengths, lengths_note=note, by=by, groups=groups, rule=rule,
    )


def _score_stats(ds: "Dataset", column: str) -> tuple[np.ndarray, int, int]:
    """(valid scores, rows with an error status, rows with a NaN score and no error)."""
    scores = score_array(ds, column)
    errors = error_mask(ds, status_column_for(column))
    if errors is None:
        errors = np.zeros(len(scores), dtype=bool)
    nan_rows = np.isnan(scores) & ~errors
    return scores[~errors & ~nan_rows], int(errors.sum()), int(nan_rows.sum())


def quantiles(values: np.ndarray) -> dict[str, Any]:
    """min, p10, p25, p50, p75, p90, max, mean (numpy's linear interpolation) and n.

    Example:
        >>> quantiles(np.array([1.0, 2.0, 3.0]))["p50"]
        2.0
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "mean": None, **{name: None for name, _ in QUANTILES}}
    qs = np.quantile(values, [q for _, q in QUANTILES])
    return {"n": int(values.size), "mean": float(values.mean()),
            **{name: float(v) for (name, _), v in zip(QUANTILES, qs)}}


def mean_lengths(ds: "Dataset") -> dict[str, Any]:
    """Mean instruction (X as scored) and response length in characters over readable rows.

    Raises:
        SchemaError: the columns match no instruction/response schema.
    """
    from .prompts import detect_schema, extract_pairs

    schema = detect_schema(ds.column_names)
    text_columns = [c for c in (schema.instruction, schema.input, schema.response, schema.chat) if c]
    total_x = total_y = rows = 0
    for batch in ds.select_columns(text_columns).iter(batch_size=_LENGTH_BATCH):
        for pair in extract_pairs(batch, columns=schema):
            if pair.error is None:
                total_x += len(pair.instruction)
                total_y += len(pair.response)
                rows += 1
    if rows == 0:
        return {"instruction": None, "response": None, "rows": 0}
    return {"instruction": total_x / rows, "response": total_y / rows, "rows": rows}


def _num(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
