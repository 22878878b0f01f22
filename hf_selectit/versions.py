"""Version tags of published subsets (`v1`, `v1.2`, `v1.2.3`).

A bottom-layer module so that `config.PublishConfig` can refuse a bad version when a run config
is loaded, before any scoring, with the same rule `publish` applies.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigError

VERSION_RE = re.compile(r"^v\d+(\.\d+){0,2}$")


def check_version(version: Any) -> str:
    """Validate a version tag (`v1`, `v1.2`, `v1.2.3`).

    Raises:
        ConfigError: anything else.

    Example:
        >>> check_version("v1.2")
        'v1.2'
    """
    if not isinstance(version, str) or not VERSION_RE.match(version):
        expected = ("expected 'v' followed by one to three dot-separated numbers, e.g. 'v1', "
                    "'v1.2' or 'v1.2.3'.")
        raise ConfigError(f"version={version!r} is invalid: {expected}", option="version",
                          value=version, expected=expected)
    return version


def version_key(version: str) -> tuple:
    """Sort key of version tags: numeric parts (missing ones count as 0), then the most specific."""
    parts = [int(p) for p in version[1:].split(".")]
    return tuple(parts + [0] * (3 - len(parts))) + (len(parts),)
