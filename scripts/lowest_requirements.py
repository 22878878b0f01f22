#!/usr/bin/env python
"""Print the requirements of the lowest-versions test environment, derived from pyproject.toml.

`make test-lowest` installs torch==2.13.0 first, then `-e .` with this file: the Hugging Face
libraries the code calls into (PINNED) at their lower bounds, so those floors in pyproject.toml
are tested, not just stated; the other dependencies keep their ranges (pip picks the newest
that fits). Two exceptions, said in the output:

- torch is left out: the Makefile installs torch==2.13.0 (the local CPU wheel) before anything
  else, as in `.venv`; any other torch requirement would pull CUDA wheels.
- olah (the local Hub server of the tests) is left out of the test tools: it needs a newer
  huggingface_hub than the floor. The server is a separate process, so the test suite runs it
  with `.venv`'s interpreter (HF_SELECTIT_TEST_HUB_PYTHON) while the code under test uses the
  lowest client libraries.

Usage:
    python scripts/lowest_requirements.py > .venv-lowest/requirements.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: tomllib is 3.11+
    sys.exit("scripts/lowest_requirements.py needs Python >= 3.11 (tomllib).")

# The libraries whose APIs the package calls into; pinning every dependency at its floor would
# only test pip's resolver (e.g. tqdm==4.66 against datasets 3.0's tqdm>=4.66.3).
PINNED = {"transformers", "datasets", "huggingface_hub", "accelerate", "evaluate"}
SKIP_RUNTIME = {"torch"}
SKIP_TEST = {"olah"}
_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(.*)$")


def _name_and_spec(requirement: str) -> tuple[str, str]:
    match = _SPEC.match(requirement)
    if match is None:
        raise ValueError(f"Cannot parse the requirement {requirement!r} in pyproject.toml.")
    return match.group(1), match.group(2).strip()


def lowest_requirements(pyproject: Path) -> list[str]:
    """The lines of the requirements file (PINNED at their floors, the rest as given, test tools).

    Args:
        pyproject: path of pyproject.toml.

    Returns:
        Requirement lines, comments included.

    Raises:
        ValueError: a PINNED dependency has no `>=` lower bound to pin.
    """
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    lines = ["# Generated from pyproject.toml by scripts/lowest_requirements.py: floors pinned."]
    for requirement in project["dependencies"]:
        name, spec = _name_and_spec(requirement)
        if name.lower() in SKIP_RUNTIME:
            lines.append(f"# {name}: installed first by the Makefile (torch==2.13.0)")
            continue
        if name.lower().replace("-", "_") not in PINNED:
            lines.append(requirement)
            continue
        floor = re.search(r">=\s*([^,\s;]+)", spec)
        if floor is None:
            raise ValueError(f"{requirement!r} in pyproject.toml has no '>=' lower bound; give it one.")
        lines.append(f"{name}=={floor.group(1)}")
    lines.append("# test tools (olah, the local Hub server, runs on .venv's interpreter)")
    for requirement in project["optional-dependencies"]["test"]:
        if _name_and_spec(requirement)[0].lower() not in SKIP_TEST:
            lines.append(requirement)
    return lines


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(lowest_requirements(root / "pyproject.toml")))
