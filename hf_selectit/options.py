"""The one loader of options: Python keyword arguments, YAML files and command-line flags.

Every option is a field of a dataclass in :mod:`hf_selectit.config`. This module turns a mapping
(from a YAML file, a script, or the parsed command line) into those dataclasses with the same
rules everywhere:

- unknown keys and flags are refused with the closest valid name ("Did you mean 'ratio'?");
- values are converted only where the source is text (flags; YAML 1.1's `7e9`), then checked by
  the dataclass's own ``__post_init__`` (so Python keyword arguments get the same checks);
- a bad value names where it came from: ``configs/run.yaml: select.ratio=2 is invalid: ...``
  for a file, ``--ratio=2.0 is invalid: ...`` for a flag, ``ratio=2 is invalid: ...`` for Python;
- relative paths the job reads (``input``, a local ``model`` folder, ``publish.scored``) resolve
  against the YAML file's folder; paths it writes stay relative to the working directory;
- a run config is checked whole (every model, fusion, select, publish, card_data) before any
  model loads.

The command line is generated from the same dataclasses (:func:`add_options`): the flag is the
field name with ``-`` for ``_`` (or the field's ``metadata["flag"]``), the help is
``metadata["help"]``, booleans get ``--x/--no-x``.

Why not ``transformers.HfArgumentParser``: it cannot express ``Union[int, list]`` (``prompts``)
or mapping options (``columns``), has no "did you mean" for unknown keys/flags, and importing
transformers would make ``hf-selectit --help`` slow. The generator below is ~100 lines.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .config import (
    DEFAULT_METHOD,
    DEFAULT_PREFIX,
    METHOD_CONFIGS,
    FusionConfig,
    IOConfig,
    PipelineConfig,
    PublishConfig,
    ReportOptions,
    RunOptions,
    SelectConfig,
    ValidateConfig,
    method_config_class,
)
from .errors import ConfigError
from .redaction import redact

# ------------------------------------------------------------------------- names


def option_name(cls: type, name: str) -> str:
    """The command-line / flat-YAML name of a dataclass field (``model_revision`` for the
    scorer's ``revision``, since ``--revision`` is the dataset's)."""
    for f in fields(cls):
        if f.name == name:
            return f.metadata.get("flag", name)
    return name


def flag_of(cls: type, name: str) -> str:
    return "--" + option_name(cls, name).replace("_", "-")


def field_default(f: Any) -> Any:
    """The default of a dataclass field (calling its default_factory)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _norm(key: Any) -> str:
    return str(key).replace("-", "_")


# ---------------------------------------------------------------------- coercion


def coerce_value(name: str, value: Any, annotation: Any, *, from_cli: bool = False) -> Any:
    """Check (and, for text from the shell, convert) one option value against its annotation.

    Args:
        name: how to name the value in an error (``--alpha``, ``run.yaml: select.ratio``).
        value: the value from YAML, Python or the command line.
        annotation: the dataclass field's type (``Optional[int]``, ``Union[int, list]``, ...).
        from_cli: the value is a raw command-line string ('none' means None; JSON/YAML text is
            parsed for dict and list options; true/false/yes/no for booleans).

    Returns:
        The value with the annotated type.

    Raises:
        ConfigError: the value does not fit the annotation.

    Example:
        >>> coerce_value("--prompts", "3", Union[int, list], from_cli=True)
        3
    """
    origin = typing.get_origin(annotation)
    if origin is Union:
        args = typing.get_args(annotation)
        if type(None) in args and (value is None or (from_cli and isinstance(value, str)
                                                     and value.lower() in ("none", "null"))):
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            try:
                return coerce_value(name, value, options[0], from_cli=from_cli)
            except ConfigError as exc:
                if "is not valid JSON/YAML" in str(exc) or type(None) not in args:
                    raise
        problems = []
        for arg in options:
            try:
                return coerce_value(name, value, arg, from_cli=from_cli)
            except ConfigError:
                problems.append(_type_name(arg))
        expected = f"expected {' or '.join(problems)}{' or null' if type(None) in args else ''}."
        raise ConfigError(f"{name}={value!r} is invalid: {expected}", option=name, value=value,
                          expected=expected)
    if origin is not None:  # list[str], dict[str, str], ...
        annotation = origin
    if annotation is bool:
        if isinstance(value, bool):
            return value
        # Text only from the shell; a Python/YAML string "false" is refused, never truthy.
        if from_cli and isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads `7e9` (no dot) as a string; accept it as the number it is.
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation in (list, dict):
        if isinstance(value, str) and from_cli:
            value = _parse_structured(name, value)
        if annotation is list and isinstance(value, (list, tuple)):
            return list(value)
        if annotation is dict and isinstance(value, Mapping):
            return dict(value)
    else:  # pragma: no cover - an annotation this loader does not know
        return value
    expected = f"expected {_type_name(annotation)}."
    raise ConfigError(f"{name}={value!r} is invalid: {expected}", option=name, value=value, expected=expected)


def _parse_structured(name: str, text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # A Hub token given in --model-kwargs must not be echoed back in an error message.
        problem = redact(" ".join(str(exc).split()))
        raise ConfigError(f"{name}={redact(text)!r} is not valid JSON/YAML: {problem}") from exc


def _type_name(annotation: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             list: "a list (JSON/YAML)", dict: "a mapping (JSON/YAML)"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


# ----------------------------------------------------------------------- checking


def suggest(key: str, valid: Sequence[str]) -> str:
    """' Did you mean 'x'?' for the closest valid name, or ''."""
    close = difflib.get_close_matches(str(key), list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_keys(keys: Any, valid: Any, *, where: str, label: Optional[Callable[[str], str]] = None) -> None:
    """Raise ConfigError for keys that are not options, suggesting the closest and listing all.

    Args:
        keys: the keys given.
        valid: the option names that exist.
        where: where the keys came from (e.g. "the select section of run.yaml").
        label: how to spell a key in full (e.g. ``select.ratoi``), shown beside it.

    Raises:
        ConfigError: an unknown key.
    """
    valid = list(valid)
    for key in keys:
        if key not in valid:
            full = label(key) if label else None
            shown = f"{key!r}" + (f" ({full})" if full and full != key else "")
            raise ConfigError(
                f"Unknown option {shown} in {where}.{suggest(key, valid)} Valid options: {sorted(valid)}."
            )


def relabel(exc: ConfigError, labels: Mapping[str, str], *, where: str = "",
            raw: Optional[Mapping[str, Any]] = None) -> ConfigError:
    """The same error, naming the value's origin (a file and key, or a flag) when known, and
    showing the value as it was given (``raw``), not as converted."""
    if exc.option is not None and exc.option in labels:
        value = (raw or {}).get(exc.option, exc.value)
        message = f"{labels[exc.option]}={value!r} is invalid: {exc.expected}"
    elif where and not str(exc).startswith(where):
        message = f"{where}: {exc}"
    else:
        return exc
    return ConfigError(message, option=exc.option, value=exc.value, expected=exc.expected)


def build(cls: type, values: Mapping[str, Any], *, labels: Optional[Mapping[str, str]] = None,
          where: str = "", from_cli: Sequence[str] = ()) -> Any:
    """Build one config dataclass from checked values, naming each value's origin in errors.

    Args:
        cls: a config dataclass.
        values: field name -> value (keys already checked).
        labels: field name -> how to name it in an error (``--ratio``, ``run.yaml: select.ratio``);
            a field without a label is named by ``where`` and its name.
        where: prefix for errors about values without a label, and for whole-object errors.
        from_cli: field names whose values are raw command-line text.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: a value of the wrong type or range, naming where it came from.
    """
    labels = dict(labels or {})
    for name in values:
        labels.setdefault(name, f"{where}: {name}" if where else name)
    hints = typing.get_type_hints(cls)
    kwargs = {name: coerce_value(labels[name], value, hints[name], from_cli=name in from_cli)
              for name, value in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raw = {k: v for k, v in values.items() if k not in from_cli}
        raise relabel(exc, labels, where=where, raw=raw) from None


def config_from_mapping(cls: type, mapping: Optional[Mapping[str, Any]], *, where: str = "",
                        from_cli: bool = False) -> Any:
    """Build a config dataclass from a mapping with the key and type checks of the YAML config.

    Args:
        cls: any config dataclass of :mod:`hf_selectit.config`.
        mapping: option name -> value (``-`` in names is read as ``_``).
        where: for error messages ("scorer", "the select section of run.yaml").
        from_cli: values are raw command-line strings.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: unknown key, or a value of the wrong type or range.

    Example:
        >>> config_from_mapping(SelectConfig, {"ratio": 0.1}, where="select")
        SelectConfig(ratio=0.1, ...)
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where or cls.__name__} must be a mapping of options, got {mapping!r}.")
    values = {_norm(k): v for k, v in mapping.items()}
    check_keys(values, [f.name for f in fields(cls)], where=where or cls.__name__)
    return build(cls, values, where=where, from_cli=list(values) if from_cli else ())


# ---------------------------------------------------------------------------- YAML


def load_yaml(path: Union[str, os.PathLike]) -> dict:
    """Read a YAML mapping from a file.

    Raises:
        ConfigError: missing file, invalid YAML, or a top level that is not a mapping.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} not found.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level, got {type(data).__name__}.")
    return data


def _read_paths(cls: type) -> set:
    return {f.name for f in fields(cls) if f.metadata.get("path") == "read"}


def resolve_read_path(value: Any, base: Optional[Path]) -> Any:
    """A relative path a config file names, resolved against the file's folder.

    Only when the value is meant as a local path: it exists in that folder, or looks like a file
    (see :func:`hf_selectit.io.looks_like_path`). A Hub id ("user/name") is left alone.
    """
    if base is None or not isinstance(value, str) or not value:
        return value
    from .io import looks_like_path

    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return value
    candidate = base / expanded
    if candidate.exists() or looks_like_path(value):
        return os.path.normpath(str(candidate))
    return value


def _resolve_paths(cls: type, values: dict, base: Optional[Path], skip: Sequence[str] = ()) -> dict:
    out = dict(values)
    for name in _read_paths(cls) & set(out):
        if name not in skip:
            out[name] = resolve_read_path(out[name], base)
    return out


# ----------------------------------------------------------------------- run config

_TOP_SECTIONS = ("models", "scorer", "fusion", "select", "publish", "card_data", "report", "report_json", "validate")


@dataclass
class _Origin:
    """Where a run config came from, for error messages."""

    name: str                       # "configs/run.yaml" or "run config"
    base: Optional[Path] = None     # folder that relative read paths resolve against
    flag_labels: dict = field(default_factory=dict)  # top-level key -> "--flag" (overrides)

    def key(self, dotted: str) -> str:
        return f"{self.name}: {dotted}"

    def section(self, name: str) -> str:
        return f"the {name} section of {self.name}"


def load_run_config(source: Union[str, os.PathLike, Mapping[str, Any]], *,
                    overrides: Optional[Mapping[str, Any]] = None,
                    override_labels: Optional[Mapping[str, str]] = None) -> PipelineConfig:
    """Read a `run` configuration (YAML file or mapping) into a checked :class:`PipelineConfig`.

    Layout (every key optional except ``input``)::

        input: vicgalle/alpaca-gpt4        # + split, config_name, revision, limit, output, ...
        batch_size: 64                     # + num_proc, shard_rows, work_dir, subset_output
        scorer: {prompts: 5, alpha: 0.2}   # shared by every model
        models:                            # one entry per model (scorer keys + method + params)
          - {model: meta-llama/Llama-2-7b-hf, column_prefix: selectit_m0_, params: 7e9}
        fusion: {weights: null}            # several models only
        select: {ratio: 0.2}
        publish: {repo_id: me/Selective-Alpaca, version: v1.0, license: cc-by-nc-4.0}
        card_data: {pretty_name: ...}
        report: report.md                  # + report_json

    Every section is checked here, before anything is loaded or scored.

    Args:
        source: path of a YAML file, or the parsed mapping.
        overrides: top-level IO/run options that replace the file's (the CLI's flags), already
            converted to their types.
        override_labels: how to name each override in an error (``--limit``).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unknown keys (with the closest valid one), bad values (naming the file and
            key, or the flag), duplicate column prefixes, or a missing ``input``.

    Example:
        >>> cfg = load_run_config("hf_selectit/configs/demo.yaml", overrides={"limit": 8})
    """
    if isinstance(source, Mapping):
        data, origin = dict(source), _Origin("run config")
    else:
        path = Path(source)
        data = load_yaml(path)
        origin = _Origin(str(source), base=path.resolve().parent)
    data = {_norm(k): v for k, v in data.items()}
    overrides = {_norm(k): v for k, v in (overrides or {}).items()}
    labels_top = {k: origin.key(k) for k in data}
    for key in overrides:
        labels_top[key] = (override_labels or {}).get(key, "--" + key.replace("_", "-"))
    io_keys = [f.name for f in fields(IOConfig)]
    run_keys = [f.name for f in fields(RunOptions)]
    check_keys(data, [*io_keys, *run_keys, *_TOP_SECTIONS], where=origin.name)
    check_keys(overrides, [*io_keys, *run_keys], where="the command line")

    io_values = _resolve_paths(IOConfig, {k: v for k, v in data.items() if k in io_keys}, origin.base)
    io_values.update({k: v for k, v in overrides.items() if k in io_keys})
    io = build(IOConfig, io_values, labels=labels_top, where=origin.name)
    if io.input is None:
        raise ConfigError(f"{origin.name}: `input` is missing: give a Hub dataset id, a local file or a folder.")
    run_values = {k: v for k, v in data.items() if k in run_keys}
    run_values.update({k: v for k, v in overrides.items() if k in run_keys})
    run = build(RunOptions, run_values, labels=labels_top, where=origin.name)

    models, params = _load_models(data, origin)
    fusion = _section(FusionConfig, data, "fusion", origin)
    select = _section(SelectConfig, data, "select", origin) if data.get("select") is not None else None
    validate = _section(ValidateConfig, data, "validate", origin) if data.get("validate") is not None else None
    if validate is not None and validate.label is None:
        raise ConfigError(f"{origin.key('validate.label')} is missing: a run validates its selection "
                          "column against a label column (e.g. validate: {label: kind, positive: good}).")
    publish = None
    if data.get("publish"):
        publish = _section(PublishConfig, data, "publish", origin)
        if not publish.repo_id:
            raise ConfigError(f"{origin.name}: publish.repo_id is missing: a Hub repo id or a local directory.")
        if publish.scored is not None:
            raise ConfigError(f"{origin.key('publish.scored')}: `run` publishes the scored dataset it "
                              "makes; remove publish.scored (it is for `hf-selectit publish`).")
        check_publish_target(publish, label=origin.key("publish.repo_id"))
        if select is None:
            raise ConfigError(f"{origin.name}: publish needs a selected subset: add a `select` section "
                              "(e.g. select: {ratio: 0.2}).")
    card_data = data.get("card_data")
    if card_data is not None and not isinstance(card_data, Mapping):
        raise ConfigError(f"{origin.key('card_data')} must be a mapping of card metadata, got {card_data!r}.")
    report = build(ReportOptions, {k: data[k] for k in ("report", "report_json") if k in data},
                   labels=labels_top, where=origin.name)
    if len(models) > 1 and select is not None and fusion is not None:
        if fusion.params is not None and len(fusion.params) != len(models):
            raise ConfigError(f"{origin.key('fusion.params')}: {len(fusion.params)} values for "
                              f"{len(models)} models.")
    return PipelineConfig(io=io, run=run, models=models, model_params=params, fusion=fusion,
                          select=select, publish=publish, card_data=dict(card_data) if card_data else None,
                          report=report, validate=validate, config_file=None if origin.base is None else str(source))


def _section(cls: type, data: Mapping, name: str, origin: _Origin) -> Any:
    section = data.get(name)
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{origin.key(name)} must be a mapping of options, got {section!r}.")
    values = {_norm(k): v for k, v in section.items()}
    check_keys(values, [f.name for f in fields(cls)], where=origin.section(name),
               label=lambda k: f"{name}.{k}")
    values = _resolve_paths(cls, values, origin.base)
    return build(cls, values, labels={k: origin.key(f"{name}.{k}") for k in values},
                 where=origin.name)


def _load_models(data: Mapping, origin: _Origin) -> tuple[list, list]:
    shared = data.get("scorer")
    if shared is None:
        shared = {}
    if not isinstance(shared, Mapping):
        raise ConfigError(f"{origin.key('scorer')} must be a mapping of scorer options, got {shared!r}.")
    shared = {_norm(k): v for k, v in shared.items()}
    entries = data.get("models")
    if entries is None:
        entries = [{}]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{origin.key('models')} must be a non-empty list of scorer configs, got {entries!r}.")
    shared_method = shared.pop("method", None)
    # A typo in the shared section is reported there (scorer.<key>), not as models[i].
    all_scorer_keys = sorted({f.name for cls in METHOD_CONFIGS.values() for f in fields(cls)} | {"method"})
    check_keys(shared, all_scorer_keys, where=origin.section("scorer"), label=lambda k: f"scorer.{k}")
    models, params = [], []
    # How many entries use each method: a method's own default prefix (ifd_, deita_, ...) is kept
    # when it is the only model of that method in the run, and numbered when it is not.
    methods_used = [(e.get("method") if isinstance(e, Mapping) else None) or shared_method or DEFAULT_METHOD
                    for e in entries]
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"model": entry}
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{origin.key(f'models[{i}]')} must be a mapping or a model id, got {entry!r}.")
        entry = {_norm(k): v for k, v in entry.items()}
        method = entry.pop("method", shared_method or DEFAULT_METHOD)
        where_method = origin.key(f"models[{i}].method") if "method" in entry or shared_method is None \
            else origin.key("scorer.method")
        try:
            cls = method_config_class(method, where="method")
        except ConfigError as exc:
            raise ConfigError(f"{where_method}={method!r} is invalid: {exc.expected}") from None
        valid = [f.name for f in fields(cls)]
        for key in shared:
            if key not in valid:
                raise ConfigError(f"{origin.key('scorer.' + key)} is not an option of method {method!r} "
                                  f"(models[{i}]).{suggest(key, valid)} Options of {method!r}: {sorted(valid)}.")
        check_keys(entry, [*valid, "params"], where=origin.section("models"),
                   label=lambda k, i=i: f"models[{i}].{k}")
        labels = {k: origin.key(f"scorer.{k}") for k in shared}
        labels.update({k: origin.key(f"models[{i}].{k}") for k in entry})
        values = _resolve_paths(cls, {**shared, **entry}, origin.base)
        param = values.pop("params", None)
        own = next((f.default for f in fields(cls) if f.name == "column_prefix"), DEFAULT_PREFIX)
        if methods_used.count(method) > 1 and values.get("column_prefix", own) == own:
            values["column_prefix"] = f"selectit_m{i}_" if own == DEFAULT_PREFIX else f"{own}m{i}_"
        models.append(build(cls, values, labels=labels, where=origin.name))
        if param is not None:
            param = coerce_value(origin.key(f"models[{i}].params"), param, float)
            if not param > 0 or param != param or param == float("inf"):
                raise ConfigError(f"{origin.key(f'models[{i}].params')}={param!r} is invalid: expected a "
                                  "parameter count > 0, e.g. 7e9.")
        params.append(param)
    prefixes = [m.column_prefix for m in models]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError(f"{origin.name}: column_prefix must differ between models, got {prefixes}.")
    return models, params


def check_publish_target(publish: PublishConfig, *, label: str = "repo_id") -> None:
    """A repo_id that is not a local directory must be a valid Hub repo id (checked up front)."""
    from .io import is_local_path

    repo_id = publish.repo_id
    if repo_id is None or is_local_path(repo_id, for_output=True):
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ConfigError(
            f"{label}={repo_id!r} is invalid: expected a Hub repo id 'user/name' (letters, digits, "
            "'-', '_', '.'; no spaces) or a local directory such as './name'."
        ) from None


# ------------------------------------------------------------------ command line


def add_options(parser: argparse.ArgumentParser, cls: type, *, title: str,
                exclude: Sequence[str] = (), only: Optional[Sequence[str]] = None,
                defaults: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Add one option per field of ``cls`` to ``parser`` (in an argument group).

    Values are converted later by :func:`from_args` (with :func:`coerce_value`), so the command
    line and YAML files share one set of rules. An option left out of the command line does not
    appear in the namespace (``argparse.SUPPRESS``), which is what lets a ``--config`` file's
    value show through.

    Args:
        parser: the (sub)parser.
        cls: a config dataclass.
        title: the group's title in ``--help``.
        exclude: field names not to offer.
        only: offer only these field names.
        defaults: field name -> default shown in ``--help`` instead of the dataclass's.

    Returns:
        The option names (dests) added.
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title)
    names = []
    for f in fields(cls):
        if f.name in exclude or (only is not None and f.name not in only):
            continue
        dest = option_name(cls, f.name)
        default = (defaults or {}).get(f.name, field_default(f))
        shown = json.dumps(default) if isinstance(default, (dict, list)) else default
        help_text = f"{f.metadata.get('help', '')} (default: {str(shown).replace('%', '%%')})"
        if hints[f.name] is bool:
            group.add_argument(flag_of(cls, f.name), dest=dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag_of(cls, f.name), dest=dest, default=argparse.SUPPRESS,
                               metavar=_metavar(hints[f.name]), help=help_text)
        names.append(dest)
    return names


def _metavar(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kinds = {int: "INT", float: "FLOAT", str: "TEXT", list: "JSON_LIST", dict: "JSON_DICT"}
    return "|".join(kinds.get(typing.get_origin(a) or a, "VALUE") for a in args)


def flat_names(classes: Sequence[type], *, exclude: Sequence[str] = ()) -> list[str]:
    """The flat option names of several classes (what a ``--config`` file of a command may hold)."""
    return [option_name(cls, f.name) for cls in classes for f in fields(cls) if f.name not in exclude]


@dataclass
class ConfigFile:
    """The flat options of a ``--config`` YAML file, with where they came from."""

    path: Optional[str] = None
    values: dict = field(default_factory=dict)

    @property
    def base(self) -> Optional[Path]:
        return Path(self.path).resolve().parent if self.path else None


def read_config_file(path: Optional[str], valid: Sequence[str]) -> ConfigFile:
    """The flat option mapping of a ``--config`` YAML file, checked against the valid names."""
    if not path:
        return ConfigFile()
    data = {_norm(k): v for k, v in load_yaml(path).items()}
    check_keys(data, valid, where=str(path))
    return ConfigFile(str(path), data)


def from_args(cls: type, args: argparse.Namespace, file: Optional[ConfigFile] = None, *,
              exclude: Sequence[str] = (), extra: Optional[Mapping[str, Any]] = None,
              extra_labels: Optional[Mapping[str, str]] = None) -> Any:
    """One config dataclass from a ``--config`` file's values overlaid with the flags given.

    Errors name the flag (``--ratio``) or the file and key (``opts.yaml: ratio``), never
    "command line" for a file's value.

    Args:
        cls: the config dataclass.
        args: the parsed namespace (options not given on the command line are absent).
        file: the ``--config`` file's values.
        exclude: fields not taken.
        extra: field values from elsewhere (e.g. the positional INPUT), under the flags.
        extra_labels: how to name the extra values in errors.

    Returns:
        An instance of ``cls``.
    """
    file = file or ConfigFile()
    values: dict = {}
    labels: dict = {}
    raw_cli: list = []
    for f in fields(cls):
        if f.name in exclude:
            continue
        name = option_name(cls, f.name)
        if name in file.values:
            values[f.name] = resolve_read_path(file.values[name], file.base) \
                if f.metadata.get("path") == "read" else file.values[name]
            labels[f.name] = f"{file.path}: {name}"
        if extra and f.name in extra:
            values[f.name] = extra[f.name]
            labels[f.name] = (extra_labels or {}).get(f.name, name.upper())
        if hasattr(args, name):
            values[f.name] = getattr(args, name)
            labels[f.name] = flag_of(cls, f.name)
            if not isinstance(values[f.name], bool):
                raw_cli.append(f.name)
    return build(cls, values, labels=labels, from_cli=raw_cli)


def cli_overrides(classes: Sequence[type], args: argparse.Namespace) -> tuple[dict, dict]:
    """The flags given on the command line for ``classes``, converted: (values, labels)."""
    values, labels = {}, {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            name = option_name(cls, f.name)
            if hasattr(args, name):
                label = flag_of(cls, f.name)
                values[f.name] = coerce_value(label, getattr(args, name), hints[f.name], from_cli=True)
                labels[f.name] = label
    return values, labels


class ArgumentParser(argparse.ArgumentParser):
    """argparse with "did you mean" for unknown flags (Python 3.11 has none)."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D401
        if message.startswith("unrecognized arguments:"):
            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            hints = []
            for token in message.split(":", 1)[1].split():
                flag = token.split("=", 1)[0]
                if flag.startswith("--"):
                    close = difflib.get_close_matches(flag, known, n=1)
                    if close:
                        hints.append(f"{flag}: did you mean {close[0]}?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        super().error(message)


def method_class(method: Optional[str]) -> type:
    """The scorer config class of ``--method`` (default: selectit)."""
    return method_config_class(method or DEFAULT_METHOD, where="--method")
