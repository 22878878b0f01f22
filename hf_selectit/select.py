"""The selection step: subsets of a scored dataset (docs/method.md sections 4-5, which also say
what is done where the paper is silent: N counts error and NaN rows, groups, row order).

Pure ``Dataset -> Dataset`` functions; nothing here loads a model. A subset is
``ds.select(indices)`` of the input: every kept row is byte-for-byte the scored row. The rule
and the kept rows are the subset's ``selection``; the rule also travels with the rows
(:func:`selection_rule`).
"""

from __future__ import annotations

import logging
import math
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import provenance
from ._version import __version__
from .config import DEFAULT_RATIO, ORDERS
from .config import selection_rule as _resolve_rule
from .errors import ConfigError, ScoreColumnError
from .formulas import model_level_scores, model_weights
from .methods import columns as schema

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

TIE_BREAK = "score descending, then original index descending (ties go to the higher index)"
TIE_BREAK_LOWER = "score ascending (lower is better), then original index descending (ties go to the higher index)"


def score_array(ds: "Dataset", column: str) -> np.ndarray:
    """The score column as float64 numpy (nulls become NaN), in the dataset's row order; a
    ScoreColumnError when it does not exist or is not a numeric scalar column."""
    if column not in ds.column_names:
        raise ScoreColumnError(
            f"Score column {column!r} not found. Score-like columns present: "
            f"{schema.score_like(ds)}; all columns: {ds.column_names}. Score the dataset first "
            f"(ds.map(SelectITScorer(), batched=True)) or pass column=<one of them> "
            f"(CLI: --column NAME)."
        )
    if not schema.is_numeric(ds, column):
        raise ScoreColumnError(f"Column {column!r} has type {ds.features[column]!r}; expected one number "
                               f"per row. Score-like columns present: {schema.score_like(ds)}.")
    # Through Arrow (None, a "null" column's value, is NaN in float64): the numpy formatter of
    # datasets 5 builds a Python object per value (~40 s/1M rows).
    return np.asarray(ds.with_format("arrow")[column].to_numpy(zero_copy_only=False), dtype=np.float64)


def scores_and_errors(ds: "Dataset", column: str) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`score_array`, mask of rows whose status is an error; all False without a status column)."""
    scores = score_array(ds, column)
    errors = schema.error_mask(ds, schema.columns_of(ds, column).status)
    return scores, errors if errors is not None else np.zeros(len(scores), dtype=bool)


def group_codes(ds: "Dataset", by: str) -> tuple[np.ndarray, list]:
    """(code per row, label per code) of a grouping column; a null value is its own group."""
    if not isinstance(by, str):
        raise ConfigError(f"by={by!r} is invalid: expected the name of one column.")
    if by not in ds.column_names:
        raise ConfigError(f"by={by!r} is not a column of the dataset. Columns: {ds.column_names}.")
    values = ds.with_format("arrow")[by]
    kind = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    scalar = ("string", "large_string", "integer", "floating", "boolean", "null", "temporal", "binary",
              "large_binary", "decimal")
    if not any(getattr(pa.types, f"is_{name}")(kind) for name in scalar):
        raise ConfigError(
            f"by={by!r} cannot group rows: the column holds {ds.features[by]} values (a list or "
            f"struct per row), not one label per row. Group by a column with one string, number or "
            f"bool per row, e.g. ds = ds.map(lambda r: {{'group': r[{by!r}][0]}}) and by='group'.")
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, encoded.dictionary.to_pylist()


def selectit_ranking(scores: np.ndarray, eligible: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """Indices of the `eligible` rows in SelectIT order: best score first (descending, or ascending
    when lower is better), ties to the higher index.

    Example:
        >>> selectit_ranking(np.array([1.0, 2.0, 1.0]), np.array([True, True, True]))
        array([1, 2, 0])
    """
    candidates = np.flatnonzero(eligible)[::-1]  # highest index first ...
    # ... so a stable sort on the best-first key keeps the higher index ahead among ties.
    key = -scores[candidates] if higher_is_better else scores[candidates]
    return candidates[np.argsort(key, kind="stable")]


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_ratio(ratio: Any) -> float:
    if not _is_real(ratio) or not (0 < float(ratio) <= 1):
        raise ConfigError(f"ratio={ratio!r} is invalid: expected a number in (0, 1] (paper: 0.2).")
    return float(ratio)


def _is_count(value: Any, least: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= least


def _check_k(k: Any, n_rows: int) -> int:
    if not _is_count(k, 1):
        raise ConfigError(f"k={k!r} is invalid: expected an integer >= 1.")
    if k > n_rows:
        raise ConfigError(f"k={k} is larger than the dataset ({n_rows} rows). Pass k <= {n_rows} or "
                          "ratio=1.0 to keep every valid row.")
    return int(k)


def select_top(ds: "Dataset", *, ratio: Optional[float] = DEFAULT_RATIO, k: Optional[int] = None,
               threshold: Optional[float] = None, column: Optional[str] = None, by: Optional[str] = None,
               order: str = "original", cutoff: Optional[str] = "auto",
               also_below_one: Optional[Sequence[str]] = None,
               higher_is_better: Optional[bool] = None) -> "Dataset":
    """SelectIT's selection (docs/method.md section 5; the IFD cut-off: section 7.1):
    ``ds.select(indices)`` of the best-scored rows, with ``.selection``
    (:class:`hf_selectit.provenance.Selection`) set and the rule recorded. Rows rank best first
    (the column's better end unless `higher_is_better` says otherwise), ties to the higher
    original index; error and NaN rows are never kept.

    Args:
        ratio, k, threshold: keep ``int(N * ratio)`` rows (N = all rows; the default 0.2 gives
            way to `k` or `threshold`), the top `k`, or the rows ``>= threshold`` (``<=`` when
            lower is better); per group with `by`.
        column: None: :func:`hf_selectit.methods.columns.resolve`.
        order: "original" keeps the row order; "score" gives the authors' (best first).
        cutoff: "ifd" drops scores > 1, "ifd-strict" >= 1, None none, "auto" the column's
            method's; with one (or `also_below_one`: more columns that must be < 1) the quota
            counts the rows left.

    Raises:
        ConfigError: an invalid or conflicting ratio/k/threshold, order or `by` column.
        ScoreColumnError: `column` is missing or not numeric (the message lists score-like ones).

    Example:
        >>> subset = select_top(ds, ratio=0.2)                      # the paper
        >>> subset = select_top(ds, k=1000, by="source", order="score")
        >>> subset = select_top(ds, column="ifd_score", ratio=0.1)           # Cherry: IFD <= 1, top 10%
    """
    rule = _resolve_rule(ratio, k, threshold)
    if order not in ORDERS:
        raise ConfigError(f"order={order!r} is invalid: expected one of {list(ORDERS)}.")
    # Before the cut-off: "auto" depends on the column actually ranked by.
    column = schema.resolve(ds, column)
    cols = schema.columns_of(ds, column)
    if higher_is_better is not None and not isinstance(higher_is_better, bool):
        raise ConfigError(f"higher_is_better={higher_is_better!r} is invalid: expected True, False or None "
                          "(the column's own direction).")
    higher = cols.higher_is_better(column) if higher_is_better is None else higher_is_better
    cut = _resolve_cutoff(cutoff, column, cols)
    below = _check_below_one(also_below_one)
    n_rows = len(ds)
    if rule == "top_ratio":
        ratio = _check_ratio(ratio)
    elif rule == "top_k":
        k = _check_k(k, n_rows)
    elif not _is_real(threshold) or not math.isfinite(threshold):
        raise ConfigError(f"threshold={threshold!r} is invalid: expected a finite number.")
    scores, errors = scores_and_errors(ds, column)
    codes, labels = group_codes(ds, by) if by is not None else (np.zeros(n_rows, np.int64), [None])
    status_column = cols.status if cols.status in ds.column_names else None
    nan_rows = np.isnan(scores) & ~errors
    cut_rows = _cutoff_mask(ds, scores, cut, below) & ~errors & ~nan_rows
    eligible = ~errors & ~nan_rows & ~cut_rows

    ranking = selectit_ranking(scores, eligible, higher_is_better=higher)
    if rule == "threshold":
        keep = ranking[scores[ranking] >= threshold] if higher else ranking[scores[ranking] <= threshold]
    else:
        n_groups = len(labels)
        # Cherry ranks the rows left after the IFD cut-off: the quota counts those only.
        sizes = np.bincount(codes[eligible] if (cut or below) else codes, minlength=n_groups)
        quota = (np.full(n_groups, k, np.int64) if rule == "top_k"
                 else np.trunc(sizes * ratio).astype(np.int64))  # int(N_g * ratio), as the authors
        # Each ranked row's place within its group: a stable sort by group keeps the SelectIT order.
        group_of, by_group = codes[ranking], np.argsort(codes[ranking], kind="stable")
        position = np.empty(len(ranking), np.int64)
        position[by_group] = np.arange(len(ranking)) - np.searchsorted(group_of[by_group], group_of[by_group])
        keep = ranking[position < quota[group_of]]  # in the global ranking order (order="score")
        short = np.flatnonzero(np.bincount(codes[eligible], minlength=n_groups) < quota)
        if len(short):
            what = "the dataset" if by is None else f"{len(short)} group(s) of {by!r}"
            logger.warning("Fewer valid rows than the quota in %s (first: %r wants %d); all valid rows "
                           "of it are kept.", what, labels[short[0]], int(quota[short[0]]))
    if order == "original":
        keep = np.sort(keep)

    n_errors, n_nan, n_cut = int(errors.sum()), int(nan_rows.sum()), int(cut_rows.sum())
    if n_cut:
        logger.info("%d of %d rows dropped by the cut-off at 1 (%s%s) before ranking.", n_cut, n_rows,
                    cut or "no cut-off on the score", f", also < 1: {below}" if below else "")
    if n_rows and n_errors + n_nan == n_rows:
        logger.warning(
            "No row of %d has a score in %r (%d with an error status, %d NaN/null): every row "
            "failed to score, so nothing is kept. See the %s column for the reasons and re-score.",
            n_rows, column, n_errors, n_nan, status_column or "status")
    elif n_errors or n_nan:
        logger.warning("%d of %d rows are never selected: %d with an error status (%s), %d with a "
                       "NaN/null score in %r.", n_errors + n_nan, n_rows, n_errors, status_column, n_nan, column)
    if len(keep) == 0:
        logger.warning("select_top kept no rows (rule %s, %d rows in).", rule, n_rows)

    groups = None
    if by is not None:
        counts = [np.bincount(codes[rows], minlength=len(labels)) for rows in (slice(None), keep, errors, nan_rows)]
        groups = [{"value": label, "rows_in": int(size), "kept": int(kept), "rows_error": int(e), "rows_nan": int(nn)}
                  for label, size, kept, e, nn in zip(labels, *counts)]
    return _select_and_record(
        ds, keep, method="selectit", rule=rule, ratio=ratio if rule == "top_ratio" else None,
        k=k if rule == "top_k" else None, threshold=float(threshold) if rule == "threshold" else None,
        column=column, status_column=status_column, by=by, order=order, higher_is_better=higher,
        tie_break=TIE_BREAK if higher else TIE_BREAK_LOWER,
        quota_base=("rows left after the cut-off at 1 (valid rows)" if (cut or below) else
                    "all rows, error and NaN rows included") + "; quota per group when by is set",
        cutoff=cut, also_below_one=below or None, rows_cut=n_cut, rows_in=n_rows, rows_kept=int(len(keep)),
        rows_error=n_errors, rows_nan=n_nan, rows_valid=int(eligible.sum()), groups=groups)


def _resolve_cutoff(cutoff: Any, column: str, cols: Any) -> Optional[str]:
    if cutoff == "auto":
        # The method's own default (IFD and r-IFD: the cut-off at 1), for its main score only.
        return cols.cutoff if column == cols.score else None
    if cutoff is None or cutoff in ("ifd", "ifd-strict"):
        return cutoff
    raise ConfigError(f"cutoff={cutoff!r} is invalid: expected 'auto', 'ifd' (drop scores > 1, Cherry), "
                      "'ifd-strict' (drop scores >= 1, Superfiltering) or None (no cut-off).")


def _check_below_one(columns: Any) -> list:
    columns = [] if columns is None else [columns] if isinstance(columns, str) else columns
    if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
        raise ConfigError(f"also_below_one={columns!r} is invalid: expected a list of score column names, "
                          "e.g. ['rifd_score'].")
    return list(columns)


def _cutoff_mask(ds: "Dataset", scores: np.ndarray, cut: Optional[str], below: list) -> np.ndarray:
    """Rows the IFD cut-off drops: score > 1 ("ifd") or >= 1 ("ifd-strict"), or not < 1 in `below`."""
    with np.errstate(invalid="ignore"):
        drop = {"ifd": scores > 1, "ifd-strict": scores >= 1}.get(cut, np.zeros(len(scores), dtype=bool))
        for other in below:
            values, errors = scores_and_errors(ds, other)
            drop |= ~(values < 1) | errors  # NaN fails too
    return drop


def select_random(ds: "Dataset", *, ratio: Optional[float] = None, k: Optional[int] = None,
                  seed: int = 0) -> "Dataset":
    """The random baseline: a uniform sample of ``int(N * ratio)`` (default 0.2) or `k` rows, in
    the original order, with the rule recorded; the same `seed` and length give the same rows.

    Example:
        >>> baseline = select_random(ds, k=len(select_top(ds)), seed=0)
    """
    if ratio is not None and k is not None:
        raise ConfigError(f"Got ratio={ratio!r} and k={k!r}: give one of them.")
    n_rows = len(ds)
    if k is not None:
        size, rule = _check_k(k, n_rows), "random_k"
    else:
        ratio = _check_ratio(DEFAULT_RATIO if ratio is None else ratio)
        size, rule = int(n_rows * ratio), "random_ratio"
    if not _is_count(seed, 0):
        raise ConfigError(f"seed={seed!r} is invalid: expected a whole number >= 0, e.g. seed=0 (CLI: --seed 0).")
    keep = np.sort(np.random.default_rng(int(seed)).choice(n_rows, size=size, replace=False))
    return _select_and_record(ds, keep, method="random", rule=rule, ratio=ratio,
                              k=size if k is not None else None, seed=int(seed), order="original",
                              quota_base="all rows", rows_in=n_rows, rows_kept=int(size))


_RULE_KEYS = ("method", "rule", "ratio", "k", "threshold", "seed", "column", "status_column", "by",
              "order", "higher_is_better", "tie_break", "quota_base", "cutoff", "also_below_one", "rows_cut",
              "rows_in", "rows_kept", "rows_error", "rows_nan", "rows_valid", "groups")


def _select_and_record(ds: "Dataset", keep: np.ndarray, **fields: Any) -> "Dataset":
    keep = keep.astype(np.int64)
    # Every key is always written (None when it does not apply): provenance merges dicts one level
    # deep, and no key of an earlier selection may survive into this one.
    record = dict.fromkeys(_RULE_KEYS) | fields | {"hf_selectit_version": __version__}
    return provenance.attach(ds.select(keep), selection=record, kept_rows=keep)


def selection_rule(ds: "Dataset") -> Optional[dict]:
    """The rule :func:`select_top` / :func:`select_random` recorded on a subset (its parameters and
    counts: docs/method.md section 5), or None."""
    chosen = provenance.selection_of(ds)
    return dict(chosen.rule) if chosen is not None else None


def fuse_models(ds: "Dataset", *, columns: Sequence[Union[str, tuple]],
                params: Optional[Sequence[float]] = None, weights: Union[Sequence[float], str, None] = None,
                output: str = schema.FUSED_COLUMN) -> "Dataset":
    """SelectIT's model level (docs/method.md section 4, also for the status column): adds (or
    replaces) `output`, ``S_model = sum_m w_m * S_sent_m`` (NaN when any model has none), and its
    status column; the weights and the better end (the inputs', which must agree) are recorded
    under ``fusion`` in the provenance.

    `columns`: one score column per model, of `ds` or ``(other_dataset, column)`` (the SAME rows
    in the SAME order). `params`: parameter counts (weights ``theta_m / sum theta``, the paper);
    `weights`: as given, or ``"selectit-repo"`` (the authors' fixed 7/20, 13/20, 70/90). With
    neither, each model's recorded ``parameter_count``.

    Raises:
        ConfigError: no columns, a dataset of another length, invalid or conflicting params and
            weights, no recorded parameter count, columns whose better ends differ.
        ScoreColumnError: a column is missing or not numeric.

    Example:
        >>> ds = fuse_models(ds, columns=["m7_sentence_score", "m13_sentence_score"],
        ...                  params=[7e9, 13e9])
        >>> subset = select_top(ds, column="selectit_model_score")
    """
    from datasets import Dataset

    if isinstance(columns, (str, tuple)) or not isinstance(columns, Sequence) or not columns:
        raise ConfigError(f"columns={columns!r} is invalid: expected a non-empty list of score column names "
                          "(or (dataset, column) pairs), e.g. ['m1_sentence_score', 'm2_sentence_score'].")
    sources: list[tuple[Any, str, str]] = []  # (dataset, column, label)
    for i, spec in enumerate(columns):
        pair = (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], Dataset)
                and isinstance(spec[1], str))
        if not (pair or isinstance(spec, str)):
            raise ConfigError(f"columns[{i}]={spec!r} is invalid: expected a column name or a "
                              "(Dataset, column_name) pair.")
        src, name = spec if pair else (ds, spec)
        if len(src) != len(ds):
            raise ConfigError(f"columns[{i}]: the dataset holding {name!r} has {len(src)} rows, "
                              f"expected {len(ds)} (the same rows in the same order as ds).")
        sources.append((src, name, f"{name}@columns[{i}]" if pair else name))
    if output in [name for src, name, _ in sources if src is ds]:
        raise ConfigError(f"output={output!r} is one of the input columns; choose another name.")
    scores = np.stack([score_array(src, name) for src, name, _ in sources])
    schemas = [schema.columns_of(src, name) for src, name, _ in sources]
    directions = {cols.higher_is_better(name) for cols, (_, name, _) in zip(schemas, sources)}
    if len(directions) > 1:
        raise ConfigError(
            f"columns={[label for _, _, label in sources]} mix scores whose higher end is better with "
            "scores whose lower end is better (e.g. r-IFD); a weighted sum of them ranks nothing. Fuse "
            "columns of one direction.")
    higher = directions.pop()

    scheme = "explicit" if weights is not None and not isinstance(weights, str) else weights
    if params is None and weights is None:
        params = [provenance.scorer_infos(src).get(cols.prefix, {}).get("parameter_count")
                  for (src, _, _), cols in zip(sources, schemas)]
        missing = [label for (_, _, label), count in zip(sources, params) if count is None]
        if missing:
            raise ConfigError(f"No parameter count recorded for {missing} (scored without hf-selectit's "
                              "provenance). Pass params=[...] (e.g. [7e9, 13e9, 70e9]) or weights=[...].")
    if params is not None:
        scheme = "paper"
        if any(not _is_real(p) for p in params):
            raise ConfigError(f"params={list(params)!r} is invalid: expected numbers > 0.")
    w = model_weights(n_models=len(sources), params=params, weights=weights)
    fused = model_level_scores(scores, w)

    n_rows = len(ds)
    status = np.full(n_rows, schema.OK, dtype=object)
    status[np.any([schema.truncated_mask(src, cols.status) for (src, _, _), cols in zip(sources, schemas)],
                  axis=0)] = schema.TRUNCATED
    # Reverse order so that the first model's reason wins.
    for (src, name, label), cols, row_scores in reversed(list(zip(sources, schemas, scores))):
        status[np.isnan(row_scores)] = schema.error_status(f"no score in {label}")
        errors = schema.error_mask(src, cols.status)
        if errors is not None and errors.any():
            reasons = src.with_format("arrow")[cols.status].to_numpy(zero_copy_only=False)[errors]
            status[errors] = [schema.error_status(f"{label}: {schema.error_reason(r)}") for r in reasons]

    status_out = schema.fused(output, higher_is_better=higher).status
    existing = [c for c in (output, status_out) if c in ds.column_names]
    if existing:
        logger.info("fuse_models replaces the existing column(s) %s.", existing)
        ds = ds.remove_columns(existing)
    ds = ds.add_column(output, fused).add_column(status_out, status.tolist())
    n_nan = int(np.isnan(fused).sum())
    if n_nan:
        logger.warning("%d of %d fused scores are NaN (a model had no score for the row).", n_nan, n_rows)
    fusion = {"columns": [label for _, _, label in sources], "scheme": scheme,
              "params": [float(p) for p in params] if params is not None else None,
              "weights": [float(x) for x in w], "status_column": status_out, "higher_is_better": higher,
              "rows_nan": n_nan}
    return provenance.attach(ds, fusion={output: fusion})

