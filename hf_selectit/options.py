"""YAML files and command-line flags into the dataclasses of :mod:`hf_selectit.config`, whose
``__post_init__`` checks every value. A bad value or unknown key names its origin
(``run.yaml: select.ratio=2``, ``--ratio=2.0``); relative read paths resolve against the YAML
file's folder; a run config is checked whole before any model loads.

The command line stands on ``transformers.HfArgumentParser`` as TRL's ``TrlParser`` does: flags
from the dataclasses, a ``--config`` file's values as ``set_defaults``, given flags winning. Kept
beyond that parser, and why:

- "did you mean" for unknown flags and keys: neither argparse (3.11) nor the parser has it, and
  a typo is the most common configuration error;
- a bad value is one line (ConfigError, exit 2) naming the flag or key, not usage and a Python
  type name: so flags are taken as text and converted by the rules YAML values follow;
- ``metadata["flag"]``: ``score`` takes the dataset's ``--revision`` and the model's
  ``--model-revision``; the parser names a flag after its field only;
- ``--x/--no-x`` for every boolean: the parser's take a value (``--trust-remote-code yes``).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import os
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .config import (DEFAULT_METHOD, DEFAULT_PREFIX, METHOD_CONFIGS, FusionConfig, IOConfig, PipelineConfig,
                     PublishConfig, RayConfig, ReportOptions, RunOptions, SelectConfig, ValidateConfig, from_text,
                     kinds_of, method_config_class, suggest)
from .errors import ConfigError

# ------------------------------------------------------------------------- names


def option_name(cls: type, name: str) -> str:
    """The command-line / flat-YAML name of a field (``model_revision`` for a scorer's ``revision``)."""
    return next((f.metadata.get("flag", name) for f in fields(cls) if f.name == name), name)


def flag_of(cls: type, name: str) -> str:
    return "--" + option_name(cls, name).replace("_", "-")


def _norm(key: Any) -> str:
    return str(key).replace("-", "_")


def check_keys(keys: Any, valid: Any, *, where: str, label: Optional[Callable[[str], str]] = None) -> None:
    """Raise ConfigError for a key that is not an option, suggesting the closest and listing all."""
    valid = list(valid)
    for key in keys:
        if key not in valid:
            full = label(key) if label else None
            shown = f"{key!r}" + (f" ({full})" if full and full != key else "")
            raise ConfigError(
                f"Unknown option {shown} in {where}.{suggest(key, valid)} Valid options: {sorted(valid)}.")


# ---------------------------------------------------------------------- coercion


def coerce_value(name: str, value: Any, annotation: Any, *, from_cli: bool = False) -> Any:
    """One value checked against its field's annotation, ``name`` naming it in errors: ints are
    whole numbers as written (``4.0`` is refused, as in Python), floats also read number text
    (YAML 1.1 reads ``7e9`` as a string); with ``from_cli`` (flag text) 'none' is None, '3' an
    int, and dict and list options read JSON/YAML. ConfigError when it does not fit.
    """
    kinds, optional = kinds_of(annotation)
    if optional and (value is None or (from_cli and isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    if from_cli and (list in kinds or dict in kinds):
        value = from_text(name, value)
    for kind in kinds:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and not isinstance(value, bool):
            if isinstance(value, int):
                return value
            if from_cli and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
        if kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                pass
        if (kind is str and isinstance(value, str)) or kind not in (bool, int, float, str, list, dict):
            return value
        if kind is list and isinstance(value, (list, tuple)):
            return list(value)
        if kind is dict and isinstance(value, Mapping):
            return dict(value)
    if from_cli and isinstance(value, str) and (list in kinds or dict in kinds):
        return value  # other text forms are the dataclass's to read or refuse (score_columns: a,b)
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             list: "a list (JSON/YAML)", dict: "a mapping (JSON/YAML)"}
    expected = f"expected {' or '.join(names.get(k, str(k)) for k in kinds)}{' or null' if optional else ''}."
    raise ConfigError(f"{name}={value!r} is invalid: {expected}", option=name, value=value, expected=expected)


# ----------------------------------------------------------------------- building


def build(cls: type, values: Mapping[str, Any], *, labels: Optional[Mapping[str, str]] = None,
          where: str = "", from_cli: Sequence[str] = ()) -> Any:
    """``cls(**values)``, an error naming the value's origin: ``labels`` (field -> ``--ratio``,
    ``run.yaml: select.ratio``), else ``where``; ``from_cli``: the fields given as flag text."""
    labels = dict(labels or {})
    for name in values:
        labels.setdefault(name, f"{where}: {name}" if where else name)
    hints = typing.get_type_hints(cls)
    kwargs = {name: coerce_value(labels[name], value, hints[name], from_cli=name in from_cli)
              for name, value in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # named by origin, showing a file's value as written
        if exc.option not in labels:
            raise (ConfigError(f"{where}: {exc}") if where and not str(exc).startswith(where) else exc) from None
        value = exc.value if exc.option in from_cli else values.get(exc.option, exc.value)
        raise ConfigError(f"{labels[exc.option]}={value!r} is invalid: {exc.expected}", option=exc.option,
                          value=exc.value, expected=exc.expected) from None


def config_from_mapping(cls: type, mapping: Optional[Mapping[str, Any]], *, where: str = "",
                        origin: Optional["_Origin"] = None) -> Any:
    """A config dataclass from a mapping, checked as a YAML file's section. ``where`` names the
    mapping in errors; with ``origin`` (a run config) it is the section, keys are named
    ``run.yaml: select.ratio`` and read paths resolve against the file's folder."""
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        shown = origin.key(where) if origin else where or cls.__name__
        raise ConfigError(f"{shown} must be a mapping of options, got {mapping!r}.")
    values, names = {_norm(k): v for k, v in mapping.items()}, [f.name for f in fields(cls)]
    if origin is None:
        check_keys(values, names, where=where or cls.__name__)
        return build(cls, values, where=where)
    check_keys(values, names, where=origin.section(where), label=lambda k: f"{where}.{k}")
    return build(cls, _resolve_paths(cls, values, origin.base), where=origin.name,
                 labels={k: origin.key(f"{where}.{k}") for k in values})


# ---------------------------------------------------------------------------- YAML


def load_yaml(path: Union[str, os.PathLike]) -> dict:
    """A YAML file's top-level mapping; ConfigError for a missing file, invalid YAML or another top level."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} not found.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at the top level, got {type(data).__name__}.")
    return data or {}


def _resolve_paths(cls: type, values: dict, base: Optional[Path]) -> dict:
    """Relative read paths (``metadata["path"] == "read"``) resolved against a config file's
    folder ``base`` when meant as local paths: they exist there or look like a file
    (:func:`hf_selectit.io.looks_like_path`). A Hub id ("user/name") is left alone."""
    from .io import looks_like_path

    def resolve(value: Any) -> Any:
        if base is None or not isinstance(value, str) or not value or os.path.isabs(os.path.expanduser(value)):
            return value
        candidate = base / os.path.expanduser(value)
        return os.path.normpath(str(candidate)) if candidate.exists() or looks_like_path(value) else value

    read = {option_name(cls, f.name) for f in fields(cls) if f.metadata.get("path") == "read"}
    return {k: resolve(v) if k in read else v for k, v in values.items()}


# ----------------------------------------------------------------------- run config

_TOP_SECTIONS = ("models", "scorer", "fusion", "select", "publish", "card_data", "report", "report_json", "validate",
                 "ray")


@dataclass
class _Origin:
    """Where a run config came from, for error messages."""

    name: str                       # "configs/run.yaml" or "run config"
    base: Optional[Path] = None     # folder that relative read paths resolve against

    def key(self, dotted: str) -> str:
        return f"{self.name}: {dotted}"

    def section(self, name: str) -> str:
        return f"the {name} section of {self.name}"


def load_run_config(source: Union[str, os.PathLike, Mapping[str, Any]], *,
                    overrides: Optional[Mapping[str, Any]] = None,
                    override_labels: Optional[Mapping[str, str]] = None) -> PipelineConfig:
    """A `run` configuration (YAML file or mapping; the layout:
    ``hf-selectit run --example selective_alpaca --print``) as a checked :class:`PipelineConfig`.
    ``overrides`` (the flags: top-level IO/run options) replace the file's, named in errors by
    ``override_labels`` (``--limit``).

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
    flat = [f.name for cls in (IOConfig, RunOptions) for f in fields(cls)]
    check_keys(data, [*flat, *_TOP_SECTIONS], where=origin.name)
    check_keys(overrides, flat, where="the command line")

    def top_level(cls: type) -> Any:  # the file's keys of `cls`, then the overrides
        keys = [f.name for f in fields(cls)]
        values = _resolve_paths(cls, {k: v for k, v in data.items() if k in keys}, origin.base)
        values.update({k: v for k, v in overrides.items() if k in keys})
        return build(cls, values, labels=labels_top, where=origin.name)

    io = top_level(IOConfig)
    if io.input is None:
        raise ConfigError(f"{origin.name}: `input` is missing: give a Hub dataset id, a local file or a folder.")
    run = top_level(RunOptions)

    models, params = _load_models(data, origin)

    def section(cls: type, name: str) -> Any:
        return config_from_mapping(cls, data.get(name), where=name, origin=origin)

    fusion = section(FusionConfig, "fusion")
    ray = section(RayConfig, "ray")
    select = section(SelectConfig, "select") if data.get("select") is not None else None
    validate = section(ValidateConfig, "validate") if data.get("validate") is not None else None
    if validate is not None and validate.label is None:
        raise ConfigError(f"{origin.key('validate.label')} is missing: a run validates its selection "
                          "column against a label column (e.g. validate: {label: kind, positive: good}).")
    publish = None
    if data.get("publish"):
        publish = section(PublishConfig, "publish")
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
    report = top_level(ReportOptions)
    if len(models) > 1 and select is not None and fusion.params is not None and len(fusion.params) != len(models):
        raise ConfigError(f"{origin.key('fusion.params')}: {len(fusion.params)} values for {len(models)} models.")
    return PipelineConfig(io=io, run=run, ray=ray, models=models, model_params=params, fusion=fusion,
                          select=select, publish=publish, card_data=dict(card_data) if card_data else None,
                          report=report, validate=validate, config_file=None if origin.base is None else str(source))


def _load_models(data: Mapping, origin: _Origin) -> tuple[list, list]:
    shared = {} if data.get("scorer") is None else data["scorer"]
    if not isinstance(shared, Mapping):
        raise ConfigError(f"{origin.key('scorer')} must be a mapping of scorer options, got {shared!r}.")
    shared = {_norm(k): v for k, v in shared.items()}
    entries = [{}] if data.get("models") is None else data["models"]
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
        entry = {"model": entry} if isinstance(entry, str) else {} if entry is None else entry
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{origin.key(f'models[{i}]')} must be a mapping or a model id, got {entry!r}.")
        entry = {_norm(k): v for k, v in entry.items()}
        method = entry.pop("method", shared_method or DEFAULT_METHOD)
        where_method = origin.key(f"models[{i}].method") if "method" in entry or shared_method is None \
            else origin.key("scorer.method")
        cls = method_config_class(method, where=where_method)
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
            if not 0 < param < float("inf"):  # NaN too
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


class SuggestingParser(argparse.ArgumentParser):
    """argparse with "did you mean" for unknown flags (Python 3.11 has none)."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D401
        if message.startswith("unrecognized arguments:"):
            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            hints = [f"{flag}: did you mean {close[0]}?"
                     for flag in (t.split("=", 1)[0] for t in message.split(":", 1)[1].split())
                     if flag.startswith("--") and (close := difflib.get_close_matches(flag, known, n=1))]
            message += f" ({'; '.join(hints)})" if hints else ""
        super().error(message)


class Given(argparse.Action):
    """Stores a flag's text and remembers it was given (its origin in errors; over the file)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, values)
        if values is not self.default:  # argparse also calls it for an absent INPUT (nargs="?")
            namespace.__dict__.setdefault("given_", set()).add(self.dest)


class _GivenBool(argparse.BooleanOptionalAction):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.__dict__.setdefault("given_", set()).add(self.dest)


def _hf_argument_parser() -> type:
    """``transformers.HfArgumentParser`` without ``import transformers``, whose ``__init__`` on
    4.x imports torch (3-5 s for ``hf-selectit score --help``): until transformers is imported
    anyway, its module (standard library and yaml only) loads from its file, under a private name."""
    import importlib.util
    import sys

    spec = None if "transformers" in sys.modules else importlib.util.find_spec("transformers")
    path = Path(spec.origin).with_name("hf_argparser.py") if spec and spec.origin else None
    if path is None or not path.is_file():
        from transformers import HfArgumentParser

        return HfArgumentParser
    module_spec = importlib.util.spec_from_file_location("hf_selectit._hf_argparser", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module.HfArgumentParser
    except (ImportError, AttributeError):  # a release whose module reaches into the package
        from transformers import HfArgumentParser

        return HfArgumentParser


@functools.lru_cache(maxsize=None)
def _parser_class() -> type:
    HfArgumentParser = _hf_argument_parser()

    class OptionParser(SuggestingParser, HfArgumentParser):
        """HfArgumentParser over named sections (``{"io": IOConfig, "scorer": ScorerConfig}``)."""

        def __init__(self, sections: Mapping[str, type], *, skip: Sequence[str] = (),
                     only: Optional[Sequence[str]] = None, **kwargs: Any) -> None:
            self.sections, self.skip, self.only = dict(sections), set(skip), only
            super().__init__(list(self.sections.values()), **kwargs)

        def _parse_dataclass_field(self, parser: Any, f: Any) -> None:
            # HfArgumentParser's per-field step (private; it has no public hook), given the flag
            # name, text values and --x/--no-x (the module docstring says why each is kept).
            name = f.metadata.get("flag", f.name)
            if name in self.skip or (self.only is not None and name not in self.only):
                return
            default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
            help_text = f.metadata.get("help")
            if bool in kinds_of(f.type)[0]:
                parser.add_argument("--" + name.replace("_", "-"), dest=name, action=_GivenBool,
                                    default=default, help=help_text)
                return
            spec = field(default=default, metadata={"help": help_text, "action": Given, "metavar": _metavar(f.type)})
            spec.name, spec.type = name, str
            HfArgumentParser._parse_dataclass_field(parser, spec)
            # It registers --field_name, then --field-name: usage and help show the first, and our
            # flags (README, --x/--no-x booleans) are hyphenated, so that one goes first.
            parser._actions[-1].option_strings.sort(key=lambda option: "_" in option)

        def parse(self, argv: Sequence[str], *, config: Optional[str] = None) -> argparse.Namespace:
            """``argv`` over a ``--config`` file's values: each section's dataclass under its name,
            ``flags`` (field -> checked value of each flag given), ``labels`` (option -> its name
            in errors)."""
            dests = {a.dest for a in self._actions if a.dest not in ("help", "config")}
            file: dict = {}
            if config:
                file = {_norm(k): v for k, v in load_yaml(config).items()}
                check_keys(file, sorted(dests), where=str(config))
                for cls in self.sections.values():
                    file.update(_resolve_paths(cls, file, Path(config).resolve().parent))
                self.set_defaults(**{k: v for k, v in file.items() if k in dests})
            ns = self.parse_args(argv)
            given = ns.__dict__.pop("given_", set())
            ns.flags, ns.labels = {}, {}
            for attr, cls in self.sections.items():
                values, labels, text = {}, {}, []
                for f in fields(cls):
                    name = option_name(cls, f.name)
                    if name in given:
                        flag = next(a for a in self._actions if a.dest == name)
                        labels[f.name] = flag_of(cls, f.name) if flag.option_strings else flag.metavar
                        values[f.name] = getattr(ns, name)
                        text.append(f.name)
                    elif name in file:
                        values[f.name], labels[f.name] = getattr(ns, name, file[name]), f"{config}: {name}"
                    ns.labels[name] = labels.get(f.name, flag_of(cls, f.name))
                setattr(ns, attr, build(cls, values, labels=labels, from_cli=text))
                ns.flags.update({name: getattr(getattr(ns, attr), name) for name in text})
            return ns

    return OptionParser


def option_parser(sections: Mapping[str, type], **kwargs: Any) -> Any:
    """A command's ``HfArgumentParser`` over ``sections`` (name -> config dataclass), with
    ``skip``/``only`` (option names) and argparse's keyword arguments.

    Example:
        >>> ns = option_parser({"select": SelectConfig}).parse(["--ratio", "0.1"])
        >>> ns.select.ratio
        0.1
    """
    return _parser_class()(sections, **kwargs)


def _metavar(annotation: Any) -> str:
    names = {int: "INT", float: "FLOAT", str: "TEXT", list: "JSON_LIST", dict: "JSON_DICT"}
    return "|".join(names.get(kind, "VALUE") for kind in kinds_of(annotation)[0])

