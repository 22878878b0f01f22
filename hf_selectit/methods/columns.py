"""The column schema: which columns a method writes, which one is its score, which end of each
score is better, and how its row status reads. No other module spells a score column's name or
parses a column suffix. Each method has one :class:`ScoreColumns` in :data:`SCHEMAS`, with its
default prefix; :func:`columns_of` traces a dataset's score column to its schema. Row status, one
per scorer and row: ``"ok"``, ``"truncated"`` (scored, text cut to fit) or ``"error: <reason>"``
(no score; never selected).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

import numpy as np

from .. import provenance
# The fused model-level column `fuse_models` writes by default: the fusion option's default.
from ..config import DEFAULT_PREFIX, FUSED_COLUMN, METHOD_CONFIGS  # noqa: F401  (FUSED_COLUMN: re-exported)
from ..errors import ScoreColumnError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

OK = "ok"
TRUNCATED = "truncated"
_ERROR = "error"


def error_status(reason: str) -> str:
    """The status of a row that could not be scored: ``"error: <reason>"``."""
    return f"{_ERROR}: {reason}"


def row_status(error: Optional[str] = None, *, truncated: bool = False) -> str:
    """The status of one row: its error status when `error` is set (a reason, or an
    already-built error status), else "truncated" or "ok"."""
    if error is not None:
        return error if is_error(error) else error_status(error)
    return TRUNCATED if truncated else OK


def is_error(status: Any) -> bool:
    """True for an error status (the row has no score and is never selected)."""
    return isinstance(status, str) and status.startswith(_ERROR)


def error_reason(status: str) -> str:
    """The reason of an error status ("error: out of memory" -> "out of memory")."""
    return status[len(_ERROR):].lstrip(": ")


def error_mask(ds: "Dataset", status_column: Optional[str]) -> Optional[np.ndarray]:
    """Boolean mask of rows whose status is an error, or None without that status column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if status_column is None or status_column not in ds.column_names:
        return None
    status = ds.with_format("arrow")[status_column]
    if pa.types.is_null(status.type):
        return np.zeros(len(ds), dtype=bool)
    mask = pc.fill_null(pc.starts_with(status, _ERROR), False)
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def truncated_mask(ds: "Dataset", status_column: str) -> np.ndarray:
    """Boolean mask of rows whose status is "truncated" (all False without the column)."""
    import pyarrow.compute as pc

    if status_column not in ds.column_names:
        return np.zeros(len(ds), dtype=bool)
    mask = pc.fill_null(pc.equal(ds.with_format("arrow")[status_column], TRUNCATED), False)
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


@dataclass(frozen=True)
class ScoreColumns:
    """The columns of one scorer (or one fused score) and how to read them: every name is
    ``prefix + suffix``; `outputs` are the suffixes written, in order; `ranked` holds
    ``(suffix, higher_is_better)`` of each per-row score column, the first being the score a
    selection ranks by; `cutoff` is the cut-off applied before ranking the main score by default
    ("ifd": drop values > 1, Cherry's rule) or None; `method` is None for a column known by its
    name only.

    Example:
        >>> cols = SCHEMAS["rifd"].with_prefix("m1_")
        >>> cols.score, cols.status, cols.higher_is_better()
        ('m1_score', 'm1_status', False)
    """

    method: Optional[str]
    prefix: str
    outputs: tuple = ()
    ranked: tuple = (("score", True),)
    cutoff: Optional[str] = None
    status_suffix: str = "status"

    def with_prefix(self, prefix: str) -> "ScoreColumns":
        return replace(self, prefix=prefix)

    @property
    def score(self) -> str:
        """The column a selection ranks by."""
        return self.prefix + self.ranked[0][0]

    @property
    def status(self) -> str:
        """The row status column."""
        return self.prefix + self.status_suffix

    @property
    def columns(self) -> list:
        """Every column written, in order."""
        return [self.prefix + s for s in self.outputs]

    @property
    def score_columns(self) -> list:
        """The per-row score columns (the main score first)."""
        return [self.prefix + s for s, _ in self.ranked]

    def higher_is_better(self, column: Optional[str] = None) -> bool:
        """Which end of `column` (default: the main score) is better; KeyError for a column that is
        not one of this schema's score columns."""
        column = self.score if column is None else column
        for suffix, higher in self.ranked:
            if self.prefix + suffix == column:
                return higher
        raise KeyError(f"{column!r} is not a score column of {self.method or 'this'} scorer "
                       f"(score columns: {self.score_columns}).")


_LOSSES = (("conditioned_loss", False), ("direct_loss", False))
#: Each method's columns with its default prefix (a scorer's are under its own prefix, `for_method`).
#: IFD: higher is better within the cut-off at 1 (Cherry data_by_IFD.py, Superfiltering);
#: r-IFD: lower is better (a response that lets the model recover its instruction, Selective
#: Reflection-Tuning); losses lower; ratings higher.
SCHEMAS = {
    "selectit": ScoreColumns("selectit", DEFAULT_PREFIX,
                             ("token_scores", "sentence_score", "uncertainty", "rating_probs", "rating_mass",
                              "status"), (("sentence_score", True),)),
    "ifd": ScoreColumns("ifd", "ifd_", ("score", "conditioned_loss", "direct_loss", "status"),
                        (("score", True), *_LOSSES), cutoff="ifd"),
    "rifd": ScoreColumns("rifd", "rifd_", ("score", "conditioned_loss", "direct_loss", "status"),
                         (("score", False), *_LOSSES), cutoff="ifd"),
    "alpagasus": ScoreColumns("alpagasus", "alpagasus_", ("score", "argmax", "rating_mass", "status")),
    "deita": ScoreColumns("deita", "deita_", ("quality", "complexity", "score", "rating_mass", "status"),
                          (("score", True), ("quality", True), ("complexity", True))),
}


def deita_columns(prefix: str, kind: str) -> ScoreColumns:
    """DEITA's columns for one `kind` ("both", "quality" or "complexity")."""
    return for_method("deita", prefix, kind)


def for_config(config: Any) -> ScoreColumns:
    """The columns a scorer config writes (``for_config(IFDConfig(column_prefix="m1_")).score``
    is ``'m1_score'``)."""
    method = next((m for m, cls in METHOD_CONFIGS.items() if type(config) is cls), None)
    if method is None:
        raise TypeError(f"{config!r} is not the config of a scoring method ({sorted(METHOD_CONFIGS)}).")
    return for_method(method, config.column_prefix, getattr(config, "kind", None))


def for_info(info: Mapping, prefix: Optional[str] = None) -> ScoreColumns:
    """The columns of a scorer from its recorded provenance (``scorer.info()``), under `prefix`
    (default: the one it records)."""
    method = str(info.get("method") or "selectit")
    kind = (info.get("options") or {}).get("kind") or info.get("kind")
    prefix = str(info.get("column_prefix", "")) if prefix is None else prefix
    return for_method(method if method in SCHEMAS else "selectit", prefix, kind)


def for_scorer(scorer: Any) -> Optional[ScoreColumns]:
    """A scorer's columns: its own schema (``scorer.columns``), else, for any other object of the
    scorer interface, the schema its first score-like output column's name gives; None without one."""
    cols = getattr(scorer, "columns", None)
    if isinstance(cols, ScoreColumns):
        return cols
    names = [n for n in getattr(scorer, "output_columns", None) or [] if n.endswith("score")]
    return guess(names[0]) if names else None


def for_method(method: str, prefix: str, kind: Optional[str] = None) -> ScoreColumns:
    """The columns of a method's scorer under `prefix` (DEITA: of its `kind`)."""
    cols = SCHEMAS[method].with_prefix(prefix)
    if method != "deita" or kind in (None, "both"):
        return cols
    return replace(cols, outputs=(kind, "rating_mass", "status"), ranked=((kind, True),))


def fused(output: str, *, higher_is_better: bool = True) -> ScoreColumns:
    """The columns `fuse_models` writes: `output` and its status column
    (``x_model_score`` -> ``x_model_status``; a name not ending in "score" gets ``_status``)."""
    return _by_name(output, method="fusion", higher_is_better=higher_is_better)


def _by_name(column: str, *, method: Optional[str] = None, higher_is_better: bool = True) -> ScoreColumns:
    if column.endswith("score"):
        prefix = column[: -len("score")]
        return ScoreColumns(method, prefix, ("score", "status"), (("score", higher_is_better),))
    return ScoreColumns(method, column, ("", "_status"), (("", higher_is_better),), status_suffix="_status")


def guess(column: str) -> ScoreColumns:
    """The schema of a score column known by its name only (no provenance): a method's own
    ending (``..rifd_score``, ``..ifd_score``, ``..sentence_score``, ...) gives that method's
    schema, anything else a plain higher-is-better score whose status is ``..status``."""
    # Longest endings first: "rifd_score" before "ifd_score". SelectIT's own ending
    # ("sentence_score") is unambiguous under any prefix.
    endings = [(("" if s.method == "selectit" else s.prefix) + suffix, suffix, s)
               for s in SCHEMAS.values() for suffix, _ in s.ranked]
    for ending, suffix, schema in sorted(endings, key=lambda e: -len(e[0])):
        if column.endswith(ending):
            return schema.with_prefix(column[: -len(suffix)])
    return _by_name(column)


def selectit_prefixes(column_names: Iterable[str]) -> list:
    """Column prefixes of the SelectIT sentence-score columns present (the columns whose scorer
    must be known to publish them)."""
    suffix = SCHEMAS["selectit"].ranked[0][0]
    return [c[: -len(suffix)] for c in column_names if c.endswith(suffix) and len(c) > len(suffix)]


def columns_of(ds: Optional["Dataset"], column: str) -> ScoreColumns:
    """The schema whose score `column` is: a recorded scorer or fusion, else a scorer that ran in this
    process (``ds.map(scorer)`` cannot record anything on its result), else the name."""
    if ds is not None:
        meta = provenance.read(ds)
        known = [for_info(info, prefix) for prefix, info in (meta.get("scorers") or {}).items()
                 if isinstance(info, Mapping)]
        known += [fused(output, higher_is_better=spec.get("higher_is_better", True))
                  for output, spec in (meta.get("fusion") or {}).items() if isinstance(spec, Mapping)]
        recorded = {s.prefix for s in known}
        known += [scorer.columns for prefix, scorer in provenance.registered_scorers().items()
                  if prefix not in recorded]
        for schema in known:
            if column in schema.score_columns:
                return schema
    return guess(column)


def score_like(ds: "Dataset") -> list:
    """Columns of `ds` whose name says "score" (for error messages and candidates)."""
    return [name for name in ds.column_names if name.endswith("score")]


def resolve(ds: "Dataset", column: Optional[str] = None, *, rule: Optional[Mapping] = None,
            required: bool = True) -> Optional[str]:
    """The score column to rank by: `column` when given (a missing one is reported by whoever
    reads it), except the default name when it is absent; else the one a recorded selection
    `rule` used; else SelectIT's ``selectit_sentence_score`` when present; else the only numeric
    column named like a score. Not `required`: None when nothing fits, the first (sorted) of several.

    Raises:
        ScoreColumnError: no candidate, or several (the message lists them).
    """
    default = SCHEMAS["selectit"].score
    # The CLI passes the default name explicitly; when it is absent it means "the score column".
    if column is not None and not (column == default and default not in ds.column_names):
        return column
    if rule and rule.get("column") in ds.column_names:
        return rule["column"]
    if default in ds.column_names:
        return default
    candidates = [name for name in score_like(ds) if is_numeric(ds, name)]
    if len(candidates) == 1 or not required:
        return sorted(candidates)[0] if candidates else None
    if candidates:
        raise ScoreColumnError(
            f"Score column {default!r} not found and the dataset has several score "
            f"columns: {candidates}. Name the one to rank by: column=<name> (CLI: --column NAME).")
    raise ScoreColumnError(
        f"Score column {default!r} not found and no other numeric column ending in "
        f"'score' exists. Columns: {ds.column_names}. Score the dataset first "
        f"(ds.map(SelectITScorer(), batched=True); CLI: hf-selectit score) or name the column to "
        f"rank by: column=<name> (CLI: --column NAME).")


# Value dtypes that hold one number per row. "null": a column with no value at all (e.g. every
# row failed and the scores were saved as JSONL, which stores NaN as null) reads as all-NaN.
_REAL = ("float", "double", "int", "uint")
_NUMERIC = (*_REAL, "halffloat", "bool", "null")


def is_numeric(ds: "Dataset", name: str, *, strict: bool = False) -> bool:
    """Whether a column holds one number per row; ``strict``: a real number (not bool, not a
    column with no value at all), as validation needs."""
    from datasets import Value

    feature = ds.features[name]
    return isinstance(feature, Value) and feature.dtype.startswith(_REAL if strict else _NUMERIC)
