"""Version tags of published subsets (`v1`, `v1.2`, `v1.2.3`).

A bottom-layer module so that `config.PublishConfig` refuses a bad version when a run config is
loaded, before any scoring, with the same rule `publish` applies.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigError

# ASCII digits only (`\d` would accept "v１") and matched with fullmatch (`$` would accept "v1.0\n").
VERSION_RE = re.compile(r"v[0-9]+(?:\.[0-9]+){0,2}", re.ASCII)
VERSION_EXPECTED = ("expected 'v' followed by one to three dot-separated numbers in ASCII digits, "
                    "e.g. 'v1', 'v1.2' or 'v1.2.3' (no spaces or other characters).")


def check_version(version: Any) -> str:
    """Validate a version and return its tag: `v` + one to three dot-separated ASCII numbers. The
    `v` may be omitted (`"1.2"` is published as `"v1.2"`), so a version has exactly one tag name;
    anything else raises ConfigError (before publish writes anything).

    Example:
        >>> check_version("v1.2"), check_version("1.2")
        ('v1.2', 'v1.2')
    """
    tag = "v" + version if isinstance(version, str) and not version.startswith("v") else version
    if not isinstance(tag, str) or not VERSION_RE.fullmatch(tag):
        raise ConfigError(f"version={version!r} is invalid: {VERSION_EXPECTED}", option="version",
                          value=version, expected=VERSION_EXPECTED)
    return tag


def version_key(version: str) -> tuple:
    """Sort key of version tags: numeric parts (missing ones count as 0), then the most specific."""
    parts = [int(p) for p in version[1:].split(".")]
    return tuple(parts + [0] * (3 - len(parts))) + (len(parts),)
