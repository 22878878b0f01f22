"""Scoring methods on one engine (`hf_selectit.engine`): each module says which texts to build,
what to read, and the columns (declared in `hf_selectit.methods.columns`).

`METHODS` maps a method name (`--method`, YAML `method:`) to "module:Class".
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError

METHODS = {
    "selectit": "selectit:SelectITScorer",
    "ifd": "ifd:IFDScorer",
    "rifd": "ifd:ReverseIFDScorer",
    "alpagasus": "alpagasus:AlpaGasusScorer",
    "deita": "deita:DeitaScorer",
}


def scorer_class(method: str) -> type:
    """The scorer class of a method name (``scorer_class("ifd")`` is ``IFDScorer``); a ConfigError
    listing the known ones for an unknown method."""
    target = METHODS.get(method)
    if target is None:
        raise ConfigError(f"method={method!r} is invalid: expected one of {sorted(METHODS)}.")
    module, name = target.split(":")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def make_scorer(config: object) -> object:
    """The scorer of a method's config (``ScorerConfig``, ``IFDConfig``, ...), or the scorer itself
    when given one; a ConfigError for anything else."""
    if callable(config) and hasattr(config, "output_columns"):
        return config
    for method in METHODS:
        cls = scorer_class(method)
        if isinstance(config, cls.config_class):
            return cls.from_config(config)
    raise ConfigError(f"{config!r} is not a scorer nor the config of any scoring method ({sorted(METHODS)}).")
